#!/usr/bin/env bash
# Set-up of the benchmark suite: the project's venv (libtorch from PyPI torch==2.11.0), then the
# Python peers, pinned (torch repeated so that no peer moves it). Only the benchmark needs the peers; the tests never import them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .cargo/setup.sh
.venv/bin/python -m pip install --disable-pip-version-check -q torch==2.11.0 skorch==1.4.0 poutyne==1.19.0 lightning==2.6.6
