#!/usr/bin/env bash
# The benchmark suite in one command (see bench/README.md): builds the programs and the stock
# plugin .so files, installs the Python peers into .venv, runs the hook-dispatch microbenchmark,
# then every workload through every program, alternating. Arguments go to bench/run.py
# (e.g. --rounds 7, --workloads mlp, --batches 32, --device cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
bash bench/setup.sh
cargo build --release --workspace
cargo build --release -p torchfit-testplugin-faulty
mkdir -p bench/results
cargo bench -q -p torchfit-engine --bench hook_dispatch | tee bench/results/hook_dispatch.txt
.venv/bin/python bench/run.py --hook-dispatch bench/results/hook_dispatch.txt "$@"
