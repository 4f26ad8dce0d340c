"""Two runs' selections compared: which samples a refresh added and removed, per language, and why.

Only the samples whose membership changed are collected to the driver; every reason is read
from the two run directories' own tables and configs:

- new_sample: added, and not in the first run's corpus (normalized/);
- removed_sample: removed, and not in the second run's corpus;
- pruned: removed, and the second run's candidates/ gives it a prune_reason;
- no_longer_pruned: added, and the first run had pruned it;
- budget_change: the language's budget settings differ between the two runs' configs;
- score_change: anything else, i.e. its score or rank (among a changed pool) moved it across the cut.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.config import JobConfig
from mdaq_spark.errors import InputError
from mdaq_spark.report.run_stats import DiffSummary, RunStats, typed
from mdaq_spark.rundir import CANDIDATES, NORMALIZED, SCORES, RunDir

ADDED, REMOVED = "added", "removed"
NEW_SAMPLE = "new_sample"
REMOVED_SAMPLE = "removed_sample"
PRUNED = "pruned"
NO_LONGER_PRUNED = "no_longer_pruned"
BUDGET_CHANGE = "budget_change"
SCORE_CHANGE = "score_change"
REASONS = (NEW_SAMPLE, REMOVED_SAMPLE, PRUNED, NO_LONGER_PRUNED, BUDGET_CHANGE, SCORE_CHANGE)

_IN_OTHER = "_in_other_corpus"
_OTHER_PRUNE = "_other_prune_reason"
_OTHER_SCORE = "_other_qsm_score"


@dataclass
class Run:
    """A finished run directory, opened with the store its stats.json names."""

    rundir: RunDir
    stats: RunStats

    @classmethod
    def open(cls, spark: SparkSession, path: str) -> Run:
        probe = RunDir(path, None, spark)
        if not probe.files.exists(probe.stats_path):
            raise InputError(f"{path} has no report/stats.json: is it a finished mdaq run directory?")
        stats = probe.read_stats()
        return cls(RunDir(path, stats.config.output.store, spark), stats)

    @property
    def config(self) -> JobConfig:
        return self.stats.config

    def selected(self) -> DataFrame:
        return self.rundir.selected_table(self.config.output.format)

    def scores(self) -> DataFrame:
        return self.rundir.model_table(SCORES, self.stats.stage("score", S.MODEL_FINGERPRINT))


def budget_settings(config: JobConfig, lang: str) -> dict:
    """What sets a language's budget in a run's config (not the strategy, which decides who fills it)."""
    selection, crosslingual = config.selection, config.crosslingual
    return {
        "budget_fraction": selection.budget_fraction,
        "budget_count": selection.budget_count,
        "budget_per_lang": selection.budget_per_lang.get(lang),
        "crosslingual": [crosslingual.separate_budget, crosslingual.budget_fraction, crosslingual.budget_count],
    }


def classify(change: str, in_other_corpus: bool, other_prune_reason: str | None, budget_changed: bool) -> str:
    """The reason one sample entered (`added`) or left (`removed`) the selection."""
    if not in_other_corpus:
        return NEW_SAMPLE if change == ADDED else REMOVED_SAMPLE
    if other_prune_reason is not None:
        return NO_LONGER_PRUNED if change == ADDED else PRUNED
    return BUDGET_CHANGE if budget_changed else SCORE_CHANGE


def _changed(mine: DataFrame, theirs_selected: DataFrame, other: Run) -> DataFrame:
    """Rows selected in `mine` and not in the other selection, with what the other run knew of them."""
    keys = theirs_selected.select(S.SAMPLE_ID)
    rows = mine.select(S.SAMPLE_ID, S.LANG, S.QSM_SCORE, S.QUALITY_RANK, S.SELECTION_REASON).join(
        keys, on=S.SAMPLE_ID, how="left_anti"
    )
    corpus = other.rundir.table(NORMALIZED).select(S.SAMPLE_ID, F.lit(True).alias(_IN_OTHER))
    rows = rows.join(corpus, on=S.SAMPLE_ID, how="left")
    if other.rundir.exists(CANDIDATES):
        pruned = other.rundir.table(CANDIDATES).select(S.SAMPLE_ID, F.col(S.PRUNE_REASON).alias(_OTHER_PRUNE))
        rows = rows.join(pruned, on=S.SAMPLE_ID, how="left")
    else:
        rows = rows.withColumn(_OTHER_PRUNE, F.lit(None).cast("string"))
    other_scores = other.scores().select(S.SAMPLE_ID, F.col(S.QSM_SCORE).alias(_OTHER_SCORE))
    rows = rows.join(other_scores, on=S.SAMPLE_ID, how="left")
    return rows.orderBy(S.LANG, S.SAMPLE_ID)


def _counts(df: DataFrame) -> dict[str, int]:
    return {r[S.LANG]: r["count"] for r in df.groupBy(S.LANG).count().collect()}


def diff_runs(spark: SparkSession, path_a: str, path_b: str) -> dict:
    """Samples added to and removed from the selection going from run A to run B, per language, with reasons."""
    a, b = Run.open(spark, path_a), Run.open(spark, path_b)
    sel_a, sel_b = a.selected(), b.selected()
    count_a, count_b = _counts(sel_a), _counts(sel_b)
    langs = sorted(set(count_a) | set(count_b))
    budget_changed = {lang: budget_settings(a.config, lang) != budget_settings(b.config, lang) for lang in langs}
    samples = []
    for change, mine, theirs, other in ((ADDED, sel_b, sel_a, a), (REMOVED, sel_a, sel_b, b)):
        for r in _changed(mine, theirs, other).collect():
            reason = classify(change, bool(r[_IN_OTHER]), r[_OTHER_PRUNE], budget_changed[r[S.LANG]])
            entry = {
                S.SAMPLE_ID: r[S.SAMPLE_ID],
                S.LANG: r[S.LANG],
                "change": change,
                "reason": reason,
                # the score and rank in the run that selected it, and its score in the other run
                S.QSM_SCORE: r[S.QSM_SCORE],
                S.QUALITY_RANK: r[S.QUALITY_RANK],
                S.SELECTION_REASON: r[S.SELECTION_REASON],
                "other_qsm_score": r[_OTHER_SCORE],
            }
            if reason == PRUNED:
                entry[S.PRUNE_REASON] = r[_OTHER_PRUNE]
            samples.append(entry)
    per_language = {}
    for lang in langs:
        mine = [s for s in samples if s[S.LANG] == lang]
        per_language[lang] = {
            "selected_a": count_a.get(lang, 0),
            "selected_b": count_b.get(lang, 0),
            "budget_changed": budget_changed[lang],
            ADDED: _by_reason(mine, ADDED),
            REMOVED: _by_reason(mine, REMOVED),
        }
    return {
        "run_a": a.rundir.root,
        "run_b": b.rundir.root,
        "totals": {
            ADDED: sum(1 for s in samples if s["change"] == ADDED),
            REMOVED: sum(1 for s in samples if s["change"] == REMOVED),
            "unchanged": sum(count_b.values()) - sum(1 for s in samples if s["change"] == ADDED),
        },
        "per_language": per_language,
        "samples": samples,
    }


def _by_reason(samples: list[dict], change: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in samples:
        if s["change"] == change:
            out[s["reason"]] = out.get(s["reason"], 0) + 1
    return dict(sorted(out.items()))


def summary(diff: dict) -> DiffSummary:
    """The diff without its per-sample list: what a report and `mdaq diff` show."""
    return typed(DiffSummary, {k: v for k, v in diff.items() if k != "samples"}, "diff")
