"""Redo only the select stage and the report of a finished run, and summarise what each pre-selection step did.

    python bench/reselect.py --run-dir /work/runs/midb10_copy --out bench/results/midb_issue7.json \
        --set near_dup.enabled=true --set domains.enabled=true [--set selection.strategy=mmr]

For comparing selection settings (DAS vs MMR, near-duplicates on/off) on one corpus without
touching the model stages. The upstream stage keys are taken from the run's own markers, not
recomputed: a re-copied input folder (new file modification times) would otherwise look like
a new corpus and re-encode everything. Work on a copy of the run directory: select/, candidates/,
flagged/ and report/ are rewritten.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pyspark.sql import functions as F


def main() -> int:
    from mdaq_spark import schema as S
    from mdaq_spark.config import load_config
    from mdaq_spark.pipeline import CANDIDATES, SCORES, Run, select_key
    from mdaq_spark.report import write_stats
    from mdaq_spark.session import build_session

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()

    run_dir = Path(args.run_dir)
    done = json.loads((run_dir / "report" / "stats.json").read_text())
    cfg = load_config(None, args.set, **{"output.path": str(run_dir)})
    # the model/clustering sections of the finished run, so the report shows what produced the data
    for section in ("input", "language", "model", "embedding", "clustering"):
        cfg = cfg.model_copy(update={section: type(getattr(cfg, section)).model_validate(done["config"][section])})
    spark = build_session(cfg.spark)
    run = Run(spark, cfg)
    for stage in ("ingest", "encode", "score", "cluster"):
        marker = json.loads((run_dir / "_stages" / f"{stage}.json").read_text())
        run.keys[stage], run.info[stage], run.timings[stage] = marker["key"], marker.get("info", {}), 0.0
        run.skipped.append(stage)
    started = time.perf_counter()
    run.stage("select", select_key(cfg, run.keys["cluster"], run.keys["score"]), run.select)
    select_seconds = time.perf_counter() - started
    stats = write_stats(run)

    # what the selection looks like: mean score and how similar the selected samples are to each other
    selected = run.selected_table().select(S.SAMPLE_ID, S.LANG, S.CLUSTER_ID)
    emb = run.model_table(SCORES).select(S.SAMPLE_ID, S.QSM_SCORE, S.EMBEDDING)
    quality = {
        r[S.LANG]: {"mean_qsm": r["q"], "clusters_covered": r["c"]}
        for r in selected.join(emb, on=S.SAMPLE_ID)
        .groupBy(S.LANG)
        .agg(F.mean(S.QSM_SCORE).alias("q"), F.countDistinct(S.CLUSTER_ID).alias("c"))
        .collect()
    }
    removed_examples = (
        run.table(CANDIDATES)
        .where(F.col("prune_reason") == "near_duplicate")
        .orderBy(F.xxhash64(S.SAMPLE_ID))
        .limit(3)
        .select(S.SAMPLE_ID, "duplicate_of", "dup_similarity")
        .collect()
    )
    result = {
        "run_dir": str(run_dir),
        "overrides": args.set,
        "select_seconds": round(select_seconds, 2),
        "counts": stats["counts"],
        "pruning": stats["pruning"],
        "per_language": {
            lang: {
                k: e.get(k)
                for k in (
                    "samples",
                    "candidates",
                    "pruned",
                    "flags",
                    "crosslingual",
                    "domains",
                    "largest_near_dup_group",
                    "selected",
                    "selected_by_group",
                    "selected_total",
                )
            }
            | quality.get(lang, {})
            for lang, e in stats["per_language"].items()
        },
        "near_duplicate_examples": [r.asDict() for r in removed_examples],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
