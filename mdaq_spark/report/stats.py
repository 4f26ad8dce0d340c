"""stats.json for a run: counts per stage and language, from the written outputs.

Counts come from a groupBy over what was actually written (never from accumulators, which
Spark may apply twice on task retries), so the numbers a user reads are the rows on disk.
"""

from __future__ import annotations

import logging
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from mdaq_spark import __version__
from mdaq_spark import schema as S
from mdaq_spark.config import JobConfig
from mdaq_spark.report.figures import collect_report_data
from mdaq_spark.report.html import render
from mdaq_spark.rundir import CANDIDATES, CLUSTERS, FLAGGED, NORMALIZED, QUARANTINE, SCORES, RunDir, RunLog

log = logging.getLogger(__name__)


def _rows(df, *keys: str) -> list[dict]:
    """The rows of a small aggregate in key order (nulls first, as Spark sorts).

    Sorted here rather than by Spark: a global sort is two more jobs (sampling, shuffle) per
    aggregate, most of the report's time on a small run. UTF-8 byte order and Python's code
    point order agree, so the order is the one Spark would give.
    """
    rows = [row.asDict() for row in df.collect()]
    return sorted(rows, key=lambda row: tuple((row[k] is not None, row[k]) for k in keys))


def collect_stats(spark: SparkSession, rundir: RunDir, cfg: JobConfig, runlog: RunLog, score_fingerprint: str) -> dict:
    normalized = rundir.table(NORMALIZED)
    quarantine = rundir.table(QUARANTINE)
    selected = rundir.selected_table(cfg.output.format)
    scores = rundir.model_table(SCORES, score_fingerprint)
    clusters = rundir.table(CLUSTERS)

    by_reason = _reasons(quarantine)

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
    if rundir.exists(FLAGGED):
        exploded = rundir.table(FLAGGED).select(S.LANG, F.explode(S.FLAGS).alias("flag"))
        for r in _rows(exploded.groupBy(S.LANG, "flag").count(), S.LANG, "flag"):
            per_lang.setdefault(r[S.LANG], {}).setdefault("flags", {})[r["flag"]] = r["count"]

    pruning = _pruning(rundir, selected, per_lang)

    kept = sum(e.get("samples", 0) for e in per_lang.values())
    selected_total = sum(e["selected_total"] for e in per_lang.values())
    return _stats(spark, cfg, runlog, kept, selected_total, by_reason, pruning, per_lang, _turns(scores))


def _stats(
    spark: SparkSession,
    cfg: JobConfig,
    runlog: RunLog,
    kept: int,
    selected: int,
    by_reason: dict[str, int],
    pruning: dict,
    per_lang: dict[str, dict],
    turns: dict,
) -> dict:
    quarantined = sum(by_reason.values())
    duplicates = by_reason.get(S.DUPLICATE_REASON, 0)
    # rows the reader produced, counted independently in the ingest stage before any split
    read = runlog.info.get("ingest", {}).get("parsed_rows", -1)
    return {
        "mdaq_spark_version": __version__,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": {
            "records_read": read,
            "kept": kept,
            "quarantined": quarantined - duplicates,
            "exact_duplicates": duplicates,
            "selected": selected,
            "identity_holds": read == kept + quarantined,
            # each input file: records read = records parsed, and its rows all written (see io/accounting)
            "per_file_identity_holds": runlog.info.get("ingest", {}).get("per_file_identity_holds"),
        },
        "input_files": {
            "read": len(runlog.info.get("ingest", {}).get("files", {})),
            "skipped": runlog.info.get("ingest", {}).get("files_skipped", []),
        },
        "quarantine_by_reason": by_reason,
        "pruning": pruning,
        "per_language": per_lang,
        "turns": turns,
        "stage_seconds": dict(runlog.timings),
        "stages_skipped": list(runlog.skipped),
        "stage_keys": dict(runlog.keys),
        "stage_info": runlog.info,
        "environment": {
            "python": platform.python_version(),
            "spark": spark.version,
            "spark_master": spark.sparkContext.master,
        },
        "config": cfg.model_dump(mode="json"),
    }


def _reasons(quarantine) -> dict[str, int]:
    return {
        r[S.QUARANTINE_REASON]: r["count"]
        for r in _rows(quarantine.groupBy(S.QUARANTINE_REASON).count(), S.QUARANTINE_REASON)
    }


def write_ingest_only_stats(spark: SparkSession, rundir: RunDir, cfg: JobConfig, runlog: RunLog) -> dict:
    """stats.json and the report of a run that stopped after ingest because no record was usable.

    The same keys as a full run's, counted from quarantine/: nothing kept, nothing selected, and
    the reasons every record was set aside, which is what the user needs to fix the input.
    """
    pruning = {"candidates": 0, "pruned_by_reason": {}, "to_selection": 0, "candidates_are_all_clustered": True}
    no_turns = {"samples_by_turns": {}, "weakest_turn_by_turns": {}}
    stats = _stats(spark, cfg, runlog, 0, 0, _reasons(rundir.table(QUARANTINE)), pruning, {}, no_turns)
    stats["stopped_after"] = "ingest: no usable record"
    stats["run_dir"] = str(cfg.output.path)
    stats["command"] = shlex.join(sys.argv)
    stats["code_commit"] = code_commit()
    stats["report"] = {}
    rundir.write_stats(stats)
    if cfg.report.html:
        write_html(rundir)
    return stats


def _turns(scores) -> dict:
    """How many exchanges the samples have, and at which turn (0 = the first) a sample's weakest one sits."""
    by_turns: dict[str, int] = {}
    weakest: dict[str, dict[str, int]] = {}
    grouped = scores.groupBy(F.size(S.TURN_SCORES).alias("turns"), S.WEAKEST_TURN).count()
    for r in _rows(grouped, "turns", S.WEAKEST_TURN):
        n = str(r["turns"])
        by_turns[n] = by_turns.get(n, 0) + r["count"]
        weakest.setdefault(n, {})[str(r[S.WEAKEST_TURN])] = r["count"]
    return {"samples_by_turns": by_turns, "weakest_turn_by_turns": weakest}


def _pruning(rundir: RunDir, selected, per_lang: dict[str, dict]) -> dict:
    """Candidates, what left the pool before selection (per reason), tags and selection groups, per language."""
    candidates = rundir.table(CANDIDATES)
    totals: dict[str, int] = {}
    for r in _rows(candidates.groupBy(S.LANG, S.PRUNE_REASON).count(), S.LANG, S.PRUNE_REASON):
        entry = per_lang.setdefault(r[S.LANG], {})
        entry["candidates"] = entry.get("candidates", 0) + r["count"]
        if r[S.PRUNE_REASON] is not None:
            entry.setdefault("pruned", {})[r[S.PRUNE_REASON]] = r["count"]
            totals[r[S.PRUNE_REASON]] = totals.get(r[S.PRUNE_REASON], 0) + r["count"]
    for r in _rows(candidates.groupBy(S.LANG, S.DOMAIN).count(), S.LANG, S.DOMAIN):
        per_lang[r[S.LANG]].setdefault("domains", {})[r[S.DOMAIN]] = r["count"]
    for r in _rows(
        candidates.groupBy(S.LANG).agg(
            F.sum(F.col(S.CROSSLINGUAL).cast("int")).alias("xl"), F.max(S.NEAR_DUP_COUNT).alias("most_dups")
        ),
        S.LANG,
    ):
        per_lang[r[S.LANG]].update(crosslingual=r["xl"] or 0, largest_near_dup_group=(r["most_dups"] or 0) + 1)
    for r in _rows(selected.groupBy(S.LANG, S.GROUP).count(), S.LANG, S.GROUP):
        per_lang[r[S.LANG]].setdefault("selected_by_group", {})[r[S.GROUP]] = r["count"]
    n = sum(e.get("candidates", 0) for e in per_lang.values())
    out = {
        "candidates": n,
        "pruned_by_reason": totals,
        "to_selection": n - sum(totals.values()),
        "candidates_are_all_clustered": n == rundir.table(CLUSTERS).count(),
    }
    if S.COPY_GROUP in candidates.columns:  # runs from before translated-copy grouping lack the column
        out["copy_groups"] = _copy_groups(candidates)
    return out


def _copy_groups(candidates) -> dict:
    """How many groups of translated copies, how large (members and languages), how many samples they hold."""
    groups = (
        candidates.where(F.col(S.COPY_GROUP).isNotNull())
        .groupBy(S.COPY_GROUP)
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


def write_stats(spark: SparkSession, rundir: RunDir, cfg: JobConfig, runlog: RunLog, score_fingerprint: str) -> dict:
    """Count what the run wrote, draw the report's figures; write report/stats.json (and report.html)."""
    stats = collect_stats(spark, rundir, cfg, runlog, score_fingerprint)
    stats["run_dir"] = str(cfg.output.path)
    stats["command"] = shlex.join(sys.argv)
    stats["code_commit"] = code_commit()
    stats["report"] = collect_report_data(rundir, cfg, score_fingerprint)
    rundir.write_stats(stats)
    if cfg.report.html:
        write_html(rundir)
    c = stats["counts"]
    log.info(
        "read %d = kept %d + quarantined %d + duplicates %d; selected %d",
        c["records_read"], c["kept"], c["quarantined"], c["exact_duplicates"], c["selected"],
    )  # fmt: skip
    return stats


def code_commit() -> str | None:
    """The git commit of the package's checkout, when it runs from one (not from an installed wheel)."""
    from pathlib import Path

    try:
        done = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def write_html(rundir: RunDir) -> str:
    """(Re)build report.html from the stats.json beside it; no Spark needed."""
    return rundir.write_html(render(rundir.read_stats()))
