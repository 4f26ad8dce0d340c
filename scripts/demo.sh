#!/usr/bin/env bash
# Install, then run the whole job on the bundled demo corpus with embedded local Spark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
mdaq demo --output "${1:-runs/demo}" --overwrite
echo "selected subset: ${1:-runs/demo}/selected   stats: ${1:-runs/demo}/report/stats.json"
