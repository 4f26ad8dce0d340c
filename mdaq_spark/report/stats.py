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
from mdaq_spark.config import JobConfig, scorer_names
from mdaq_spark.report.figures import collect_report_data
from mdaq_spark.report.html import render
from mdaq_spark.report.run_stats import (
    CopyGroups,
    Counts,
    Environment,
    Figures,
    InputFiles,
    LanguageStats,
    Pruning,
    RunStats,
    ScorerStats,
    Turns,
)
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


def collect_stats(
    spark: SparkSession, rundir: RunDir, cfg: JobConfig, runlog: RunLog, score_fingerprint: str
) -> RunStats:
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
    if rundir.exists(FLAGGED):
        exploded = rundir.table(FLAGGED).select(S.LANG, F.explode(S.FLAGS).alias("flag"))
        for r in _rows(exploded.groupBy(S.LANG, "flag").count(), S.LANG, "flag"):
            per_lang.setdefault(r[S.LANG], {}).setdefault("flags", {})[r["flag"]] = r["count"]

    pruning = _pruning(rundir, selected, per_lang)

    languages = {lang: _language(entry) for lang, entry in per_lang.items()}
    figures = collect_report_data(rundir, cfg, score_fingerprint)
    turns = _turns(scores)
    scorers = _scorers(cfg, scores, selected)
    return _run_stats(spark, cfg, runlog, by_reason, pruning, languages, figures, turns, scorers, stopped_after=None)


def _run_stats(
    spark: SparkSession,
    cfg: JobConfig,
    runlog: RunLog,
    by_reason: dict[str, int],
    pruning: Pruning,
    languages: dict[str, LanguageStats],
    figures: Figures,
    turns: Turns,
    scorers: dict[str, ScorerStats],
    *,
    stopped_after: str | None,
) -> RunStats:
    quarantined = sum(by_reason.values())
    duplicates = by_reason.get(S.DUPLICATE_REASON, 0)
    kept = sum(e.samples for e in languages.values())
    ingest = runlog.info.get("ingest", {})
    # rows the reader produced, counted independently in the ingest stage before any split
    read = ingest.get("parsed_rows", -1)
    return RunStats(
        mdaq_spark_version=__version__,
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        counts=Counts(
            records_read=read,
            kept=kept,
            quarantined=quarantined - duplicates,
            exact_duplicates=duplicates,
            selected=sum(e.selected_total for e in languages.values()),
            identity_holds=read == kept + quarantined,
            per_file_identity_holds=ingest.get("per_file_identity_holds"),
        ),
        input_files=InputFiles(read=len(ingest.get("files", {})), skipped=ingest.get("files_skipped", [])),
        quarantine_by_reason=by_reason,
        pruning=pruning,
        per_language=languages,
        turns=turns,
        scorers=scorers,
        stage_seconds=dict(runlog.timings),
        stages_skipped=list(runlog.skipped),
        stage_keys=dict(runlog.keys),
        stage_info=runlog.info,
        environment=Environment(
            python=platform.python_version(), spark=spark.version, spark_master=spark.sparkContext.master
        ),
        config=cfg,
        run_dir=str(cfg.output.path),
        command=shlex.join(sys.argv),
        code_commit=runlog.code_commit,
        report=figures,
        stopped_after=stopped_after,
        previous_run=None,
        exports=[],
    )


def _turns(scores) -> Turns:
    """How many exchanges the samples have, and at which turn (0 = the first) a sample's weakest one sits."""
    by_turns: dict[str, int] = {}
    weakest: dict[str, dict[str, int]] = {}
    grouped = scores.groupBy(F.size(S.TURN_SCORES).alias("turns"), S.WEAKEST_TURN).count()
    for r in _rows(grouped, "turns", S.WEAKEST_TURN):
        n = str(r["turns"])
        by_turns[n] = by_turns.get(n, 0) + r["count"]
        weakest.setdefault(n, {})[str(r[S.WEAKEST_TURN])] = r["count"]
    return Turns(samples_by_turns=by_turns, weakest_turn_by_turns=weakest)


def _scorers(cfg: JobConfig, scores, selected) -> dict[str, ScorerStats]:
    """Each scorer's raw aggregate score (scorer_scores), averaged over the scored samples and over the selection.

    Beside each other they show what the selection leans on: a selection whose mean length
    score is far above the corpus's was picked longer.
    """
    means: dict[str, dict[str, float]] = {}
    for where, table in (("scored", scores), ("selected", selected)):
        if table is None or S.SCORER_SCORES not in table.columns:
            continue
        exploded = table.select(F.explode(S.SCORER_SCORES).alias("scorer", "value"))
        for r in _rows(exploded.groupBy("scorer").agg(F.mean("value").alias("mean")), "scorer"):
            means.setdefault(r["scorer"], {})[where] = r["mean"]
    entries = cfg.scoring.scorers
    return {
        name: ScorerStats(
            kind=e.kind,
            weight=e.weight,
            mean_scored=means.get(name, {}).get("scored"),
            mean_selected=means.get(name, {}).get("selected"),
        )
        for e, name in zip(entries, scorer_names(entries), strict=True)
    }


def _language(e: dict) -> LanguageStats:
    """A language's entry from the aggregates that have rows of it: an aggregate without any counts 0."""
    selected = e.get("selected", {})
    return LanguageStats(
        samples=e.get("samples", 0),
        lang_mismatch=e.get("lang_mismatch", 0),
        scored=e.get("scored", 0),
        score_mean=e.get("score_mean"),
        score_min=e.get("score_min"),
        score_max=e.get("score_max"),
        clusters=e.get("clusters", 0),
        largest_cluster_share=e.get("largest_cluster_share", 0.0),
        selected=selected,
        selected_total=sum(selected.values()),
        flags=e.get("flags", {}),
        candidates=e.get("candidates", 0),
        pruned=e.get("pruned", {}),
        domains=e.get("domains", {}),
        crosslingual=e.get("crosslingual", 0),
        largest_near_dup_group=e.get("largest_near_dup_group", 1),
        selected_by_group=e.get("selected_by_group", {}),
    )


def _reasons(quarantine) -> dict[str, int]:
    return {
        r[S.QUARANTINE_REASON]: r["count"]
        for r in _rows(quarantine.groupBy(S.QUARANTINE_REASON).count(), S.QUARANTINE_REASON)
    }


def write_ingest_only_stats(spark: SparkSession, rundir: RunDir, cfg: JobConfig, runlog: RunLog) -> RunStats:
    """stats.json and the report of a run that stopped after ingest because no record was usable.

    The same keys as a full run's, counted from quarantine/: nothing kept, nothing selected, and
    the reasons every record was set aside, which is what the user needs to fix the input.
    """
    pruning = Pruning(
        candidates=0, pruned_by_reason={}, to_selection=0, candidates_are_all_clustered=True, copy_groups=None
    )
    no_figures = Figures(score_histograms={}, cluster_sizes={}, examples={}, projection=[])
    stats = _run_stats(
        spark,
        cfg,
        runlog,
        _reasons(rundir.table(QUARANTINE)),
        pruning,
        {},
        no_figures,
        Turns(samples_by_turns={}, weakest_turn_by_turns={}),
        _scorers(cfg, None, None),
        stopped_after="ingest: no usable record",
    )
    rundir.write_stats(stats)
    if cfg.report.html:
        write_html(rundir)
    return stats


def _pruning(rundir: RunDir, selected, per_lang: dict[str, dict]) -> Pruning:
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
    return Pruning(
        candidates=n,
        pruned_by_reason=totals,
        to_selection=n - sum(totals.values()),
        candidates_are_all_clustered=n == rundir.table(CLUSTERS).count(),
        # runs from before translated-copy grouping lack the column
        copy_groups=_copy_groups(candidates) if S.COPY_GROUP in candidates.columns else None,
    )


def _copy_groups(candidates) -> CopyGroups:
    """How many groups of translated copies, how large (members and languages), how many samples they hold."""
    groups = (
        candidates.where(F.col(S.COPY_GROUP).isNotNull())
        .groupBy(S.COPY_GROUP)
        .agg(F.count(F.lit(1)).alias("size"), F.countDistinct(S.LANG).alias("langs"))
    )
    sizes = {r["size"]: r["count"] for r in _rows(groups.groupBy("size").count(), "size")}
    langs = {r["langs"]: r["count"] for r in _rows(groups.groupBy("langs").count(), "langs")}
    return CopyGroups(
        groups=sum(sizes.values()),
        grouped_samples=sum(size * count for size, count in sizes.items()),
        largest_group=max(sizes, default=0),
        groups_by_size={str(k): v for k, v in sizes.items()},
        groups_by_languages={str(k): v for k, v in langs.items()},
    )


def write_stats(
    spark: SparkSession, rundir: RunDir, cfg: JobConfig, runlog: RunLog, score_fingerprint: str
) -> RunStats:
    """Count what the run wrote, draw the report's figures; write report/stats.json (and report.html)."""
    stats = collect_stats(spark, rundir, cfg, runlog, score_fingerprint)
    rundir.write_stats(stats)
    if cfg.report.html:
        write_html(rundir)
    c = stats.counts
    log.info(
        "read %d = kept %d + quarantined %d + duplicates %d; selected %d",
        c.records_read, c.kept, c.quarantined, c.exact_duplicates, c.selected,
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
