#!/usr/bin/env python3
"""Config fuzzer: runs `torchfit train` on the digits demo with random `--set` mutations
(extreme, wrong-typed, empty and unknown values for the keys a user sets) and checks the
contract for bad input: no panic, no signal, no hang; exit 0, 1, 2 or 3, and a failure ends with
one `error:` line.

    python3 tests/config_fuzz.py --torchfit target/release/torchfit --runs 300

Each run trains one epoch at most (`max_epochs` is pinned); a run that exceeds --timeout seconds
counts as a hang. Prints every failing command line, so that it can become a regression test
(`engine/cli/tests/cli.rs` keeps the ones found so far). Exit code 0 when every run kept the
contract. Standard library only.
"""

import argparse
import os
import random
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

KEYS = [
    "seed", "threads", "device", "task", "on_nan", "warm_start", "malloc",
    "module__name", "module__hidden", "module__dropout", "module__activation", "module__batch_norm",
    "optimizer__name", "optimizer__lr", "optimizer__momentum", "optimizer__weight_decay",
    "optimizer__betas", "optimizer__nesterov", "optimizer__eps",
    "criterion__name", "criterion__label_smoothing", "criterion__weight",
    "iterator_train__batch_size", "iterator_train__shuffle", "iterator_train__prefetch",
    "iterator_valid__batch_size", "iterator_valid__prefetch",
    "train_split__fraction", "train_split__kind", "train_split__stratified",
    "test_split__fraction", "test_split__kind",
    "dataset__name", "dataset__scale", "dataset__target", "dataset__shape", "dataset__delimiter",
    "dataset__header", "dataset__path",
    "callbacks__print_log", "callbacks__cp__type", "callbacks__cp__monitor", "callbacks__es__type",
    "callbacks__es__patience", "callbacks__lr__type", "callbacks__lr__policy", "callbacks__x__unknown",
    "distributed__timeout", "distributed__bucket_cap_mb",
    "plugin_dirs", "plugins", "unknown_key",
]

VALUES = [
    "0", "1", "-1", "2", "0.5", "-0.5", "1e9", "4000000000", "-4000000000", "9223372036854775807",
    "100000", "1e308", "-1e308", "nan", "inf", "-inf", "true", "false", '""', '"x"', '"cuda"', '"auto"',
    '"regression"', '"none"', '"predefined"', '"mlp"', '"cnn"', '"adam"', '"nll"', '"bce_with_logits"',
    '"mse"', '"checkpoint"', '"early_stopping"', '"lr_scheduler"', '"missing.csv"', '"/"', '"../"',
    "[]", "[0]", "[-5]", "[1e9]", "[4000000000]", "[1, 8, 8]", "[64, 0]", '["a"]', "[0.9, 1.5]",
    "{a = 1}", '"' + "x" * 300 + '"',
]


def run(args, sets):
    cmd = [args.torchfit, "train", os.path.join(ROOT, "examples/digits/config.toml")]
    for s in sets:
        cmd += ["--set", s]
    cmd += ["--set", "max_epochs=1"]
    env = dict(os.environ, TORCHFIT_LOG="error")
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return cmd, "hang (over --timeout seconds)"
    err = p.stderr.decode(errors="replace").strip().splitlines()
    if p.returncode < 0:
        return cmd, f"killed by signal {-p.returncode}"
    if p.returncode not in (0, 1, 2, 3):
        return cmd, f"exit code {p.returncode}: {' | '.join(err[-3:])}"
    if p.returncode != 0 and (not err or not err[-1].startswith("error: ")):
        return cmd, f"exit code {p.returncode} without an error line: {' | '.join(err[-3:])}"
    if p.returncode == 2 and len(err) != 1:
        return cmd, f"bad input in {len(err)} lines: {' | '.join(err[:3])}"
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--torchfit", required=True, help="the torchfit binary")
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args()
    rng = random.Random(args.seed)
    failures = 0
    for _ in range(args.runs):
        sets = [f"{rng.choice(KEYS)}={rng.choice(VALUES)}" for _ in range(rng.randint(1, 3))]
        failed = run(args, sets)
        if failed:
            failures += 1
            cmd, why = failed
            print(f"{why}\n    {' '.join(repr(c) if ' ' in c else c for c in cmd)}")
    print(f"{args.runs - failures}/{args.runs} mutated configs kept the contract")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
