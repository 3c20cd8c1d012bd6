"""Generated names of two made-up origins, for the text CNN example: `label,name` lines.

Both draw syllables from a shared pool, each origin favouring its own syllables and endings,
so a name's class shows in its character patterns, not in any single letter. Deterministic.

    python3 examples/names/generate.py OUT.csv [COUNT]
"""
import random
import sys

SHARED = ["an", "el", "ri", "to", "ma", "li", "so", "ne"]
ORIGINS = [
    (["ka", "mo", "yu", "shi", "ta", "ha", "ki", "no"], ["ko", "mi", "ro", "ka"]),
    (["berg", "sch", "wal", "hof", "stein", "ler", "brand", "ul"], ["er", "mann", "rich", "old"]),
]


def name(rng, origin):
    own, endings = ORIGINS[origin]
    parts = [rng.choice(own if rng.random() < 0.55 else SHARED) for _ in range(rng.randint(1, 3))]
    ending = rng.choice(endings) if rng.random() < 0.7 else rng.choice(SHARED)
    return ("".join(parts) + ending).capitalize()


def main():
    out = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    rng = random.Random(0)
    with open(out, "w") as f:
        for i in range(count):
            origin = i % 2
            f.write(f"{origin},{name(rng, origin)}\n")


if __name__ == "__main__":
    main()
