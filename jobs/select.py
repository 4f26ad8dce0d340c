"""spark-submit entry point for the whole selection job.

    spark-submit --master spark://host:7077 jobs/select.py --config conf/cluster.yaml \
        --input hdfs:///corpora/sft --output hdfs:///runs/sft-2026-11-24

The master, executor resources and Python environment come from spark-submit; everything
about the job comes from the config.
"""

from __future__ import annotations

import os
import sys

# Python puts this script's folder first on sys.path, where this file would shadow the
# standard library's `select` module (imported by socket, subprocess, asyncio...): drop it.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from mdaq_spark.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
