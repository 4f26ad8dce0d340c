"""spark-submit / python entry point for QSM training (runs on the driver; GPU if it has one).

python jobs/train_qsm.py --data ../shared/data/midb_train --output models/qsm --holdout-langs cs,ko,tr
"""

from __future__ import annotations

import sys

from mdaq_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-qsm", *sys.argv[1:]]))
