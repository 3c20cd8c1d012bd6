"""Model-selection benchmark (issue: model selection): the grid search that ends skorch's first
talk, MNIST SimpleFeedforward (784-98-10, dropout) over module__dropout 0.2, 0.5, 0.8 with cv=3,
SGD lr 0.3, 10 epochs, batch 128, 20 % validation split in each fit, the best refitted on the 60k
training images and tested on the 10k test images.

Runs, in alternating rounds (the order rotates every round), each end to end in a fresh process
(start-up, data loading, the 9 fits, the refit, the test):
  torchfit_jobs2  `torchfit search examples/mnist/skorch-grid-search.toml --jobs 2` (2 fits at
                  once, 1 thread each)
  torchfit_jobs1  the same with --jobs 1 (one fit at a time, 2 threads)
  skorch          skorch 1.4.0's NeuralNetClassifier in scikit-learn's GridSearchCV, n_jobs=1,
                  2 threads (python/skorch_grid.py)
  skorch_jobs2    the same with n_jobs=2 (joblib's worker processes), 1 thread each
and reports the median wall time of each, the paired ratios skorch / torchfit, the best
parameters, the candidates' mean scores side by side and the test accuracy of the refitted best.

    .venv/bin/python bench/search.py [--rounds 3] [--data ../shared/data/mnist] [--bin PATH]
Writes bench/results/search-cpu.md and .json, atomically. Needs a release build of the binary
and skorch in the venv (bench/setup.sh installs it).
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time
import results_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
BIN = os.path.join(ROOT, "target", "release", "torchfit")
CONFIG = os.path.join(ROOT, "examples", "mnist", "skorch-grid-search.toml")


def torchfit(jobs, data):
    out = tempfile.mkdtemp(prefix="tf-search-bench-")
    shutil.rmtree(out)
    sets = []
    for key, kind in (("dataset", "train"), ("test_dataset", "t10k")):
        sets += [f'{key}__images="{data}/{kind}-images.idx3-ubyte.gz"', f'{key}__labels="{data}/{kind}-labels.idx1-ubyte.gz"']
    cmd = [BIN, "search", CONFIG, "--grid", "module__dropout=0.2,0.5,0.8", "--cv", "3", "--jobs", str(jobs), "--out", out]
    cmd += [a for s in sets + ["callbacks__print_log=false"] for a in ("--set", s)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "TORCHFIT_LOG": "warn"})
    seconds = time.perf_counter() - start
    s = json.load(open(os.path.join(out, "search.json")))
    test = json.load(open(os.path.join(out, "refit", "summary.json")))["test"]["accuracy"]
    shutil.rmtree(out)
    r = s["cv_results_"]
    return {"seconds": seconds, "best_params": s["best_params_"], "best_score": s["best_score_"],
            "means": r["mean_test_score"], "stds": r["std_test_score"], "test_accuracy": test}


def skorch(jobs, threads, data):
    start = time.perf_counter()
    p = subprocess.run([PY, "skorch_grid.py", "--data", data, "--threads", str(threads), "--n-jobs", str(jobs)],
                       check=True, capture_output=True, text=True, cwd=os.path.join(ROOT, "bench", "python"))
    seconds = time.perf_counter() - start
    report = json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])
    report["search_seconds"], report["seconds"] = report["seconds"], seconds
    return report


def main():
    global BIN
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "mnist"))
    p.add_argument("--bin", default=BIN)
    a = p.parse_args()
    BIN = os.path.abspath(a.bin)
    data = os.path.abspath(a.data)
    if not os.path.exists(os.path.join(data, "train-images.idx3-ubyte.gz")):
        sys.exit(f"MNIST not found in {data}")
    progs = {
        "torchfit_jobs2": lambda: torchfit(2, data),
        "torchfit_jobs1": lambda: torchfit(1, data),
        "skorch": lambda: skorch(1, 2, data),
        "skorch_jobs2": lambda: skorch(2, 1, data),
    }
    names = list(progs)
    runs = {n: [] for n in names}
    for r in range(a.rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            rep = progs[n]()
            runs[n].append(rep)
            print(f"round {r + 1} {n}: {rep['seconds']:.1f} s, best {rep['best_params']} {rep['best_score']:.4f}", flush=True)
    med = {n: statistics.median(x["seconds"] for x in runs[n]) for n in names}
    paired = lambda a, b: statistics.median(x["seconds"] / y["seconds"] for x, y in zip(runs[a], runs[b]))
    shape = {"torchfit_jobs2": "2 x 1", "torchfit_jobs1": "1 x 2", "skorch": "1 x 2", "skorch_jobs2": "2 x 1"}
    lines = [
        "# Model-selection benchmark: skorch's MNIST grid search (dropout 0.2 / 0.5 / 0.8, cv=3)",
        "",
        f"`python bench/search.py --rounds {a.rounds}`, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores. "
        "Wall time of the whole process: start-up, loading MNIST, 9 fits of 10 epochs on 40k images "
        "(32k trained, 8k validated), the refit on 60k, the test on 10k.",
        "",
        "| program | fits at once x threads | wall s (median) | best s | best params | best mean | means (0.2 / 0.5 / 0.8) | test acc |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in names:
        last = runs[n][-1]
        means = " / ".join(f"{m:.4f}" for m in last["means"])
        best = min(x["seconds"] for x in runs[n])
        lines.append(f"| {n} | {shape[n]} | {med[n]:.1f} | {best:.1f} | {last['best_params']} | "
                     f"{last['best_score']:.4f} | {means} | {last['test_accuracy']:.4f} |")
    diff = max(abs(x - y) for x, y in zip(runs["torchfit_jobs2"][-1]["means"], runs["skorch"][-1]["means"]))
    lines += [
        "",
        f"Paired ratios (median over rounds): skorch / torchfit_jobs2 = {paired('skorch', 'torchfit_jobs2'):.2f} "
        f"(target >= 2); skorch_jobs2 / torchfit_jobs2 = {paired('skorch_jobs2', 'torchfit_jobs2'):.2f}; "
        f"skorch / torchfit_jobs1 = {paired('skorch', 'torchfit_jobs1'):.2f}. "
        f"Largest difference of a candidate's mean score, torchfit_jobs2 vs skorch: {diff:.4f} (target <= 0.005).",
    ]
    results_file.write("search-cpu", "\n".join(lines) + "\n", runs)


if __name__ == "__main__":
    main()
