"""Instructions per training step under callgrind: the engine's cost against the raw tch loop,
counted instead of timed, so that a noisy machine cannot move it.

Each Rust program (the raw loop, the library, the binary with its plugins) runs twice under
`valgrind --tool=callgrind` on one intra-op thread: on N samples and on 2N (80 % training,
20 % validation, like the benchmark's 48k/12k). The difference of the two runs' instruction
totals is the cost of N more samples, start-up, data loading and checkpoint writing cancel;
divided by the extra training batches it is the cost of one training step together with its
share of the validation pass. The binary reads the first N or 2N MNIST images from IDX files
this script writes; reading them would scale with N (the others load all of MNIST in both runs),
so callgrind does not count `idx::read_all`, the inflating of the file into memory.

    .venv/bin/python bench/instructions.py                       # MLP, batch 32, N = 800
    .venv/bin/python bench/instructions.py --workload cnn --samples 400

Needs valgrind and the release build (`bash bench/run.sh` builds it, or `cargo build --release
--workspace`). Writes bench/results/instructions-<workload>-b<batch>.md (atomically).
About a minute per run on the MLP.
"""
import argparse, datetime, gzip, math, shutil, subprocess, sys, tempfile
from pathlib import Path

from run import BENCH, RELEASE, binary

PROGRAMS = ["raw_tch", "torchfit_library", "torchfit_binary"]


def idx_prefix(src, dst, n):
    """The first n records of an IDX file (gzip in, gzip out)."""
    data = gzip.open(src).read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    record = math.prod(shape[1:])
    header = data[:4] + n.to_bytes(4, "big") + data[8:4 + 4 * dims]
    with gzip.open(dst, "wb") as f:
        f.write(header + data[4 + 4 * dims:4 + 4 * dims + n * record])


def split_counts(n):
    """Training and validation samples of a run on n samples: 80 % and 20 %, as the binary's split."""
    return n * 4 // 5, n // 5


def command(a, name, n, tmp):
    train, valid = split_counts(n)
    if name == "torchfit_binary":
        data = tmp / f"data-{n}"
        data.mkdir()
        for f in ("train-images.idx3-ubyte.gz", "train-labels.idx1-ubyte.gz"):
            idx_prefix(a.data / f, data / f, n)
        out = tmp / f"out-{n}"
        out.mkdir()
        args = argparse.Namespace(data=data, device="cpu", threads=1)
        return binary(args, a.workload, a.batch, out)
    exe = "raw_tch" if name == "raw_tch" else "library"
    return [str(RELEASE / exe), "--workload", a.workload, "--batch", str(a.batch), "--data", str(a.data),
            "--threads", "1", "--train", str(train), "--valid", str(valid)]


# Functions whose cost scales with N only because of how this script shortens the epoch; callgrind
# stops counting inside them (--toggle-collect, with counting on from the start).
UNCOUNTED = {"torchfit_binary": ["--toggle-collect=torchfit_plugin_readers::idx::read_all", "--collect-atstart=yes"]}


def instructions(name, cmd, out):
    p = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *UNCOUNTED.get(name, []), *cmd], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed under callgrind ({p.returncode}):\n{p.stderr[-3000:]}")
    totals = next(l for l in Path(out).read_text().splitlines() if l.startswith(("totals:", "summary:")))
    return int(totals.split()[1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", choices=["mlp", "cnn"], default="mlp")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--samples", type=int, default=800, help="N: the runs take N and 2N samples (at most 30000)")
    p.add_argument("--data", type=Path, default=BENCH.parent.parent / "shared" / "data" / "mnist")
    p.add_argument("--out", type=Path, default=BENCH / "results")
    a = p.parse_args()
    a.data = a.data.resolve()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind not found: instructions.py counts instructions with callgrind")
    if not 5 <= a.samples <= 30_000 or a.samples % 5:
        sys.exit("--samples must be a multiple of 5 between 5 and 30000")
    n1, n2 = a.samples, 2 * a.samples
    steps = math.ceil(split_counts(n2)[0] / a.batch) - math.ceil(split_counts(n1)[0] / a.batch)
    if steps < 1:
        sys.exit(f"--samples {n1} gives the run on {n2} samples no more training steps of {a.batch} than the run on {n1}")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="torchfit-instructions-") as tmp:
        tmp = Path(tmp)
        for name in PROGRAMS:
            counts = [instructions(name, command(a, name, n, tmp), tmp / f"{name}-{n}.out") for n in (n1, n2)]
            rows[name] = (counts[1] - counts[0]) / steps
            print(f"{name:<17} {counts[0]:>15,} {counts[1]:>15,}  per step {rows[name]:,.0f}", flush=True)
    ref = rows["raw_tch"]
    lines = [f"# Instructions per training step: {a.workload.upper()}, batch {a.batch}", "",
             f"{datetime.date.today().isoformat()}; callgrind, one intra-op thread; the difference between runs on "
             f"{n2} and {n1} samples (80 % training, 20 % validation) over the {steps} extra training steps, so start-up, "
             "data loading and the epoch's checkpoint cancel out. Each step carries its share of the validation pass.",
             "Command: `" + " ".join([".venv/bin/python bench/instructions.py", *sys.argv[1:]]) + "`", "",
             "| program | instructions per step | ratio to raw_tch | extra per step |", "|---|---|---|---|"]
    lines += [f"| {n} | {v:,.0f} | {v / ref:.4f} | {v - ref:+,.0f} |" for n, v in rows.items()]
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"instructions-{a.workload}-b{a.batch}.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    print("\n".join(lines))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
