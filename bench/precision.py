"""Mixed precision and gradient accumulation on CPU: Poutyne's MNIST CNN, one epoch, batch 32.

Runs, in alternating rounds (the order rotates every round):
  raw_tch          the hand-written tch loop, float32 (bench/src/bin/raw_tch.rs)
  raw_tch_bf16     the same loop with forward and loss under torch's autocast in bfloat16: the
                   floor for torchfit's bf16-mixed
  torchfit_32      the torchfit binary, precision = "32"
  torchfit_bf16    the torchfit binary, precision = "bf16-mixed"
  torchfit_acc2    the torchfit binary, float32, accumulate_grad_batches = 2 (half the steps)
and reports each median fit time (the program's own: one epoch of training and validation) and
the paired ratios torchfit_bf16 / raw_tch_bf16, torchfit_32 / raw_tch, the bf16 / float32 ratio
of each, and torchfit_acc2 / torchfit_32.

    .venv/bin/python bench/precision.py [--rounds 3] [--threads 2] [--data ../shared/data/mnist]
Writes bench/results/precision-cpu.md and .json, atomically. Needs `cargo build --release`.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time
import results_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
CONFIG = os.path.join(ROOT, "bench", "configs", "cnn.toml")


def raw(precision, a):
    cmd = [os.path.join(RELEASE, "raw_tch"), "--workload", "cnn", "--batch", "32", "--data", a.data,
           "--threads", str(a.threads), "--precision", precision]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads([l for l in out.splitlines() if l.startswith("{")][-1])["fit_seconds"]


def binary(sets, a):
    out = tempfile.mkdtemp(prefix="tf-precision-bench-")
    shutil.rmtree(out)
    base = ["callbacks__print_log=false", f"threads={a.threads}", "iterator_train__batch_size=32",
            f'dataset__images="{a.data}/train-images.idx3-ubyte.gz"',
            f'dataset__labels="{a.data}/train-labels.idx1-ubyte.gz"']
    cmd = [os.path.join(RELEASE, "torchfit"), "train", CONFIG, "--out", out]
    for s in base + sets:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seconds = json.load(open(os.path.join(out, "summary.json")))["fit_seconds"]
    shutil.rmtree(out)
    return seconds


PROGRAMS = {
    "raw_tch": lambda a: raw("32", a),
    "raw_tch_bf16": lambda a: raw("bf16-mixed", a),
    "torchfit_32": lambda a: binary([], a),
    "torchfit_bf16": lambda a: binary(['precision="bf16-mixed"'], a),
    "torchfit_acc2": lambda a: binary(["accumulate_grad_batches=2"], a),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "mnist"))
    a = p.parse_args()
    a.data = os.path.abspath(a.data)
    if not os.path.exists(os.path.join(a.data, "train-images.idx3-ubyte.gz")):
        sys.exit(f"MNIST not found in {a.data}")
    names = list(PROGRAMS)
    runs = {n: [] for n in names}
    for r in range(a.rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            runs[n].append(PROGRAMS[n](a))
            print(f"round {r + 1} {n}: {runs[n][-1]:.2f} s", flush=True)
    med = {n: statistics.median(v) for n, v in runs.items()}
    paired = lambda x, y: statistics.median(u / v for u, v in zip(runs[x], runs[y]))
    lines = [
        "# Mixed precision and gradient accumulation on CPU: Poutyne's MNIST CNN, one epoch, batch 32",
        "",
        f"`python bench/precision.py --rounds {a.rounds} --threads {a.threads}`, {time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} cores. Fit time = the program's own report of the epoch (training on 48,000 images, "
        "validation on 12,000).",
        "",
        "| program | fit s (median) | best s | runs |",
        "|---|---|---|---|",
    ]
    lines += [f"| {n} | {med[n]:.2f} | {min(runs[n]):.2f} | {len(runs[n])} |" for n in names]
    lines += [
        "",
        "Paired ratios (median over rounds): "
        f"torchfit_bf16 / raw_tch_bf16 = {paired('torchfit_bf16', 'raw_tch_bf16'):.3f}; "
        f"torchfit_32 / raw_tch = {paired('torchfit_32', 'raw_tch'):.3f}; "
        f"raw_tch_bf16 / raw_tch = {paired('raw_tch_bf16', 'raw_tch'):.3f}; "
        f"torchfit_bf16 / torchfit_32 = {paired('torchfit_bf16', 'torchfit_32'):.3f}; "
        f"torchfit_acc2 / torchfit_32 = {paired('torchfit_acc2', 'torchfit_32'):.3f}.",
    ]
    results_file.write("precision-cpu", "\n".join(lines) + "\n", runs)


if __name__ == "__main__":
    main()
