"""Candidates before selection: one decision per sample, with the reason it left the pool.

Score first, decide once: the annotations (flags, cross-lingual, domain) are columns; this
step turns them, in a fixed order, into `prune_reason` (null = still a candidate):
  flagged         filters.action = drop and the sample has a flag
  near_duplicate  a better-scored kept sample in its cluster is almost the same (neardup.py)
  translated_copy a translation of the same source sample in a language its group does not
                  keep (copies.py; after near_duplicate so groups count distinct samples,
                  before domain_cap so the caps are filled with distinct problems)
  domain_cap      beyond its language's cap for math / code (domains.py)
Every candidate stays in the output with its reason, so candidates = survivors + pruned,
per language and per reason, and stats.json reads the counts from that table.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.config import JobConfig
from mdaq_spark.stages.prune.copies import translated_copies
from mdaq_spark.stages.prune.neardup import near_duplicates
from mdaq_spark.stages.tag.domains import over_cap


def prune(candidates: DataFrame, embeddings: DataFrame, cfg: JobConfig) -> DataFrame:
    """Adds prune_reason, duplicate_of, dup_similarity, near_dup_count, copy_group and copy_count.

    `candidates` needs sample_id, lang, cluster_id, centroid_distance, qsm_score, flags and
    domain; `embeddings` gives sample_id -> embedding for the near-duplicate and copy searches.
    Lazy, except that grouping translated copies (copies.enabled) runs Spark jobs here: the
    decisions so far are checkpointed first, so those jobs and the caller's write compute
    the flags and near-duplicates once.
    """
    none = F.lit(None).cast("string")
    out = candidates.withColumn(
        S.PRUNE_REASON,
        F.when(F.size(F.col(S.FLAGS)) > 0, F.lit(S.REASON_FLAGGED)).otherwise(none)
        if cfg.filters.action == "drop"
        else none,
    )
    if cfg.near_dup.enabled:
        pool = out.where(F.col(S.PRUNE_REASON).isNull()).join(embeddings, on=S.SAMPLE_ID)
        found = near_duplicates(pool, cfg.near_dup)
        out = out.join(found, on=S.SAMPLE_ID, how="left").withColumn(
            S.PRUNE_REASON,
            F.when(
                F.col(S.PRUNE_REASON).isNull() & F.col(S.DUPLICATE_OF).isNotNull(), F.lit(S.REASON_NEAR_DUPLICATE)
            ).otherwise(F.col(S.PRUNE_REASON)),
        )
    else:
        out = out.withColumn(S.DUPLICATE_OF, none).withColumn(S.DUP_SIMILARITY, F.lit(None).cast("double"))
        out = out.withColumn(S.NEAR_DUP_COUNT, F.lit(0).cast("long"))
    out = out.withColumn(S.NEAR_DUP_COUNT, F.coalesce(F.col(S.NEAR_DUP_COUNT), F.lit(0).cast("long")))
    if cfg.copies.enabled:
        out = out.localCheckpoint()
        pool = out.where(F.col(S.PRUNE_REASON).isNull()).join(embeddings, on=S.SAMPLE_ID)
        found = translated_copies(pool, cfg.copies, cfg.seed)
        out = (
            out.join(found, on=S.SAMPLE_ID, how="left")
            .withColumn(
                S.PRUNE_REASON,
                F.when(
                    F.col(S.PRUNE_REASON).isNull() & F.coalesce(F.col(S.TRANSLATED_COPY), F.lit(False)),
                    F.lit(S.REASON_TRANSLATED_COPY),
                ).otherwise(F.col(S.PRUNE_REASON)),
            )
            .drop(S.TRANSLATED_COPY)
        )
    else:
        out = out.withColumn(S.COPY_GROUP, none).withColumn(S.COPY_COUNT, F.lit(0).cast("long"))
    out = out.withColumn(S.COPY_COUNT, F.coalesce(F.col(S.COPY_COUNT), F.lit(0).cast("long")))
    if cfg.domains.enabled and cfg.domains.max_per_lang:
        alive = out.where(F.col(S.PRUNE_REASON).isNull())
        capped = alive.select(S.SAMPLE_ID, over_cap(alive, cfg.domains).alias("_over_cap"))
        out = (
            out.join(capped, on=S.SAMPLE_ID, how="left")
            .withColumn(
                S.PRUNE_REASON,
                F.when(F.coalesce(F.col("_over_cap"), F.lit(False)), F.lit(S.REASON_DOMAIN_CAP)).otherwise(
                    F.col(S.PRUNE_REASON)
                ),
            )
            .drop("_over_cap")
        )
    return out
