"""Selection with window functions, per language: M-DaQ DAS and per-cluster top-k.

Every ranking has a total order (score descending, then sample_id), so the selection is
the same on every run and every partitioning. Budgets are integers computed in SQL with
integer arithmetic, so the plain reference implementation in the tests can reproduce them
exactly.

DAS (Diversity-Aware Selection): rank a language's samples by QSM score; keep the top
n_quality; then walk on down the ranking and keep the best remaining sample of every
cluster the quality set did not cover, until n_diversity more are kept. If the uncovered
clusters run out before the budget does, the walk continues in rounds: the next best of
each cluster, ranked by score (round = position in its cluster + 1 if the quality set
already covered the cluster).

MMR (maximal marginal relevance), for comparison with DAS on the same run: per language,
greedily take the sample maximising lambda * score - (1 - lambda) * its largest cosine to
the samples already taken, over a capped pool of the best-scored samples (see `mmr`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mdaq_spark import schema as S
from mdaq_spark.config import JobConfig, SelectionConfig
from mdaq_spark.io import writers
from mdaq_spark.rundir import CANDIDATES, CLUSTERS, FLAGGED, NORMALIZED, SCORES, SELECTED
from mdaq_spark.stages.base import Stage, StageContext, Table, digest, section
from mdaq_spark.stages.prune.pool import prune
from mdaq_spark.stages.tag.heuristics import RULES_VERSION
from mdaq_spark.stages.tag.notes import NOTE_COLUMNS, annotate, notable, with_defaults
from mdaq_spark.stages.write import CANDIDATE_NOTES, LEAD_COLUMNS, assemble, write_selected

REQUIRED_COLUMNS = (S.SAMPLE_ID, S.LANG, S.QSM_SCORE, S.CLUSTER_ID)
OUTPUT_COLUMNS = (S.SAMPLE_ID, S.LANG, S.CLUSTER_ID, S.QSM_SCORE, S.QUALITY_RANK, S.SELECTION_REASON)

_N_LANG = "_n_lang"
_BUDGET = "_budget"
_N_QUALITY = "_n_quality"


# in MMR's objective a demoted sample's quality sits this far below its score, plus the spread
# of the language's scores: under every clean sample's whatever range a head's scores have
# (the sort key's order, as a number; the similarity term moves an objective by at most 2)
DEMOTE_OFFSET = 10.0


def _budget(cfg: SelectionConfig) -> Column:
    """Per-language budget in rows, capped at the language's size and at least one row."""
    n = F.col(_N_LANG)
    if cfg.budget_count is not None:
        default = F.least(F.lit(cfg.budget_count), n)
    else:
        # half-up rounding of fraction * n; at least one sample of every language present
        default = F.greatest(F.lit(1), F.floor(F.lit(cfg.budget_fraction) * n + F.lit(0.5)).cast("long"))
    if cfg.budget_per_lang:
        overrides = F.create_map(
            *[x for lang, c in sorted(cfg.budget_per_lang.items()) for x in (F.lit(lang), F.lit(c))]
        )
        override = F.try_element_at(overrides, F.col(S.LANG))
        default = F.when(override.isNotNull(), override).otherwise(default)
    return F.least(default, n).cast("long")


def _with_budget(df: DataFrame, cfg: SelectionConfig) -> DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"selection needs columns {missing}")
    columns = [*REQUIRED_COLUMNS, *([S.DEMOTED] if S.DEMOTED in df.columns else [])]
    return (
        df.select(*columns)
        .withColumn(_N_LANG, F.count(F.lit(1)).over(Window.partitionBy(S.LANG)))
        .withColumn(_BUDGET, _budget(cfg))
        .withColumn(S.QUALITY_RANK, F.row_number().over(Window.partitionBy(S.LANG).orderBy(*S.best_first(columns))))
    )


def quality_count(budget: Column, cfg: SelectionConfig) -> Column:
    """round_half_up(budget * q / (q + d)): exact, since floor(a / b) of integers far below 2**53 is."""
    q, total = cfg.quality_parts, cfg.quality_parts + cfg.diversity_parts
    return ((budget * (2 * q) + total) / (2 * total)).cast("long")


def das(df: DataFrame, cfg: SelectionConfig) -> DataFrame:
    ranked = _with_budget(df, cfg).withColumn(_N_QUALITY, quality_count(F.col(_BUDGET), cfg))
    is_quality = F.col(S.QUALITY_RANK) <= F.col(_N_QUALITY)
    ranked = ranked.withColumn(
        "_covered", F.max(is_quality.cast("int")).over(Window.partitionBy(S.LANG, S.CLUSTER_ID))
    )
    quality = ranked.where(is_quality).withColumn(S.SELECTION_REASON, F.lit(S.REASON_QUALITY))
    rest = ranked.where(~is_quality)
    rest = rest.withColumn(
        "_round",
        F.row_number().over(Window.partitionBy(S.LANG, S.CLUSTER_ID).orderBy(F.col(S.QUALITY_RANK)))
        + F.col("_covered"),
    )
    rest = rest.withColumn(
        "_walk", F.row_number().over(Window.partitionBy(S.LANG).orderBy(F.col("_round"), F.col(S.QUALITY_RANK)))
    )
    diversity = rest.where(F.col("_walk") <= F.col(_BUDGET) - F.col(_N_QUALITY)).withColumn(
        S.SELECTION_REASON, F.lit(S.REASON_DIVERSITY)
    )
    return quality.select(*OUTPUT_COLUMNS).unionByName(diversity.select(*OUTPUT_COLUMNS))


def cluster_top_k(df: DataFrame, cfg: SelectionConfig) -> DataFrame:
    """The best k of each cluster, or the language budget shared across clusters by size.

    Shares use the largest-remainder method (ties by cluster id), so quotas add up to the
    budget exactly and never exceed a cluster's size.
    """
    ranked = _with_budget(df, cfg).withColumn(
        "_pos", F.row_number().over(Window.partitionBy(S.LANG, S.CLUSTER_ID).orderBy(*S.best_first(df.columns)))
    )
    if cfg.top_k_per_cluster is not None:
        kept = ranked.where(F.col("_pos") <= cfg.top_k_per_cluster)
    else:
        clusters = ranked.groupBy(S.LANG, S.CLUSTER_ID).agg(
            F.count(F.lit(1)).alias("_size"), F.first(_BUDGET).alias(_BUDGET), F.first(_N_LANG).alias(_N_LANG)
        )
        share = F.col(_BUDGET) * F.col("_size")
        clusters = clusters.withColumn("_floor", (share / F.col(_N_LANG)).cast("long")).withColumn(
            "_remainder", share % F.col(_N_LANG)
        )
        by_lang = Window.partitionBy(S.LANG)
        clusters = clusters.withColumn("_left", F.col(_BUDGET) - F.sum("_floor").over(by_lang)).withColumn(
            "_order",
            F.row_number().over(by_lang.orderBy(F.col("_remainder").desc(), F.col(S.CLUSTER_ID).asc())),
        )
        clusters = clusters.withColumn(
            "_quota", F.col("_floor") + (F.col("_order") <= F.col("_left")).cast("long")
        ).select(S.LANG, S.CLUSTER_ID, "_quota")
        kept = ranked.join(clusters, on=[S.LANG, S.CLUSTER_ID]).where(F.col("_pos") <= F.col("_quota"))
    return kept.withColumn(S.SELECTION_REASON, F.lit(S.REASON_CLUSTER_TOP_K)).select(*OUTPUT_COLUMNS)


def mmr_walk(scores: np.ndarray, embeddings: np.ndarray, budget: int, lam: float) -> list[int]:
    """Greedy maximal marginal relevance over rows already sorted best first; returns picked row indices.

    Each step takes argmax of lam * score - (1 - lam) * (max cosine to the picked set), the
    first maximum on a tie (the better-ranked row), so the walk is deterministic. The first
    pick is the best-scored row (the picked set is empty, its similarity term counts as 0).
    """
    x = embeddings.astype(np.float32)
    nearest = np.zeros(len(scores), dtype=np.float64)
    taken = np.zeros(len(scores), dtype=bool)
    picked: list[int] = []
    for _ in range(min(budget, len(scores))):
        value = lam * scores - (1 - lam) * nearest
        value[taken] = -np.inf
        i = int(np.argmax(value))
        picked.append(i)
        taken[i] = True
        nearest = np.maximum(nearest, x @ x[i])
    return picked


_MMR_SCHEMA = T.StructType([T.StructField(S.SAMPLE_ID, T.StringType(), False)])


def mmr(df: DataFrame, cfg: SelectionConfig) -> DataFrame:
    """MMR per language over a capped pool of the best-scored samples (needs `embedding`).

    One language's pool is walked in one pandas group: the cost is budget x pool dot
    products, and the pool is at most max(budget, budget * mmr_pool_factor) rows and never
    more than mmr_max_pool, which bounds a worker's memory whatever the corpus size.
    """
    if S.EMBEDDING not in df.columns:
        raise ValueError("selection.strategy=mmr needs the embedding column")
    ranked = _with_budget(df, cfg)
    pool_size = F.least(
        F.greatest(F.col(_BUDGET), F.ceil(F.col(_BUDGET) * F.lit(cfg.mmr_pool_factor))), F.lit(cfg.mmr_max_pool)
    )
    pool = ranked.where(F.col(S.QUALITY_RANK) <= pool_size).join(df.select(S.SAMPLE_ID, S.EMBEDDING), on=S.SAMPLE_ID)
    lam = cfg.mmr_lambda

    def walk(pdf: pd.DataFrame) -> pd.DataFrame:
        pdf = pdf.sort_values(S.QUALITY_RANK, kind="mergesort")
        quality = pdf[S.QSM_SCORE].to_numpy(np.float64)
        if S.DEMOTED in pdf.columns:
            offset = DEMOTE_OFFSET + (float(np.ptp(quality)) if len(quality) else 0.0)
            quality = np.where(pdf[S.DEMOTED].to_numpy(bool), quality - offset, quality)
        picked = mmr_walk(
            quality,
            np.stack(pdf[S.EMBEDDING].to_numpy()),
            int(pdf[_BUDGET].iloc[0]),
            lam,
        )
        return pd.DataFrame({S.SAMPLE_ID: pdf[S.SAMPLE_ID].to_numpy()[picked]})

    demoted = [S.DEMOTED] if S.DEMOTED in df.columns else []
    chosen = pool.select(S.SAMPLE_ID, S.LANG, S.QSM_SCORE, *demoted, S.QUALITY_RANK, _BUDGET, S.EMBEDDING)
    chosen = chosen.groupBy(S.LANG).applyInPandas(walk, _MMR_SCHEMA)
    return (
        ranked.join(chosen, on=S.SAMPLE_ID).withColumn(S.SELECTION_REASON, F.lit(S.REASON_MMR)).select(*OUTPUT_COLUMNS)
    )


STRATEGIES = {"das": das, "cluster_top_k": cluster_top_k, "mmr": mmr}


def select(df: DataFrame, cfg: SelectionConfig) -> DataFrame:
    return STRATEGIES[cfg.strategy](df, cfg)


# ------------------------------------------------------------------ the select stage


def select_key(cfg: JobConfig, cluster_key: str, score_key: str) -> str:
    """Everything the selection depends on: upstream stages, every section it reads, the rules' version.

    The output format too: the stage writes selected/ itself, so a rerun that switches
    output.format to delta must write the table, not skip the stage.
    """
    sections = (cfg.selection, cfg.filters, cfg.translation, cfg.crosslingual, cfg.near_dup, cfg.copies, cfg.domains)
    return digest(cluster_key, score_key, *map(section, sections), RULES_VERSION, cfg.output.format)


@dataclass(frozen=True)
class SelectStage(Stage):
    """Tag, prune, select and write: one stage, so one key covers every decision the selection makes.

    Tags (flags, cross-lingual, domain) go to flagged/; every clustered sample with its
    pruning decision to candidates/ (candidates = survivors + pruned, per reason); the
    chosen samples to selected/. Under filters.action: demote a flagged candidate carries
    `demoted`, which every ranking puts first (S.best_first): its qsm_score stays the model's.
    """

    name = "select"
    cfg: JobConfig
    score_fingerprint: str
    embedding_table: str  # scores (embedding.source: qsm) or embeddings (model)
    embedding_fingerprint: str
    cluster_key: str
    score_key: str

    @property
    def requires(self) -> tuple[Table, ...]:
        return (
            Table(NORMALIZED, (S.SAMPLE_ID, S.LANG, S.INSTRUCTION, S.INPUT, S.RESPONSE)),
            Table(CLUSTERS, (S.SAMPLE_ID, S.LANG, S.CLUSTER_ID, S.CENTROID_DISTANCE)),
            Table(SCORES, (S.SAMPLE_ID, S.QSM_SCORE, S.MODEL_FINGERPRINT, *S.SCORE_DETAIL), self.score_fingerprint),
            Table(self.embedding_table, (S.SAMPLE_ID, S.EMBEDDING), self.embedding_fingerprint),
        )

    @property
    def produces(self) -> tuple[Table, ...]:
        return (
            Table(FLAGGED, (S.SAMPLE_ID, S.LANG, *NOTE_COLUMNS)),
            Table(CANDIDATES, (S.SAMPLE_ID, S.LANG, S.GROUP, S.DEMOTED, S.PRUNE_REASON, *NOTE_COLUMNS)),
            Table(SELECTED, (*LEAD_COLUMNS, *CANDIDATE_NOTES)),
        )

    def key(self) -> str:
        return select_key(self.cfg, self.cluster_key, self.score_key)

    def run(self, ctx: StageContext) -> dict:
        cfg, rundir = self.cfg, ctx.rundir
        scores = rundir.model_table(SCORES, self.score_fingerprint).select(
            S.SAMPLE_ID, S.QSM_SCORE, S.MODEL_FINGERPRINT, *S.SCORE_DETAIL
        )
        content = rundir.table(NORMALIZED)
        embeddings = rundir.model_table(self.embedding_table, self.embedding_fingerprint).select(
            S.SAMPLE_ID, S.EMBEDDING
        )
        notes = annotate(content, cfg)
        writers.write_table(notes.where(notable()).repartition(1), rundir.path(FLAGGED))
        notes = rundir.table(FLAGGED).select(S.SAMPLE_ID, *NOTE_COLUMNS)
        candidates = with_defaults(
            rundir.table(CLUSTERS)
            .join(scores.drop(S.MODEL_FINGERPRINT, *S.SCORE_DETAIL), on=S.SAMPLE_ID)
            .join(notes, on=S.SAMPLE_ID, how="left")
        )
        demote = cfg.filters.action == "demote"
        candidates = candidates.withColumn(S.DEMOTED, F.lit(demote) & (F.size(S.FLAGS) > 0))
        separate = cfg.crosslingual.enabled and cfg.crosslingual.separate_budget
        group = F.when(F.col(S.CROSSLINGUAL) & F.lit(separate), F.lit(S.CROSSLINGUAL_GROUP))
        candidates = candidates.withColumn(S.GROUP, group.otherwise(F.lit(S.MONOLINGUAL_GROUP)))
        writers.write_table(prune(candidates, embeddings, cfg), rundir.path(CANDIDATES), partition_by=(S.LANG,))
        pool = rundir.table(CANDIDATES).where(F.col(S.PRUNE_REASON).isNull())
        if cfg.selection.strategy == "mmr":
            pool = pool.join(embeddings, on=S.SAMPLE_ID)
        chosen = select(pool.where(F.col(S.GROUP) == S.MONOLINGUAL_GROUP), cfg.selection)
        if separate:
            xl = cfg.selection.model_copy(
                update={
                    "budget_fraction": cfg.crosslingual.budget_fraction,
                    "budget_count": cfg.crosslingual.budget_count,
                    "budget_per_lang": {},
                }
            )
            chosen = chosen.unionByName(select(pool.where(F.col(S.GROUP) == S.CROSSLINGUAL_GROUP), xl))
        out = assemble(chosen, content, rundir.table(CANDIDATES), scores)
        info: dict[str, object] = {"filters_action": cfg.filters.action, "strategy": cfg.selection.strategy}
        return {**info, **write_selected(ctx.spark, rundir, out, cfg.output.format)}
