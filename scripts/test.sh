#!/usr/bin/env bash
# Install, then run the whole test suite (real local Spark, real standalone cluster, real models).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
# two test processes, a whole test file each (module fixtures such as a standalone cluster are
# built once), files in the order tests/conftest.py sorts them (longest first; xdist would
# otherwise put the files with most tests first); MDAQ_TEST_WORKERS=0 runs all in this process
python -m pytest -q -n "${MDAQ_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
