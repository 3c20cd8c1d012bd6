#!/usr/bin/env python3
"""Kill harness: SIGKILLs `torchfit train` at random moments, then resumes, and checks that
every run ends bit-identical to an uninterrupted one.

Each trial trains CONFIG into a fresh run directory, killing the process 1 to --kills times at
a random moment between its start and the length of an uninterrupted run (so also before the
first epoch ends and while the first checkpoint is being saved), then lets `--resume` finish.
The final `model.safetensors` must equal the reference run's byte for byte, and its history too
(every value but the timings `dur`).

    python3 tests/kill_harness.py --torchfit target/release/torchfit --trials 50
    python3 tests/kill_harness.py --torchfit BIN --config C --set max_epochs=6 --trials 200

The defaults train the digits demo for 4 epochs with a checkpoint every epoch (the README's
snippet, default prefix). Exit code 0 when every trial matched, 1 otherwise. Standard library
only.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SETS = [
    "max_epochs=4",
    "callbacks__cp__type=checkpoint",
    "callbacks__cp__monitor=false",
]


def train(args, out, resume):
    cmd = [args.torchfit, "train", args.config, "--out", out]
    for s in args.set:
        cmd += ["--set", s]
    if resume:
        cmd.append("--resume")
    env = dict(os.environ, TORCHFIT_LOG="error")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def history(out):
    with open(os.path.join(out, "history.json")) as f:
        h = json.load(f)
    for epoch in h:
        epoch.pop("dur", None)
    return h


def model(out):
    with open(os.path.join(out, "model.safetensors"), "rb") as f:
        return f.read()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--torchfit", required=True, help="the torchfit binary")
    p.add_argument("--config", default=os.path.join(ROOT, "examples/digits/config.toml"))
    p.add_argument("--set", action="append", default=None, help="KEY=VALUE (repeatable; replaces the defaults)")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--kills", type=int, default=3, help="most kills per trial")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=None, help="folder for the runs (default: a temporary one, removed)")
    args = p.parse_args()
    args.set = args.set if args.set is not None else DEFAULT_SETS
    rng = random.Random(args.seed)
    work = args.work or tempfile.mkdtemp(prefix="torchfit-kill-")
    os.makedirs(work, exist_ok=True)

    reference = os.path.join(work, "reference")
    shutil.rmtree(reference, ignore_errors=True)
    start = time.monotonic()
    proc = train(args, reference, resume=False)
    _, err = proc.communicate()
    length = time.monotonic() - start
    if proc.returncode != 0:
        print(f"the reference run failed ({proc.returncode}): {err.decode().strip()}", file=sys.stderr)
        return 1
    want_history, want_model = history(reference), model(reference)

    failures, kills = 0, 0
    for trial in range(args.trials):
        out = os.path.join(work, f"trial-{trial}")
        shutil.rmtree(out, ignore_errors=True)
        for _ in range(rng.randint(1, args.kills)):
            proc = train(args, out, resume=True)
            time.sleep(rng.uniform(0.0, length))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate()
        proc = train(args, out, resume=True)
        _, err = proc.communicate()
        if proc.returncode != 0:
            failures += 1
            print(f"trial {trial}: the resumed run failed ({proc.returncode}): {err.decode().strip()}")
        elif model(out) != want_model or history(out) != want_history:
            failures += 1
            print(f"trial {trial}: the resumed run differs from the uninterrupted one ({out})")
        elif not args.work:
            shutil.rmtree(out)
    print(f"{args.trials - failures}/{args.trials} trials ended bit-identical ({kills} kills, reference {length:.2f} s)")
    if not args.work and failures == 0:
        shutil.rmtree(work)
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
