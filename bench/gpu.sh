#!/usr/bin/env bash
# The checks for a machine with a GPU, in one go (bench/README.md, "On a GPU"): NCCL at world
# size 1 against one plain CUDA process (bench/cuda_check.py), the optimizers (for-loop, foreach,
# fused) against torch.optim on cuda (the parity test binary, built here with
# `cargo test --release -p torchfit-tests --test parity --no-run`), then the suite's table on cuda
# (bench/run.py --device cuda --epochs 3: the fit up to its first epoch's end and the steady
# state of epochs 2..3 per step, every program but raw_tch_malloc, whose subject is the CPU
# allocator). Needs the release programs in target/release (built here, or copied to a machine
# whose loader is pointed at its own torch/lib), .venv/bin/python with torch and the peers, and
# MNIST in $DATA (default ../shared/data/mnist). $PROGRAMS narrows the suite (the Python
# programs' start-up is 11-25 s each on an H200 machine, so a short lease fits one round of all
# of them or several rounds of the Rust ones: PROGRAMS=raw_tch,torchfit_library,torchfit_binary).
#
#   bash bench/gpu.sh [OUT_DIR] [ROUNDS] [SECONDS_FOR_THE_SUITE]
#
# The suite writes its tables after every round, so a run stopped at SECONDS keeps the rounds it
# finished. Exits non-zero when either part failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results}
rounds=${2:-3}
limit=${3:-3600}
data=${DATA:-../shared/data/mnist}
nvidia-smi -L
.venv/bin/python bench/cuda_check.py --epochs 10 --out "$out"
check=$?
parity=$(ls target/release/deps/parity-* 2>/dev/null | grep -v '\.d$' | head -1)
if [ -n "$parity" ]; then
    TORCHFIT_PARITY_DEVICE=cuda "$parity" optimizer --test-threads 1 2>&1 | tail -3 | tee "$out/cuda-optimizer-parity.txt"
    optim=${PIPESTATUS[0]}
else
    echo "no parity test binary in target/release/deps: build it first"; optim=1
fi
timeout "$limit" .venv/bin/python bench/run.py --device cuda --rounds "$rounds" --epochs "${EPOCHS:-3}" --data "$data" --out "$out" \
    --programs "${PROGRAMS:-raw_tch,torchfit_library,torchfit_binary,pytorch_plain,skorch,poutyne,lightning}"
suite=$?
echo "cuda_check: exit $check; optimizer parity: exit $optim; suite: exit $suite"
[ "$check" -eq 0 ] && [ "$optim" -eq 0 ] && [ "$suite" -eq 0 ]
