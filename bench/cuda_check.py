"""NCCL at world size 1 on CUDA, against one plain CUDA process (issue 17's GPU check).

Trains the digits demo (examples/digits/config.toml, dropout off so that no random mask depends
on how the process was started) on `cuda` four ways with the `torchfit` binary:

- `single`: one process, no process group;
- `single_again`: the same once more (what CUDA itself repeats bit for bit);
- `nproc1_nccl`: `--nproc 1` with `distributed__backend="nccl"` (torchfit starts the worker);
- `torchrun_nccl`: `python -m torch.distributed.run --nproc-per-node 1 --no-python torchfit ...`.

and compares each one's history (train and valid loss of every epoch, valid accuracy) and final
parameters (model.safetensors) with `single`: the largest relative difference of the losses and
the largest absolute difference of the parameters. DDP with one rank averages each gradient over
a world of one, so the distributed runs must equal the plain one within rounding (the CPU test
asks 1e-6 relative on losses and 1e-5 on parameters for two ranks against one).

Needs a release build of the binary and libtorchfit_nccl.so beside it, CUDA, and the venv's (or
the machine's) Python with torch and safetensors. Writes bench/results/cuda-nccl.md (or --out
DIR/cuda-nccl.md) atomically; exits non-zero when a run fails or a difference is over tolerance.

    .venv/bin/python bench/cuda_check.py --epochs 10
"""
import argparse, json, math, os, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOSS_RTOL, PARAM_ATOL = 1e-6, 1e-5


def train(a, name, extra, out, launcher=()):
    run = out / name
    cmd = [*launcher, str(a.bin), "train", str(ROOT / "examples/digits/config.toml"), "--out", str(run),
           "--set", f'device="{a.device}"', "--set", "module__dropout=0.0", "--set", f"max_epochs={a.epochs}", *extra]
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, TORCHFIT_LOG="debug"))
    wall = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"{name} failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
    history = json.loads((run / "history.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    return dict(name=name, wall=wall, history=history, summary=summary, model=run / "model.safetensors", stderr=p.stderr)


def compare(a, b):
    from safetensors.numpy import load_file
    keys = ("train_loss", "valid_loss", "valid_acc")
    rel = max(abs(ea[k] - eb[k]) / max(abs(ea[k]), 1e-12) for ea, eb in zip(a["history"], b["history"]) for k in keys)
    pa, pb = load_file(str(a["model"])), load_file(str(b["model"]))
    if sorted(pa) != sorted(pb):
        return rel, math.inf, False
    diff = max(float(abs(pa[k].astype("float64") - pb[k].astype("float64")).max()) for k in pa)
    identical = all(pa[k].tobytes() == pb[k].tobytes() for k in pa)
    return rel, diff, identical


def gpu():
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"], capture_output=True, text=True)
        return f"GPU, driver: {smi.stdout.strip()}."
    except FileNotFoundError:
        return "No nvidia-smi on this machine."


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", type=Path, default=ROOT / "target" / "release" / "torchfit")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--device", default="cuda", help="cpu with --backend gloo checks this script without a GPU")
    p.add_argument("--backend", default="nccl")
    a = p.parse_args()
    nccl = ["--set", f'distributed__backend="{a.backend}"']
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "--no-python")
    with tempfile.TemporaryDirectory(prefix="torchfit-cuda-") as tmp:
        tmp = Path(tmp)
        runs = [train(a, "single", [], tmp),
                train(a, "single_again", [], tmp),
                train(a, f"nproc1_{a.backend}", ["--nproc", "1", *nccl], tmp),
                train(a, f"torchrun_{a.backend}", nccl, tmp, torchrun)]
        ref = runs[0]
        lines = [f"# {a.backend.upper()} with world size 1 on {a.device}", "",
                 f"`.venv/bin/python bench/cuda_check.py {' '.join(sys.argv[1:])}`: the digits demo (dropout off) on `{a.device}`,",
                 f"each run against `single` (one process, no process group). {gpu()}", "",
                 "| run | wall s | fit s | last valid_acc | test acc | max rel. diff of losses | max abs. diff of params | params bit-identical |",
                 "|---|---|---|---|---|---|---|---|"]
        failed = []
        for r in runs:
            rel, diff, identical = compare(ref, r)
            if rel > LOSS_RTOL or diff > PARAM_ATOL:
                failed.append(r["name"])
            test = r["summary"].get("test", {}).get("accuracy", float("nan"))
            lines.append(f"| {r['name']} | {r['wall']:.2f} | {r['summary']['fit_seconds']:.2f} | {r['history'][-1]['valid_acc']:.4f} "
                         f"| {test:.4f} | {rel:.2e} | {diff:.2e} | {'yes' if identical else 'no'} |")
        said = ("joined the group", "gradient reduction", a.backend)
        logged = [l for r in runs[2:] for l in r["stderr"].splitlines() if any(w in l.lower() for w in said)]
        lines += ["", f"What the distributed runs logged about {a.backend} and ranks:", "", "```", *logged[-12:], "```", ""]
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"{a.device.split(':')[0]}-{a.backend}.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)
    print("\n".join(lines))
    if failed:
        sys.exit(f"over tolerance (losses {LOSS_RTOL} relative, parameters {PARAM_ATOL}): {', '.join(failed)}")


if __name__ == "__main__":
    main()
