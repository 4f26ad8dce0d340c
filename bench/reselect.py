"""Redo only the select stage and the report of a finished run, and summarise what each pre-selection step did.

    python bench/reselect.py --run-dir runs/midb10_copy --out bench/results/midb_preselect.json \
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
    from mdaq_spark.pipeline.runner import Runner
    from mdaq_spark.report.stats import write_stats
    from mdaq_spark.rundir import CANDIDATES, SCORES, RunDir
    from mdaq_spark.session import build_session
    from mdaq_spark.stages.base import StageContext
    from mdaq_spark.stages.select import SelectStage

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
    rundir = RunDir.of_job(spark, cfg.output)
    runner = Runner(StageContext(spark, rundir), cfg.output.format)
    for stage in ("ingest", "encode", "score", "cluster"):
        marker = rundir.marker(stage)
        runner.log.keys[stage], runner.log.info[stage] = marker["key"], marker.get("info", {})
        runner.log.timings[stage] = 0.0
        runner.log.skipped.append(stage)
    fingerprint = runner.log.info["score"][S.MODEL_FINGERPRINT]
    started = time.perf_counter()
    keys = runner.log.keys
    runner.run(SelectStage(cfg, fingerprint, SCORES, fingerprint, keys["cluster"], keys["score"]))
    select_seconds = time.perf_counter() - started
    stats = write_stats(spark, rundir, cfg, runner.log, score_fingerprint=fingerprint).to_json()

    # what the selection looks like: mean score and how similar the selected samples are to each other
    selected = rundir.selected_table(cfg.output.format).select(S.SAMPLE_ID, S.LANG, S.CLUSTER_ID)
    emb = rundir.model_table(SCORES, fingerprint).select(S.SAMPLE_ID, S.QSM_SCORE, S.EMBEDDING)
    quality = {
        r[S.LANG]: {"mean_qsm": r["q"], "clusters_covered": r["c"]}
        for r in selected.join(emb, on=S.SAMPLE_ID)
        .groupBy(S.LANG)
        .agg(F.mean(S.QSM_SCORE).alias("q"), F.countDistinct(S.CLUSTER_ID).alias("c"))
        .collect()
    }
    removed_examples = (
        rundir.table(CANDIDATES)
        .where(F.col(S.PRUNE_REASON) == S.REASON_NEAR_DUPLICATE)
        .orderBy(F.xxhash64(S.SAMPLE_ID))
        .limit(3)
        .select(S.SAMPLE_ID, S.DUPLICATE_OF, S.DUP_SIMILARITY)
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
