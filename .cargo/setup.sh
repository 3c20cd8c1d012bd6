#!/usr/bin/env bash
# One-time set-up for torchfit: a project-local venv (.venv) holding PyPI's torch==2.11.0, the
# libtorch that tch 0.24 builds and links against. Idempotent: when already done it returns at once.
# After it, plain `cargo build`, `cargo test` and `cargo run` work (.cargo/config.toml points tch
# at .venv/torch, and every binary gets an rpath to its lib/ folder).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
torch_version=2.11.0
# safetensors: tests read torchfit's checkpoints with safetensors.torch, as a PyTorch user would.
# scikit-learn: tests compare cross-validation folds with its KFold and StratifiedKFold.
# tensorboard: tests read the tensorboard callback's event files with its EventAccumulator.
# nvidia-cuda-crt, nvidia-cuda-cccl: CUDA headers that ProcessGroupNCCL.hpp includes and torch's
# wheel does not pull (engine/nccl builds NCCL support with them; a few MB).
packages="torch==$torch_version numpy safetensors scikit-learn==1.7.2 tensorboard==2.21.0 nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85"
stamp="$venv/.torchfit-setup"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$packages" ] && [ -e "$venv/torch/lib/libtorch_cpu.so" ]; then
  exit 0
fi

python=${PYTHON:-python3}
command -v "$python" >/dev/null || { echo "setup: $python not found; torchfit needs Python 3 to fetch libtorch" >&2; exit 1; }
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust first (https://rustup.rs)" >&2; exit 1; }

echo "setup: installing $packages into $venv (about 5 GB, and 2.6 GB more for the wheels while pip installs them; a few minutes the first time)" >&2
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-cache-dir -q $packages
torch_dir=$("$venv/bin/python" -c "import os, torch; print(os.path.relpath(os.path.dirname(torch.__file__), \"$venv\"))")
ln -sfn "$torch_dir" "$venv/torch"
echo "$packages" > "$stamp"
echo "setup: done; libtorch at $torch_dir" >&2
