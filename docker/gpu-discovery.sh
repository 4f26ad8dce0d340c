#!/usr/bin/env bash
# Spark GPU resource discovery: prints the GPUs this executor may use, in Spark's JSON shape.
# Referenced by spark.executor.resource.gpu.discoveryScript (see conf/cluster.yaml).
set -euo pipefail
ids=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | paste -sd, - | sed 's/\([0-9][0-9]*\)/"\1"/g')
echo "{\"name\": \"gpu\", \"addresses\": [${ids}]}"
