"""Semantic near-duplicates inside clusters (SemDeDup): keep the best of each tight group.

Two samples whose embeddings are almost the same (MIDB: the raw and the expert-revised
translation of one record, or one prompt with a comma moved) add one sample's worth of
information to the training set but take two slots of the budget. Within each k-means
cluster, samples are visited best QSM score first; a sample whose cosine to an already kept
one reaches `near_dup.threshold` is removed and recorded as a duplicate of the most similar
kept sample, and each kept sample counts how many it stands for.

Distributed: no all-pairs over the corpus. Near-duplicates land in the same cluster (they
are nearer each other than to anything else), so pairs are compared only inside a cluster,
one pandas group per cluster. A cluster larger than `max_block_size` is cut into balanced
blocks by distance to its centroid (near-duplicates have almost the same distance, so they
mostly share a block); the work per group is then at most max_block_size^2 dot products.
Pairs split across two blocks are missed: that is the price of the cap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mdaq_spark import schema as S
from mdaq_spark.config import NearDupConfig

REQUIRED_COLUMNS = (S.SAMPLE_ID, S.LANG, S.CLUSTER_ID, S.CENTROID_DISTANCE, S.QSM_SCORE, S.EMBEDDING)

_BLOCK = "_block"
RESULT_SCHEMA = T.StructType(
    [
        T.StructField(S.SAMPLE_ID, T.StringType(), False),
        T.StructField(S.DUPLICATE_OF, T.StringType(), True),
        T.StructField(S.DUP_SIMILARITY, T.DoubleType(), True),
        T.StructField(S.NEAR_DUP_COUNT, T.LongType(), False),
    ]
)


def greedy_dedup(
    ids: list[str], scores: np.ndarray, embeddings: np.ndarray, threshold: float, demoted: np.ndarray | None = None
) -> pd.DataFrame:
    """One block: visit clean before demoted, then by score (desc), then id (asc); drop what is too close
    to something kept."""
    late = demoted if demoted is not None else np.zeros(len(ids), dtype=bool)
    order = sorted(range(len(ids)), key=lambda i: (bool(late[i]), -scores[i], ids[i]))
    x = embeddings[order].astype(np.float32)
    sims = x @ x.T
    n = len(order)
    kept = np.zeros(n, dtype=bool)
    dup_of = np.full(n, -1)
    dup_sim = np.full(n, np.nan)
    for i in range(n):
        candidates = np.flatnonzero(kept[:i])
        if candidates.size:
            row = sims[i, candidates]
            best = int(np.argmax(row))  # first maximum: the better-ranked kept sample on a tie
            if row[best] >= threshold:
                dup_of[i] = candidates[best]
                dup_sim[i] = float(row[best])
                continue
        kept[i] = True
    counts = np.bincount(dup_of[dup_of >= 0], minlength=n)
    sorted_ids = [ids[i] for i in order]
    return pd.DataFrame(
        {
            S.SAMPLE_ID: sorted_ids,
            S.DUPLICATE_OF: [sorted_ids[j] if j >= 0 else None for j in dup_of],
            S.DUP_SIMILARITY: dup_sim,
            S.NEAR_DUP_COUNT: np.where(kept, counts, 0).astype(np.int64),
        }
    )


def balanced_block(group: list[str], order: list[str], max_size: int) -> Column:
    """A row's block within its group: ceil(size / max_size) blocks of equal size, contiguous in `order`.

    Pairwise work inside a group costs size^2; cutting it into blocks bounds that, and keeping
    each block contiguous in a similarity-bearing order keeps close pairs together.
    """
    window = Window.partitionBy(*group)
    pos = F.row_number().over(window.orderBy(*order)) - 1
    size = F.count(F.lit(1)).over(window)
    n_blocks = F.ceil(size / F.lit(max_size))
    return F.floor(pos * n_blocks / size).cast("long")


def _blocks(df: DataFrame, cfg: NearDupConfig) -> DataFrame:
    """Balanced blocks of at most max_block_size rows per cluster, contiguous in centroid distance."""
    block = balanced_block([S.LANG, S.CLUSTER_ID], [S.CENTROID_DISTANCE, S.SAMPLE_ID], cfg.max_block_size)
    return df.withColumn(_BLOCK, block)


def near_duplicates(df: DataFrame, cfg: NearDupConfig) -> DataFrame:
    """sample_id, duplicate_of, dup_similarity, near_dup_count for every row of `df` (lazy)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"near-duplicate removal needs columns {missing}")
    threshold = cfg.threshold

    def per_block(pdf: pd.DataFrame) -> pd.DataFrame:
        embeddings = np.stack(pdf[S.EMBEDDING].to_numpy()) if len(pdf) else np.zeros((0, 1))
        demoted = pdf[S.DEMOTED].to_numpy(bool) if S.DEMOTED in pdf.columns else None
        return greedy_dedup(pdf[S.SAMPLE_ID].tolist(), pdf[S.QSM_SCORE].to_numpy(), embeddings, threshold, demoted)

    blocked = _blocks(df.select(*REQUIRED_COLUMNS, *([S.DEMOTED] if S.DEMOTED in df.columns else [])), cfg)
    return blocked.groupBy(S.LANG, S.CLUSTER_ID, _BLOCK).applyInPandas(per_block, RESULT_SCHEMA)
