"""In-memory cost of a QSM head's score per row: the shipped layer head against the affine head.

Both heads score row by row (models.qsm.row_by_row) so a score does not depend on its batch;
this measures what that costs outside Spark, on random inputs of the real shapes, with
single-threaded BLAS (as one Spark task on one core runs it).

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python bench/score_head.py --out bench/results/score_head.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from mdaq_spark.models import registry
from mdaq_spark.models.qsm import QsmHead, score_and_embed
from mdaq_spark.report.stats import code_commit

AFFINE_HEAD_R400 = Path(__file__).resolve().parent / "heads" / "e5-small-affine-r400"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    commit = code_commit()  # read before the run: a commit made while it runs is not it
    heads = {
        "layer head (shipped)": QsmHead.load(registry.resolve_head("auto", "multilingual-e5-small")),
        "affine head": QsmHead.load(AFFINE_HEAD_R400),
    }
    rng = np.random.default_rng(0)
    p = rng.normal(size=(args.rows, 384)).astype(np.float32)
    r = rng.normal(size=(args.rows, 384)).astype(np.float32)
    results = {}
    for name, head in heads.items():
        states = rng.normal(size=(args.rows, len(head.layers), 384)).astype(np.float16) if head.layers else None
        best = float("inf")
        for _ in range(args.repeats):
            started = time.perf_counter()
            score_and_embed(p, r, head, states)
            best = min(best, time.perf_counter() - started)
        results[name] = {"layers": list(head.layers), "microseconds_per_row": round(best / args.rows * 1e6, 1)}
        print(f"{name:22s} {results[name]['microseconds_per_row']:7.1f} us/row")
    out = {
        "commit": commit,
        "rows": args.rows,
        "repeats": args.repeats,
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "heads": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
