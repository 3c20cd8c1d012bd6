"""The benchmark driver: the same MNIST workloads through every program, alternating, with
medians and ratios to the raw tch loop, written to bench/results/<device>.md and .json.

Run it through `bash bench/run.sh` (which builds the programs and installs the Python peers);
see bench/README.md. Each run is a fresh process: the driver times it (wall), reads its peak
RSS from the kernel (wait4), and reads the program's own report of its fit time, the one
epoch of training and validation without start-up and data loading.
"""
import argparse, datetime, json, os, platform, statistics, subprocess, sys, tempfile, time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RELEASE = ROOT / "target" / "release"
PYTHON = ROOT / ".venv" / "bin" / "python"
REFERENCE = "raw_tch"


def rust(binary):
    return lambda a, w, b: [str(RELEASE / binary), "--workload", w, "--batch", str(b), "--data", str(a.data), "--device", a.device, "--threads", str(a.threads), "--epochs", str(a.epochs)]


def python(script):
    return lambda a, w, b: [str(PYTHON), str(BENCH / "python" / script), "--workload", w, "--batch", str(b), "--data", str(a.data), "--device", a.device, "--threads", str(a.threads), "--epochs", str(a.epochs)]


def binary(a, w, b, out):
    """The torchfit binary on the workload's config plus bench/configs/callbacks.toml."""
    text = (BENCH / "configs" / f"{w}.toml").read_text() + "\n" + (BENCH / "configs" / "callbacks.toml").read_text()
    text = text.replace('"../../../shared/data/mnist/', f'"{a.data}/')
    config = out / "config.toml"
    config.write_text(text)
    return [str(RELEASE / "torchfit"), "train", str(config), "--out", str(out / "run"),
            "--set", f"iterator_train__batch_size={b}", "--set", f"iterator_valid__batch_size={b}",
            "--set", f'device="{a.device}"', "--set", f"threads={a.threads}", "--set", f"max_epochs={a.epochs}"]


PROGRAMS = {
    "raw_tch": ("hand-written tch loop (the floor)", rust("raw_tch")),
    "raw_tch_malloc": ("the same loop with the malloc thresholds torchfit sets (`malloc = \"training\"`), from the environment", rust("raw_tch")),
    "torchfit_library": ("torchfit as a library, default callbacks", rust("library")),
    "torchfit_binary": ("torchfit binary + Checkpoint, EpochScoring, LRScheduler from .so", None),
    "pytorch_plain": ("plain PyTorch loop, DataLoader", python("plain.py")),
    "skorch": ("skorch NeuralNetClassifier", python("skorch_run.py")),
    "poutyne": ("Poutyne Model.fit", python("poutyne_run.py")),
    "lightning": ("PyTorch Lightning Trainer", python("lightning_run.py")),
}
PEER_MODULES = {"skorch": "skorch", "poutyne": "poutyne", "lightning": "lightning"}


def available(name):
    if name in PEER_MODULES:
        return subprocess.run([str(PYTHON), "-c", f"import {PEER_MODULES[name]}"], capture_output=True).returncode == 0
    return True


class Failed(Exception):
    """A program that exited non-zero: it is reported and left out of the later rounds."""


def run_measured(a, name, workload, batch):
    with tempfile.TemporaryDirectory(prefix="torchfit-bench-") as tmp:
        tmp = Path(tmp)
        cmd = binary(a, workload, batch, tmp) if name == "torchfit_binary" else PROGRAMS[name][1](a, workload, batch)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(BENCH / "python"), os.environ.get("PYTHONPATH")])), TORCHFIT_LOG="warn")
        if name == "raw_tch_malloc":
            env.update(MALLOC_MMAP_THRESHOLD_=str(32 << 20), MALLOC_TRIM_THRESHOLD_=str(64 << 20))
        out_path, err_path = tmp / "stdout", tmp / "stderr"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            start = time.perf_counter()
            p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
            _, status, usage = os.wait4(p.pid, 0)
            wall = time.perf_counter() - start
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            raise Failed(f"{name} {workload} batch {batch} failed ({p.returncode}): {' '.join(cmd)}\n{err_path.read_text()[-3000:]}")
        if name == "torchfit_binary":
            summary = json.loads((tmp / "run" / "summary.json").read_text())
            history = json.loads((tmp / "run" / "history.json").read_text())
            report = {"fit_seconds": summary["fit_seconds"], "epoch_seconds": [e["dur"] for e in history],
                      "valid_acc": history[-1]["accuracy"], "train_loss": history[-1]["train_loss"]}
        else:
            report = json.loads(out_path.read_text().strip().splitlines()[-1])
        report.update(wall_seconds=wall, peak_rss_mib=usage.ru_maxrss / 1024.0, **epoch_times(report, batch))
        return report


TRAIN_SAMPLES = 48_000


def epoch_times(report, batch):
    """From a report's fit and epoch seconds: `first_fit_seconds`, the fit up to the end of its
    first epoch (start-up of the fit included: the one-epoch fit time), and `steady_ms_per_step`,
    the median of epochs 2..N per training step (None from one epoch)."""
    epochs = report.get("epoch_seconds") or [report["fit_seconds"]]
    steps = -(-TRAIN_SAMPLES // batch)
    later = epochs[1:]
    return {"first_fit_seconds": report["fit_seconds"] - sum(later),
            "steady_ms_per_step": statistics.median(later) / steps * 1000 if later else None}


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    mem = next((int(l.split()[1]) // 1024 // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    torch = subprocess.run([str(PYTHON), "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True).stdout.strip()
    return f"{cpu}, {os.cpu_count()} cores, {mem} GiB; Linux {platform.release()}; torch {torch}"


def table(results, names, workload, batch):
    rows = [r for r in results if r["workload"] == workload and r["batch"] == batch]
    med = lambda n, k: statistics.median(r[k] for r in rows if r["program"] == n)
    fit = "first_fit_seconds"
    ref_fit, ref_rss = med(REFERENCE, fit), med(REFERENCE, "peak_rss_mib")
    paired = lambda n, k: statistics.median(
        r[k] / ref[k] for r in rows for ref in rows
        if r["program"] == n and ref["program"] == REFERENCE and ref["round"] == r["round"])
    steady = all(r.get("steady_ms_per_step") is not None for r in rows)
    head = "| program | fit s (median) | ratio | paired ratio | best s | wall s | peak RSS MiB | RSS ratio | valid acc | runs |"
    rule = "|---|---|---|---|---|---|---|---|---|---|"
    if steady:
        head, rule = head + " steady ms/step | steady paired ratio |", rule + "---|---|"
    lines = [f"### {workload.upper()}, batch {batch}", "", head, rule]
    for n in names:
        runs = [r for r in rows if r["program"] == n]
        if not runs:
            continue
        f, rss = med(n, fit), med(n, "peak_rss_mib")
        best = min(r[fit] for r in runs)
        line = f"| {n} | {f:.2f} | {f / ref_fit:.3f} | {paired(n, fit):.3f} | {best:.2f} | {med(n, 'wall_seconds'):.2f} | {rss:.0f} | {rss / ref_rss:.3f} | {med(n, 'valid_acc'):.4f} | {len(runs)} |"
        if steady:
            line += f" {med(n, 'steady_ms_per_step'):.3f} | {paired(n, 'steady_ms_per_step'):.3f} |"
        lines.append(line)
    ours = [n for n in ("torchfit_library", "torchfit_binary") if n in names]
    peers = [n for n in PEER_MODULES if n in names]
    if ours and peers:
        lines += ["", "Speed-up of torchfit over each peer (peer's median fit time / torchfit's): " + "; ".join(
            f"{o.removeprefix('torchfit_')} vs {p} {med(p, fit) / med(o, fit):.2f}x" for o in ours for p in peers)]
        lines += ["", "The same by paired ratios (peer's paired ratio / torchfit's; robust to slow periods): " + "; ".join(
            f"{o.removeprefix('torchfit_')} vs {p} {paired(p, fit) / paired(o, fit):.2f}x" for o in ours for p in peers)]
        if steady:
            lines += ["", "In the steady state (peer's median ms per step / torchfit's): " + "; ".join(
                f"{o.removeprefix('torchfit_')} vs {p} {med(p, 'steady_ms_per_step') / med(o, 'steady_ms_per_step'):.2f}x" for o in ours for p in peers)]
    return lines + [""]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (runs per program and setting)")
    p.add_argument("--workloads", default="mlp,cnn")
    p.add_argument("--batches", default="32,256")
    p.add_argument("--programs", default=",".join(PROGRAMS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1, help="epochs per run; from 2, the steady state (epochs 2..N) per step is reported too")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "mnist")
    p.add_argument("--hook-dispatch", type=Path, help="output of the hook_dispatch bench, quoted in the results")
    p.add_argument("--out", type=Path, default=BENCH / "results")
    a = p.parse_args()
    a.data = a.data.resolve()
    if not (a.data / "train-images.idx3-ubyte.gz").exists():
        sys.exit(f"MNIST not found in {a.data}: the benchmark needs ../shared/data/mnist (or --data DIR)")
    names = [n for n in a.programs.split(",") if n]
    skipped = [n for n in names if not available(n)]
    names = [n for n in names if n not in skipped]
    for n in skipped:
        print(f"SKIPPED {n}: not installed in .venv (bash bench/setup.sh installs it)", file=sys.stderr)
    settings = [(w, int(b)) for w in a.workloads.split(",") for b in a.batches.split(",")]
    results, failures = [], []
    for r in range(a.rounds):
        for w, b in settings:
            order = names[r % len(names):] + names[:r % len(names)]
            for n in order:
                if any(f["program"] == n for f in failures):
                    continue
                try:
                    rep = run_measured(a, n, w, b)
                except Failed as e:
                    print(f"FAILED {e}", file=sys.stderr, flush=True)
                    failures.append(dict(program=n, workload=w, batch=b, round=r, error=str(e)))
                    continue
                rep.update(program=n, workload=w, batch=b, round=r)
                results.append(rep)
                steady = "" if rep["steady_ms_per_step"] is None else f"  steady {rep['steady_ms_per_step']:.3f} ms/step"
                print(f"round {r + 1}/{a.rounds} {w} b{b} {n:<17} fit {rep['first_fit_seconds']:7.2f} s  wall {rep['wall_seconds']:7.2f} s  rss {rep['peak_rss_mib']:6.0f} MiB  acc {rep['valid_acc']:.4f}{steady}", flush=True)
        # Written after every round, so an interrupted run keeps the rounds it finished.
        lines = write(a, names, settings, results, failures, r + 1)
    print("\n".join(lines))
    if failures:
        sys.exit(f"{len(failures)} program(s) failed: " + ", ".join(f["program"] for f in failures))


def write(a, names, settings, results, failures, rounds_done):
    """Writes the tables of the rounds so far to results/<device>.md and .json (atomically)."""
    date = datetime.date.today().isoformat()
    ran = [n for n in names if any(r["program"] == n for r in results)]
    lines = [f"# Benchmark results: {a.device}", "",
             f"{date}, {machine()}; {a.threads} threads; medians of {rounds_done} alternating runs per program;",
             "ratios to the raw tch loop. `fit s`: the fit up to the end of its first epoch (48,000 training and",
             "12,000 validation samples) as the program reports it (no start-up, no data loading); `ratio`: median fit / the raw loop's median fit;",
             "`paired ratio`: median over rounds of fit / the raw loop's fit in the same round (robust to slow drifts",
             "of the machine's speed); `best s`: the fastest run; `wall s`: the whole process"
             + (f" ({a.epochs} epochs); `steady ms/step`: the median of epochs 2..{a.epochs}'s seconds per training step." if a.epochs > 1 else "."),
             "Command: `" + " ".join(["bash bench/run.sh", *sys.argv[1:]]) + "`"
             + (f" (interrupted after {rounds_done} of {a.rounds} rounds)" if rounds_done < a.rounds else ""), ""]
    lines += [f"- `{n}`: {PROGRAMS[n][0]}" for n in ran] + [""]
    for f in failures:
        lines += [f"- **`{f['program']}` failed** ({f['workload']} batch {f['batch']}, round {f['round'] + 1}) and was left out:", "",
                  "```", f["error"].strip()[-1500:], "```", ""]
    if REFERENCE in ran:
        for w, b in settings:
            lines += table(results, ran, w, b)
    if a.hook_dispatch and a.hook_dispatch.exists():
        lines += ["### Hook dispatch", "", "```", a.hook_dispatch.read_text().strip(), "```", ""]
    a.out.mkdir(parents=True, exist_ok=True)
    stem = a.out / a.device.split(":")[0]
    for path, text in [(stem.with_suffix(".md"), "\n".join(lines)), (stem.with_suffix(".json"), json.dumps(results + failures, indent=1))]:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    print(f"written: {stem.with_suffix('.md')} and {stem.with_suffix('.json')}", flush=True)
    return lines


if __name__ == "__main__":
    main()
