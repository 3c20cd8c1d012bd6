#!/usr/bin/env python3
"""Kill harness: interrupts `torchfit train` at random moments, then resumes, and checks that
every run ends bit-identical to an uninterrupted one.

Each trial trains CONFIG into a fresh run directory, interrupting it 1 to --kills times at a
random moment between its start and the length of an uninterrupted run (so also before the
first epoch ends and while the first checkpoint is being saved), then lets `--resume` finish.
The final `model.safetensors` must equal the reference run's byte for byte, and its history too
(every value but the timings `dur`). An interruption is one of:

- `--signal KILL` (the default): SIGKILL to the process;
- `--signal INT`: SIGINT to the process's whole group, as a terminal's Ctrl-C sends it (the run
  stops after its batch and writes its run directory; a second signal never comes);
- `--stop-plugin LIB`: besides the signal, each interrupted attempt loads LIB (the SDK 1.1 test
  plugin, `tests/plugins/sdk11`) and its `stop_now` callback stops the run after a random
  training batch of a random epoch, as a time-budget callback would (the reference and the last
  resume load it too, never stopping).

With `--nproc N` every run is a data-parallel job of N workers started by `torchfit train
--nproc N`.

    python3 tests/kill_harness.py --torchfit target/release/torchfit --trials 50
    python3 tests/kill_harness.py --torchfit BIN --signal INT --trials 50
    python3 tests/kill_harness.py --torchfit BIN --signal INT --nproc 2 --trials 20
    python3 tests/kill_harness.py --torchfit BIN --stop-plugin target/release/libtorchfit_testplugin_sdk11.so
    python3 tests/kill_harness.py --torchfit BIN --config C --set max_epochs=6 --trials 200

The defaults train the digits demo for 4 epochs with a checkpoint every epoch (the README's
snippet, default prefix) and, with `--signal INT`, a `train_end_checkpoint` of its own prefix
(`cb_end_`), which saves the state of the cut epoch on Ctrl-C and must never be where a resume
starts. Exit code 0 when every trial matched, 1 otherwise. Standard library only.
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


CTRL_C_SETS = ["callbacks__end__type=train_end_checkpoint", "callbacks__end__fn_prefix=cb_end_"]
NEVER = 99999


def train(args, out, resume, stop=None):
    """Starts a run (its own process group); `stop` = (epoch, batch) for the stop plugin."""
    cmd = [args.torchfit, "train", args.config, "--out", out]
    sets = list(args.set)
    if args.stop_plugin:
        epoch, batch = stop or (NEVER, 0)
        sets += [f"plugins=[{json.dumps(args.stop_plugin)}]", "callbacks__stop__type=stop_now",
                 f"callbacks__stop__epoch={epoch}", f"callbacks__stop__batch={batch}"]
    for s in sets:
        cmd += ["--set", s]
    if args.nproc:
        cmd += ["--nproc", str(args.nproc)]
    if resume:
        cmd.append("--resume")
    env = dict(os.environ, TORCHFIT_LOG="error")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def interrupt(args, proc):
    """SIGKILL to the process, or SIGINT to its group as a terminal sends Ctrl-C."""
    if args.signal == "KILL":
        proc.send_signal(signal.SIGKILL)
    else:
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass


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
    p.add_argument("--signal", choices=["KILL", "INT"], default="KILL",
                   help="SIGKILL the process, or SIGINT its group (Ctrl-C)")
    p.add_argument("--nproc", type=int, default=None, help="train with --nproc N")
    p.add_argument("--stop-plugin", default=None,
                   help="the SDK 1.1 test plugin: its stop_now callback also stops each attempt mid-epoch")
    args = p.parse_args()
    if args.stop_plugin:
        args.stop_plugin = os.path.abspath(args.stop_plugin)
    if args.set is None:
        args.set = DEFAULT_SETS + (CTRL_C_SETS if args.signal == "INT" else [])
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
            stop = (rng.randint(1, 4), rng.randint(0, 40)) if args.stop_plugin else None
            proc = train(args, out, resume=True, stop=stop)
            time.sleep(rng.uniform(0.0, length))
            if proc.poll() is None:
                interrupt(args, proc)
                kills += 1
            _, err = proc.communicate()
            if proc.returncode not in (0, 130, -signal.SIGKILL, -signal.SIGINT):
                print(f"trial {trial}: an interrupted run ended with {proc.returncode}: {err.decode().strip()}")
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
    print(f"{args.trials - failures}/{args.trials} trials ended bit-identical ({kills} interruptions by SIG{args.signal}, reference {length:.2f} s)")
    if not args.work and failures == 0:
        shutil.rmtree(work)
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
