#!/usr/bin/env bash
# Install, then run the whole test suite (real local Spark, real standalone cluster, real models).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
python -m pytest -q "$@"
