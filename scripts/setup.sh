#!/usr/bin/env bash
# Creates ./.venv and installs medprune into it. Idempotent; safe to run again.
# PyTorch goes first as torch==2.13.0 (the CPU build pip finds locally): installed later, as a
# dependency of monai, pip would pull the CUDA build and gigabytes of packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e '.[dev,nifti]'  # nifti: nibabel, for the NIfTI reader and its tests
