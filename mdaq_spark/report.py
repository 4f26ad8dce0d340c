"""stats.json for a run: counts per stage and language, from the written outputs.

Counts come from a groupBy over what was actually written (never from accumulators, which
Spark may apply twice on task retries), so the numbers a user reads are the rows on disk.
"""

from __future__ import annotations

import json
import logging
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from pyspark.sql import functions as F

from mdaq_spark import __version__
from mdaq_spark import schema as S

if TYPE_CHECKING:
    from mdaq_spark.pipeline import Run

log = logging.getLogger(__name__)

STATS_FILE = "stats.json"


def _rows(df, *keys: str) -> list[dict]:
    return [row.asDict() for row in df.orderBy(*keys).collect()]


def collect_stats(run: Run) -> dict:
    from mdaq_spark import pipeline as P

    normalized = run.table(P.NORMALIZED)
    quarantine = run.table(P.QUARANTINE)
    selected = run.selected_table()
    scores = run.model_table(P.SCORES)
    clusters = run.table(P.CLUSTERS)

    by_reason = {
        r[S.QUARANTINE_REASON]: r["count"]
        for r in _rows(quarantine.groupBy(S.QUARANTINE_REASON).count(), S.QUARANTINE_REASON)
    }
    quarantined = sum(by_reason.values())
    duplicates = by_reason.get(S.DUPLICATE_REASON, 0)

    per_lang: dict[str, dict] = {}
    for r in _rows(
        normalized.groupBy(S.LANG).agg(
            F.count(F.lit(1)).alias("samples"), F.sum(F.col(S.LANG_MISMATCH).cast("int")).alias("lang_mismatch")
        ),
        S.LANG,
    ):
        per_lang[r[S.LANG]] = {"samples": r["samples"], "lang_mismatch": r["lang_mismatch"] or 0}
    for r in _rows(
        scores.groupBy(S.LANG).agg(
            F.count(F.lit(1)).alias("scored"),
            F.mean(S.QSM_SCORE).alias("score_mean"),
            F.min(S.QSM_SCORE).alias("score_min"),
            F.max(S.QSM_SCORE).alias("score_max"),
        ),
        S.LANG,
    ):
        per_lang.setdefault(r[S.LANG], {}).update(
            scored=r["scored"], score_mean=r["score_mean"], score_min=r["score_min"], score_max=r["score_max"]
        )
    sizes = clusters.groupBy(S.LANG, S.CLUSTER_ID).count()
    for r in _rows(
        sizes.groupBy(S.LANG).agg(
            F.count(F.lit(1)).alias("clusters"), F.max("count").alias("largest"), F.sum("count").alias("clustered")
        ),
        S.LANG,
    ):
        per_lang.setdefault(r[S.LANG], {}).update(
            clusters=r["clusters"], largest_cluster_share=round(r["largest"] / r["clustered"], 4)
        )
    for r in _rows(selected.groupBy(S.LANG, S.SELECTION_REASON).count(), S.LANG, S.SELECTION_REASON):
        entry = per_lang.setdefault(r[S.LANG], {})
        entry.setdefault("selected", {})[r[S.SELECTION_REASON]] = r["count"]
    for entry in per_lang.values():
        entry["selected_total"] = sum(entry.get("selected", {}).values())
    if Path(run.path(P.FLAGGED)).exists():
        exploded = run.table(P.FLAGGED).select(S.LANG, F.explode("flags").alias("flag"))
        for r in _rows(exploded.groupBy(S.LANG, "flag").count(), S.LANG, "flag"):
            per_lang.setdefault(r[S.LANG], {}).setdefault("flags", {})[r["flag"]] = r["count"]

    pruning = _pruning(run, per_lang)

    kept = sum(e.get("samples", 0) for e in per_lang.values())
    # rows the reader produced, counted independently in the ingest stage before any split
    read = run.info.get("ingest", {}).get("parsed_rows", -1)
    return {
        "mdaq_spark_version": __version__,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": {
            "records_read": read,
            "kept": kept,
            "quarantined": quarantined - duplicates,
            "exact_duplicates": duplicates,
            "selected": sum(e["selected_total"] for e in per_lang.values()),
            "identity_holds": read == kept + quarantined,
            # each input file: records read = records parsed, and its rows all written (see io/accounting)
            "per_file_identity_holds": run.info.get("ingest", {}).get("per_file_identity_holds"),
        },
        "input_files": {
            "read": len(run.info.get("ingest", {}).get("files", {})),
            "skipped": run.info.get("ingest", {}).get("files_skipped", []),
        },
        "quarantine_by_reason": by_reason,
        "pruning": pruning,
        "per_language": per_lang,
        "stage_seconds": dict(run.timings),
        "stages_skipped": list(run.skipped),
        "stage_keys": dict(run.keys),
        "stage_info": run.info,
        "environment": {
            "python": platform.python_version(),
            "spark": run.spark.version,
            "spark_master": run.spark.sparkContext.master,
        },
        "config": run.cfg.model_dump(mode="json"),
    }


def _pruning(run: Run, per_lang: dict[str, dict]) -> dict:
    """Candidates, what left the pool before selection (per reason), tags and selection groups, per language."""
    from mdaq_spark import pipeline as P
    from mdaq_spark.copies import COPY_GROUP
    from mdaq_spark.crosslingual import CROSSLINGUAL, GROUP
    from mdaq_spark.domains import DOMAIN
    from mdaq_spark.neardup import NEAR_DUP_COUNT
    from mdaq_spark.prune import PRUNE_REASON

    candidates = run.table(P.CANDIDATES)
    totals: dict[str, int] = {}
    for r in _rows(candidates.groupBy(S.LANG, PRUNE_REASON).count(), S.LANG, PRUNE_REASON):
        entry = per_lang.setdefault(r[S.LANG], {})
        entry["candidates"] = entry.get("candidates", 0) + r["count"]
        if r[PRUNE_REASON] is not None:
            entry.setdefault("pruned", {})[r[PRUNE_REASON]] = r["count"]
            totals[r[PRUNE_REASON]] = totals.get(r[PRUNE_REASON], 0) + r["count"]
    for r in _rows(candidates.groupBy(S.LANG, DOMAIN).count(), S.LANG, DOMAIN):
        per_lang[r[S.LANG]].setdefault("domains", {})[r[DOMAIN]] = r["count"]
    for r in _rows(
        candidates.groupBy(S.LANG).agg(
            F.sum(F.col(CROSSLINGUAL).cast("int")).alias("xl"), F.max(NEAR_DUP_COUNT).alias("most_dups")
        ),
        S.LANG,
    ):
        per_lang[r[S.LANG]].update(crosslingual=r["xl"] or 0, largest_near_dup_group=(r["most_dups"] or 0) + 1)
    for r in _rows(run.selected_table().groupBy(S.LANG, GROUP).count(), S.LANG, GROUP):
        per_lang[r[S.LANG]].setdefault("selected_by_group", {})[r[GROUP]] = r["count"]
    n = sum(e.get("candidates", 0) for e in per_lang.values())
    out = {
        "candidates": n,
        "pruned_by_reason": totals,
        "to_selection": n - sum(totals.values()),
        "candidates_are_all_clustered": n == run.table(P.CLUSTERS).count(),
    }
    if COPY_GROUP in candidates.columns:  # runs from before translated-copy grouping lack the column
        out["copy_groups"] = _copy_groups(candidates)
    return out


def _copy_groups(candidates) -> dict:
    """How many groups of translated copies, how large (members and languages), how many samples they hold."""
    from mdaq_spark.copies import COPY_GROUP

    groups = (
        candidates.where(F.col(COPY_GROUP).isNotNull())
        .groupBy(COPY_GROUP)
        .agg(F.count(F.lit(1)).alias("size"), F.countDistinct(S.LANG).alias("langs"))
    )
    sizes = {r["size"]: r["count"] for r in _rows(groups.groupBy("size").count(), "size")}
    langs = {r["langs"]: r["count"] for r in _rows(groups.groupBy("langs").count(), "langs")}
    return {
        "groups": sum(sizes.values()),
        "grouped_samples": sum(size * count for size, count in sizes.items()),
        "largest_group": max(sizes, default=0),
        "groups_by_size": {str(k): v for k, v in sizes.items()},
        "groups_by_languages": {str(k): v for k, v in langs.items()},
    }


def write_stats(run: Run) -> dict:
    from mdaq_spark import pipeline as P
    from mdaq_spark.report_data import collect_report_data

    stats = collect_stats(run)
    stats["run_dir"] = str(run.cfg.output.path)
    run.spark.sparkContext.setJobGroup("mdaq-report", "mdaq stage: report", interruptOnCancel=True)
    stats["report"] = collect_report_data(run, run.cfg.report)
    out = Path(run.path(P.REPORT))
    out.mkdir(parents=True, exist_ok=True)
    (out / STATS_FILE).write_text(json.dumps(stats, indent=2, ensure_ascii=False, sort_keys=False))
    if run.cfg.report.html:
        write_html(out)
    c = stats["counts"]
    log.info(
        "read %d = kept %d + quarantined %d + duplicates %d; selected %d",
        c["records_read"], c["kept"], c["quarantined"], c["exact_duplicates"], c["selected"],
    )  # fmt: skip
    return stats


HTML_FILE = "report.html"


def write_html(report_dir: Path) -> Path:
    """(Re)build report.html from the stats.json beside it; no Spark needed."""
    from mdaq_spark.report_html import render

    stats = json.loads((report_dir / STATS_FILE).read_text())
    path = report_dir / HTML_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render(stats), encoding="utf-8")
    tmp.replace(path)
    return path
