"""spark-submit entry point for the whole selection job.

    spark-submit --master spark://host:7077 jobs/run_select.py --config conf/cluster.yaml \
        --input hdfs:///corpora/sft --output hdfs:///runs/sft-2026-11-24

The master, executor resources and Python environment come from spark-submit; everything
about the job comes from the config.
"""

from __future__ import annotations

import sys

from mdaq_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
