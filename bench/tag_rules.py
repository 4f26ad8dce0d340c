"""What each tag rule costs: the select stage's notes (flags, cross-lingual mark, domain), rule by rule.

    python bench/tag_rules.py --run-dir runs/scale_100k --out bench/results/tag_rules_100k.json [--limit N]

The select stage's largest job computes every sample's notes from its texts
(`stages/tag/notes.annotate`): the rule flags, the translation-defect flags (two of them
through Python UDFs), the cross-lingual mark and the domain tag. This times, on a run's
`normalized/` cached in memory, the whole annotate pass and then each rule alone (one
boolean column per job, forced with a noop write), so the rules worth making cheaper are
the ones that cost most. Every measurement is taken twice and the faster kept, after one
warm-up pass of the whole annotate (the JVM's compiler and the Python workers' model
loads would otherwise land on whichever rule came first). A rule's time includes the
shared scan of the cached texts; `scan` alone is reported beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="a finished run (its normalized/ is read)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N samples")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from mdaq_spark import schema as S
    from mdaq_spark.config import SparkConfig, load_config
    from mdaq_spark.report.stats import code_commit
    from mdaq_spark.rundir import NORMALIZED
    from mdaq_spark.session import build_session
    from mdaq_spark.stages.tag import crosslingual, domains, heuristics, translation
    from mdaq_spark.stages.tag.notes import annotate

    cfg = load_config(None, [], **{"input.paths": [args.run_dir], "output.path": args.run_dir})
    spark = build_session(SparkConfig(driver_memory=args.driver_memory, app_name="tag-rules-bench"))
    try:
        content = spark.read.parquet(str(Path(args.run_dir) / NORMALIZED))
        if args.limit is not None:
            content = content.orderBy(S.SAMPLE_ID).limit(args.limit)
        content = content.cache()
        rows = content.count()

        def timed(frame) -> float:
            best = float("inf")
            for _ in range(args.repeats):
                started = time.perf_counter()
                frame.write.format("noop").mode("overwrite").save()
                best = min(best, time.perf_counter() - started)
            return round(best, 2)

        annotate(content, cfg).write.format("noop").mode("overwrite").save()  # warm-up
        results = {"scan": timed(content.select(S.SAMPLE_ID)), "annotate (all notes)": timed(annotate(content, cfg))}
        marked = translation.with_texts(
            content.withColumn(S.CROSSLINGUAL, crosslingual.is_crosslingual(cfg.crosslingual, cfg.translation))
        )
        results["crosslingual"] = timed(marked.select(S.CROSSLINGUAL))
        for name, expr in heuristics.rules(cfg.filters).items():
            results[f"filters.{name}"] = timed(content.select(expr.alias(name)))
        for name, expr in translation.rules(cfg.translation).items():
            results[f"translation.{name}"] = timed(marked.select(expr.alias(name)))
        results["domain"] = timed(content.select(domains.domain_tag(cfg.domains).alias(S.DOMAIN)))
        for name, seconds in results.items():
            print(f"{name:45s} {seconds:7.2f} s", flush=True)
    finally:
        spark.stop()
    out = {
        "benchmark": "tag_rules",
        "command": " ".join(["python", *sys.argv]),
        "commit": code_commit() or "unknown",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "rows": rows,
        "repeats": args.repeats,
        "seconds": results,
        "ms_per_row": {name: round(1000 * s / rows, 4) for name, s in results.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
