#!/usr/bin/env bash
# Creates .venv and installs the suite. Without an NVIDIA GPU, torch comes as the CPU build
# (torch==2.13.0, which these machines keep on local disk); with one, pip picks the ordinary CUDA build.
# The tests need the optional extras too (Ray for sweeps, rliable and matplotlib for reports,
# minatar for the MinAtar games).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if ! command -v nvidia-smi >/dev/null 2>&1; then
    .venv/bin/python -m pip install --quiet "torch==2.13.0" \
        || .venv/bin/python -m pip install --quiet "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
fi
.venv/bin/python -m pip install --quiet -e ".[dev,ray,report,minatar,wandb]"
