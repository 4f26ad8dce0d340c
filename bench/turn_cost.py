"""What scoring every exchange costs: encode and score seconds per 1,000 samples of 1, 2 and 4 turns.

    python bench/turn_cost.py --samples 240 --out bench/results/turn_cost.json

Each corpus has the same number of samples, built from the same real MIDB records (German):
a sample of t turns is t consecutive records as one ShareGPT conversation (revised instruction,
expert-revised response), so a 4-turn corpus has four times the exchanges, and every exchange
but the first has a longer prompt (the turns before it). Each corpus runs the whole job in a
fresh run directory and store with embedded local[2] Spark, once with `scoring.turns: first`
(the first exchange only, as releases before exchanges did) and once with `all`; the encode and
score stages' own seconds come from the run's stats. One SparkSession serves every run, and a
warm-up run on a small corpus comes first, so no row pays the session's or the model's start.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from mdaq_spark.report.stats import code_commit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MIDB = REPO.parent / "shared" / "data" / "midb_train"


def conversations(records: list[dict], samples: int, turns: int) -> list[dict]:
    """`samples` ShareGPT records of `turns` exchanges each, from consecutive MIDB records."""
    out = []
    for i in range(samples):
        chosen = [records[(i * turns + j) % len(records)] for j in range(turns)]
        convo = []
        for r in chosen:
            convo += [
                {"from": "human", "value": r["Revised Instruction"]},
                {"from": "gpt", "value": r["Revised Response"]},
            ]
        out.append({"conversations": convo, "lang": "de", "id": f"s{i}-t{turns}"})
    return out


def run(spark, corpus: Path, out: Path, model_cache: str | None, turns_mode: str) -> dict:
    from mdaq_spark.config import load_config
    from mdaq_spark.pipeline.runner import run_pipeline

    overrides = ["spark.shuffle_partitions=4", f"scoring.turns={turns_mode}", "report.html=false"]
    if model_cache:
        overrides.append(f"model.cache_dir={model_cache}")
    cfg = load_config(None, overrides, **{"input.paths": [str(corpus)], "output.path": str(out)})
    return run_pipeline(spark, cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=240)
    ap.add_argument("--turns", default="1,2,4")
    ap.add_argument("--midb", default=str(MIDB / "German.json"))
    ap.add_argument("--model-cache", default=None)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    commit = code_commit()  # read before the run: a commit made while it runs is not it
    logging.basicConfig(level=logging.WARNING)

    from mdaq_spark.config import SparkConfig
    from mdaq_spark.session import build_session

    records = json.loads(Path(args.midb).read_text(encoding="utf-8"))
    spark = build_session(SparkConfig(master="local[2]", shuffle_partitions=4, driver_memory="3g"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        warm = root / "warm.json"
        warm.write_text(json.dumps(conversations(records[-40:], 20, 2), ensure_ascii=False), encoding="utf-8")
        run(spark, warm, root / "warm_run", args.model_cache, "all")
        for turns in [int(t) for t in args.turns.split(",")]:
            corpus = root / f"t{turns}.json"
            corpus.write_text(json.dumps(conversations(records, args.samples, turns), ensure_ascii=False), "utf-8")
            for mode in ("first", "all"):
                started = time.perf_counter()
                stats = run(spark, corpus, root / f"run_t{turns}_{mode}", args.model_cache, mode)
                wall = time.perf_counter() - started
                seconds = stats["stage_seconds"]
                kept = stats["counts"]["kept"]
                row = {
                    "turns": turns,
                    "scoring_turns": mode,
                    "samples": kept,
                    "exchanges_encoded": stats["stage_info"]["encode"]["rows_through_model_udf"],
                    "encode_s": seconds["encode"],
                    "score_s": seconds["score"],
                    "encode_s_per_1000_samples": round(1000 * seconds["encode"] / kept, 1),
                    "score_s_per_1000_samples": round(1000 * seconds["score"] / kept, 1),
                    "run_wall_s": round(wall, 1),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    spark.stop()
    result = {"bench": "turn_cost", "commit": commit, "samples": args.samples, "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
