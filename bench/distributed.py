"""Data-parallel benchmark (issue: c10d): Poutyne's MNIST CNN, one epoch, global batch 64.

Runs, in alternating rounds (the order rotates every round):
  torchfit_1p  the torchfit binary, one process x 2 threads, batch 64
  torchfit_2p  the torchfit binary, `--nproc 2`: two processes x 1 thread, batch 32 each
  ddp_2p       PyTorch DistributedDataParallel on Gloo under torchrun, 2 x 1 thread, batch 32 each
               (validation sharded by a DistributedSampler, as torchfit shares it out)
  pytorch_1p   a plain PyTorch loop, one process x 2 threads, batch 64 (for reference)
and reports the median fit time (the epoch: training and validation) of each, the paired ratios
torchfit_2p / ddp_2p and torchfit_2p / torchfit_1p, and DDP's own backward statistics.

    .venv/bin/python bench/distributed.py [--rounds 3] [--data ../shared/data/mnist] [--bin PATH] [--out-name NAME]
Writes bench/results/<NAME>.md and .json (default distributed-cpu), atomically. Needs a release
build of the binary; the Python programs run with the interpreter that runs this script.
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys, tempfile, time
import results_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
BIN = os.path.join(ROOT, "target", "release", "torchfit")
CONFIG = os.path.join(ROOT, "bench", "configs", "cnn.toml")


def torchfit(extra, data):
    out = tempfile.mkdtemp(prefix="tf-dist-bench-")
    shutil.rmtree(out)
    sets = ["callbacks__print_log=false", "callbacks__valid_acc=false"]
    images, labels = f"{data}/train-images.idx3-ubyte.gz", f"{data}/train-labels.idx1-ubyte.gz"
    sets += [f'dataset__images="{os.path.abspath(images)}"', f'dataset__labels="{os.path.abspath(labels)}"']
    cmd = [BIN, "train", CONFIG, "--out", out] + [a for s in sets for a in ("--set", s)] + extra
    p = subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       env={**os.environ, "TORCHFIT_LOG": "info"})
    summary = json.load(open(os.path.join(out, "summary.json")))
    history = json.load(open(os.path.join(out, "history.json")))
    shutil.rmtree(out)
    report = {"fit_seconds": summary["fit_seconds"], "train_loss": history[-1]["train_loss"]}
    # Rank 0's line from DDP's Logger over torchfit's Reducer (see net/ddp.rs); the other rank's
    # lines may interleave with it, so only a whole line counts.
    line = re.compile(r"^\[info\] gradient reduction .*: forward ([0-9.]+) ms, backward ([0-9.]+) ms, "
                      r"communication ([0-9.]+) ms, of it overlapped with backward ([0-9.]+) ms$")
    found = [m for m in map(line.match, p.stderr.splitlines()) if m]
    if found:
        keys = ["avg_forward_compute_time", "avg_backward_compute_time", "avg_backward_comm_time",
                "avg_backward_compute_comm_overlap_time"]
        report["reducer"] = {k: round(float(v) * 1e6) for k, v in zip(keys, found[-1].groups())}
    return report


def python(cmd):
    for attempt in range(3):
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.join(ROOT, "bench", "python"))
        if p.returncode == 0:
            break
        # torchrun's standalone rendezvous fails now and then on this machine; up to two more tries, said.
        print(f"{cmd[1:4]} failed ({p.returncode}): {p.stderr.strip().splitlines()[-1:]}", flush=True)
    p.check_returncode()
    report = json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])
    ddp = [l for l in p.stdout.splitlines() if l.startswith("# ddp ")]
    if ddp:
        report["ddp"] = dict(kv.split("=") for kv in ddp[-1][6:].split())
    return report


def programs(data):
    return {
        "torchfit_1p": lambda: torchfit(["--set", "threads=2", "--set", "iterator_train__batch_size=64"], data),
        "torchfit_2p": lambda: torchfit(["--set", "threads=1", "--set", "iterator_train__batch_size=32", "--nproc", "2"], data),
        "ddp_2p": lambda: python([PY, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                                  "ddp_run.py", "--workload", "cnn", "--batch", "32", "--threads", "1", "--data", data]),
        "pytorch_1p": lambda: python([PY, "plain.py", "--workload", "cnn", "--batch", "64", "--threads", "2", "--data", data]),
    }


def main():
    global BIN
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "mnist"))
    p.add_argument("--bin", default=BIN)
    p.add_argument("--out-name", default="distributed-cpu")
    a = p.parse_args()
    BIN = os.path.abspath(a.bin)
    a.data = os.path.abspath(a.data)
    if not os.path.exists(os.path.join(a.data, "train-images.idx3-ubyte.gz")):
        sys.exit(f"MNIST not found in {a.data}")
    progs = programs(a.data)
    names = list(progs)
    runs = {n: [] for n in names}
    for r in range(a.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            rep = progs[n]()
            runs[n].append(rep)
            print(f"round {r + 1} {n}: {rep['fit_seconds']:.2f} s", flush=True)
    med = {n: statistics.median(x["fit_seconds"] for x in runs[n]) for n in names}
    paired = lambda a, b: statistics.median(x["fit_seconds"] / y["fit_seconds"] for x, y in zip(runs[a], runs[b]))
    lines = [
        "# Data-parallel CPU benchmark: Poutyne's MNIST CNN, one epoch, global batch 64",
        "",
        f"`python bench/distributed.py --rounds {a.rounds}`, {time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} cores. Fit time = the epoch: training on the process's shard, then validation on 12,000 "
        "images shared among the processes (torchfit: batches dealt round-robin; DDP: a DistributedSampler).",
        "",
        "| program | processes x threads | batch per process | fit s (median) | best s | runs |",
        "|---|---|---|---|---|---|",
    ]
    shape = {"torchfit_1p": ("1 x 2", 64), "torchfit_2p": ("2 x 1", 32), "ddp_2p": ("2 x 1", 32), "pytorch_1p": ("1 x 2", 64)}
    for n in names:
        best = min(x["fit_seconds"] for x in runs[n])
        lines.append(f"| {n} | {shape[n][0]} | {shape[n][1]} | {med[n]:.2f} | {best:.2f} | {len(runs[n])} |")
    lines += [
        "",
        f"Paired ratios (median over rounds): torchfit_2p / ddp_2p = {paired('torchfit_2p', 'ddp_2p'):.3f} (target <= 0.85); "
        f"torchfit_2p / torchfit_1p = {paired('torchfit_2p', 'torchfit_1p'):.3f} (target <= 1.0); "
        f"ddp_2p / pytorch_1p = {paired('ddp_2p', 'pytorch_1p'):.3f}.",
    ]
    # DDP's Logger (rank 0): averages over the sampled iterations of each run, then the median
    # over the runs, for PyTorch's DDP and for the same Logger over torchfit's Reducer.
    keys = ["avg_forward_compute_time", "avg_backward_compute_time", "avg_backward_comm_time",
            "avg_backward_compute_comm_overlap_time"]
    logger = {"ddp_2p": [x.get("ddp") for x in runs["ddp_2p"] if x.get("ddp")],
              "torchfit_2p": [x.get("reducer") for x in runs["torchfit_2p"] if x.get("reducer")]}
    if any(logger.values()):
        lines += ["", "DDP's Logger, rank 0, ms per sampled iteration (median over the runs; each run's own figures "
                  "are in the .json):", "", "| program | " + " | ".join(k[4:] for k in keys) + " | runs |",
                  "|---|" + "---|" * (len(keys) + 1)]
        for n, found in logger.items():
            if found:
                cells = [f"{statistics.median(float(f[k]) for f in found if k in f) / 1e6:.2f}"
                         if any(k in f for f in found) else "-" for k in keys]
                lines.append(f"| {n} | " + " | ".join(cells) + f" | {len(found)} |")
    results_file.write(a.out_name, "\n".join(lines) + "\n", runs)


if __name__ == "__main__":
    main()
