"""UltraLink pruning, second half: translated copies of one source sample across languages.

A multilingual corpus built by translation holds the same maths problem or code task once
per language. For language-agnostic data the copies teach one skill many times over, so
UltraLink keeps only a few languages of each; language-specific chat stays whole (hence
`copies.domains`, math and code by default). The frozen multilingual E5 encoder puts a
sample and its translations close together, so "the same source" is read as: cosine of the
sample embeddings >= `copies.threshold` and different languages.

Three steps, none of them all-pairs:

1. Candidate pairs by random-hyperplane LSH (SimHash) with banding. Each embedding, centred
   by the pool's mean, is projected on `bits` seeded random hyperplanes; the sign bits are
   cut into `bands` bands, and samples that agree on every bit of one band share a bucket.
   Two vectors at angle t agree on a bit with probability 1 - t/pi, so a band of r bits
   lets through (1 - t/pi)^r of the pairs at that angle and b bands find a pair with
   probability 1 - (1 - (1 - t/pi)^r)^b: the AND inside a band discards unrelated pairs,
   the OR across bands keeps close ones. Each bucket is compared exactly (one pandas group,
   oversized buckets cut into blocks of at most `max_block_size` along one more random
   direction). pyspark.ml's BucketedRandomProjectionLSH is not used: it ORs its hash
   tables with a single projection each (no AND inside a table), so with bucket lengths
   that keep translations together nearly every pair of 384-d unit vectors collides.
   Centring matters because E5 embeddings share one dominant direction (unrelated samples
   sit at cosine ~0.75): without it most hyperplanes cut far from the data and split it
   into lopsided halves, so buckets are huge and say little. The mean comes from a fixed,
   hash-chosen sample summed on the driver in sample_id order, not from a Spark aggregate:
   a distributed float sum depends on the order partial sums merge in, and a sign test
   near zero would turn that last-bit noise into a different bucket.
2. Groups = connected components of the pair graph, by min-label propagation with pointer
   jumping (a node takes the smallest label among itself and its neighbours, then the
   label of its label), iterated with joins until no label changes or `max_iterations`.
   The group id (`copy_group`) is the smallest sample_id of the component. Unlike the
   other pruning steps this one runs Spark jobs of its own: the loop must test whether
   anything changed.
3. Within a group, at most `max_langs_per_group` languages are kept, every member of a
   kept language stays; the rest are marked as translated copies. `spread` picks languages
   by a seeded hash of (group, language), so every language loses about the same share;
   `best_score` keeps the languages holding the group's best QSM scores (QSM scores are
   not calibrated across languages, so this can favour some languages systematically).
   Kept members record in `copy_count` how many pruned copies their group had.

Where it sits in prune.py: after near_duplicate (a same-language twin is removed first,
so a group counts distinct samples) and before domain_cap, so a language's math/code cap
is filled with distinct problems rather than with copies that the grouping then removes.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mdaq_spark import schema as S
from mdaq_spark.config import CopyGroupConfig
from mdaq_spark.domains import DOMAIN

log = logging.getLogger(__name__)

COPY_GROUP = "copy_group"  # smallest sample_id of the sample's group of translated copies (null: none found)
COPY_COUNT = "copy_count"  # on a kept sample of a group: how many copies the group pruned
TRANSLATED_COPY = "translated_copy"  # true: a copy in a language its group does not keep
REQUIRED_COLUMNS = (S.SAMPLE_ID, S.LANG, S.QSM_SCORE, S.EMBEDDING)

# rows projected at once: the (rows, planes, dim) product array stays a few MB
_PROJECT_CHUNK = 64
# the block prefilter uses a matrix product, whose last bits depend on the block; this much
# slack lets every pair near the threshold through to the exact per-pair dot product
_GEMM_SLACK = 1e-6

_A, _B, _COSINE = "a", "b", "cosine"
_BAND, _BUCKET, _ORDER, _BLOCK = "_band", "_bucket", "_order", "_block"
_NODE, _LABEL = "_node", "_label"
PAIR_SCHEMA = T.StructType(
    [
        T.StructField(_A, T.StringType(), False),
        T.StructField(_B, T.StringType(), False),
        T.StructField(_COSINE, T.DoubleType(), False),
    ]
)
_HASH_TYPE = T.StructType(
    [
        T.StructField("keys", T.ArrayType(T.LongType(), False), True),
        T.StructField("order", T.DoubleType(), True),
    ]
)


def hyperplanes(seed: int, count: int, dim: int) -> np.ndarray:
    """`count` random directions in `dim` dimensions; the same on every executor for one seed."""
    return np.random.default_rng([seed, dim]).standard_normal((count, dim))


def project(x: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """x @ planes.T, one row at a time in effect: a BLAS product's last bits depend on where a
    row sits in its batch, and a sign flip there would move a sample to another bucket."""
    out = np.empty((len(x), len(planes)))
    for start in range(0, len(x), _PROJECT_CHUNK):
        chunk = x[start : start + _PROJECT_CHUNK]
        out[start : start + len(chunk)] = (chunk[:, None, :] * planes[None, :, :]).sum(axis=2)
    return out


def band_keys(projections: np.ndarray, bands: int) -> np.ndarray:
    """(rows, bands) int64: each band's sign bits packed into one number."""
    n, bits = projections.shape
    per_band = bits // bands
    signs = (projections[:, : bands * per_band] > 0).reshape(n, bands, per_band).astype(np.int64)
    return (signs << np.arange(per_band, dtype=np.int64)).sum(axis=2)


def pool_mean(pool: DataFrame, cfg: CopyGroupConfig, seed: int) -> np.ndarray | None:
    """Mean embedding of a hash-chosen sample of the pool, summed on the driver in sample_id order."""
    if not cfg.center:
        return None
    rows = (
        pool.select(S.SAMPLE_ID, S.EMBEDDING)
        .orderBy(F.xxhash64(S.SAMPLE_ID, F.lit(seed)), S.SAMPLE_ID)
        .limit(cfg.center_sample)
        .collect()
    )
    if not rows:
        return None
    rows.sort(key=lambda r: r[S.SAMPLE_ID])
    return np.asarray([r[S.EMBEDDING] for r in rows], dtype=np.float64).mean(axis=0)


def block_pairs(
    ids: list[str], langs: list[str], embeddings: np.ndarray, threshold: float
) -> tuple[list[str], list[str], np.ndarray]:
    """Pairs of one block in different languages with cosine >= threshold, a < b by sample_id.

    The cosine is the dot product of the stored unit vectors, summed per pair, so a pair gets
    the same value from whichever bucket finds it.
    """
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    x = embeddings[order].astype(np.float64)
    lang = np.asarray([langs[i] for i in order])
    sims = x @ x.T
    upper = np.triu(np.ones(sims.shape, dtype=bool), k=1)
    i, j = np.nonzero(upper & (lang[:, None] != lang[None, :]) & (sims >= threshold - _GEMM_SLACK))
    cosine = (x[i] * x[j]).sum(axis=1)
    ok = cosine >= threshold
    sorted_ids = [ids[k] for k in order]
    return [sorted_ids[k] for k in i[ok]], [sorted_ids[k] for k in j[ok]], cosine[ok]


def candidate_pairs(pool: DataFrame, cfg: CopyGroupConfig, seed: int, centre: np.ndarray | None) -> DataFrame:
    """a, b, cosine for the pairs of `pool` (different languages, cosine >= threshold) that LSH finds.

    `centre` (see pool_mean) is subtracted before hashing; None hashes the raw embeddings.
    """
    bits, bands, threshold = cfg.bits, cfg.bands, cfg.threshold

    @F.pandas_udf(_HASH_TYPE)
    def lsh(embeddings: pd.Series) -> pd.DataFrame:
        if not len(embeddings):
            return pd.DataFrame({"keys": [], "order": []})
        x = np.stack(embeddings.to_numpy()).astype(np.float64)
        if centre is not None:
            x = x - centre
        # one plane beyond the hash bits orders an oversized bucket into blocks of near neighbours
        proj = project(x, hyperplanes(seed, bits + 1, x.shape[1]))
        return pd.DataFrame({"keys": list(band_keys(proj[:, :bits], bands)), "order": proj[:, bits]})

    hashed = pool.select(S.SAMPLE_ID, S.LANG, lsh(F.col(S.EMBEDDING)).alias("_h"))
    members = hashed.select(
        S.SAMPLE_ID,
        S.LANG,
        F.posexplode("_h.keys").alias(_BAND, _BUCKET),
        F.col("_h.order").alias(_ORDER),
    )
    bucket = Window.partitionBy(_BAND, _BUCKET)
    # a bucket of one language cannot hold a pair: skip it before shipping any embedding
    members = (
        members.withColumn("_size", F.count(F.lit(1)).over(bucket))
        .withColumn("_mixed", F.min(S.LANG).over(bucket) != F.max(S.LANG).over(bucket))
        .where(F.col("_mixed"))
    )
    pos = F.row_number().over(bucket.orderBy(_ORDER, S.SAMPLE_ID)) - 1
    n_blocks = F.ceil(F.col("_size") / F.lit(cfg.max_block_size))
    blocked = members.select(
        S.SAMPLE_ID, S.LANG, _BAND, _BUCKET, F.floor(pos * n_blocks / F.col("_size")).cast("long").alias(_BLOCK)
    )
    blocked = blocked.join(pool.select(S.SAMPLE_ID, S.EMBEDDING), on=S.SAMPLE_ID)

    def per_block(pdf: pd.DataFrame) -> pd.DataFrame:
        a, b, cosine = [], [], np.zeros(0)
        if len(pdf) > 1:
            a, b, cosine = block_pairs(
                pdf[S.SAMPLE_ID].tolist(), pdf[S.LANG].tolist(), np.stack(pdf[S.EMBEDDING].to_numpy()), threshold
            )
        # typed columns: an empty list would become float64 and not convert to an Arrow string
        return pd.DataFrame(
            {_A: pd.Series(a, dtype=object), _B: pd.Series(b, dtype=object), _COSINE: pd.Series(cosine, dtype="float64")}
        )

    found = blocked.groupBy(_BAND, _BUCKET, _BLOCK).applyInPandas(per_block, PAIR_SCHEMA)
    # a pair found in several bands has the same cosine in each (see block_pairs)
    return found.groupBy(_A, _B).agg(F.max(_COSINE).alias(_COSINE))


def components(pairs: DataFrame, max_iterations: int) -> DataFrame:
    """sample_id, copy_group (smallest sample_id of its connected component) for every node of `pairs`.

    Each round is checkpointed so the plan stays one round deep, and counts the labels it
    changed; labels only decrease, so no change means every component carries its minimum.
    """
    edges = (
        pairs.select(F.col(_A).alias(_NODE), F.col(_B).alias("_nbr"))
        .unionByName(pairs.select(F.col(_B).alias(_NODE), F.col(_A).alias("_nbr")))
        .localCheckpoint()
    )
    labels = edges.groupBy(_NODE).agg(F.least(F.col(_NODE), F.min("_nbr")).alias(_LABEL)).localCheckpoint()
    rounds, changed = 0, None
    while rounds < max_iterations:
        rounds += 1
        offered = (
            edges.join(labels, on=_NODE).groupBy("_nbr").agg(F.min(_LABEL).alias("_offer")).withColumnRenamed("_nbr", _NODE)
        )
        stepped = labels.join(offered, on=_NODE, how="left").select(
            _NODE, F.least(_LABEL, F.coalesce("_offer", _LABEL)).alias(_LABEL)
        )
        # pointer jumping: a label is a node of the same component, so its own label is valid too
        theirs = stepped.select(F.col(_NODE).alias(_LABEL), F.col(_LABEL).alias("_jump"))
        new = (
            stepped.join(theirs, on=_LABEL, how="left")
            .select(_NODE, F.least(_LABEL, F.coalesce("_jump", _LABEL)).alias(_LABEL))
            .localCheckpoint()
        )
        changed = new.join(labels.withColumnRenamed(_LABEL, "_old"), on=_NODE).where(F.col(_LABEL) != F.col("_old")).count()
        labels = new
        if changed == 0:
            break
    if changed:
        log.warning(
            "copies: connected components stopped after %d rounds (copies.max_iterations) with %d labels "
            "still changing: some groups are split",
            rounds,
            changed,
        )
    else:
        log.info("copies: connected components converged in %d rounds", rounds)
    return labels.select(F.col(_NODE).alias(S.SAMPLE_ID), F.col(_LABEL).alias(COPY_GROUP))


def keep_languages(members: DataFrame, cfg: CopyGroupConfig, seed: int) -> DataFrame:
    """sample_id, copy_group, copy_count, translated_copy for grouped samples (sample_id, lang, qsm_score, copy_group)."""
    per_lang = members.groupBy(COPY_GROUP, S.LANG).agg(F.max(S.QSM_SCORE).alias("_best"))
    if cfg.keep == "spread":
        order = [F.xxhash64(COPY_GROUP, S.LANG, F.lit(seed)), F.col(S.LANG)]
    else:
        order = [F.col("_best").desc(), F.col(S.LANG)]
    rank = F.row_number().over(Window.partitionBy(COPY_GROUP).orderBy(*order))
    per_lang = per_lang.select(COPY_GROUP, S.LANG, (rank > cfg.max_langs_per_group).alias(TRANSLATED_COPY))
    marked = members.join(per_lang, on=[COPY_GROUP, S.LANG])
    pruned = F.sum(F.col(TRANSLATED_COPY).cast("long")).over(Window.partitionBy(COPY_GROUP))
    return marked.select(
        S.SAMPLE_ID,
        COPY_GROUP,
        F.when(F.col(TRANSLATED_COPY), F.lit(0).cast("long")).otherwise(pruned).alias(COPY_COUNT),
        TRANSLATED_COPY,
    )


def translated_copies(pool: DataFrame, cfg: CopyGroupConfig, seed: int) -> DataFrame:
    """sample_id, copy_group, copy_count, translated_copy for the samples of `pool` that have a copy.

    `pool` is the samples still in the running, with sample_id, lang, qsm_score, embedding and
    (when cfg.domains is not empty) domain; only samples of those domains are grouped.
    """
    needed = REQUIRED_COLUMNS + ((DOMAIN,) if cfg.domains else ())
    missing = [c for c in needed if c not in pool.columns]
    if missing:
        raise ValueError(f"grouping translated copies needs columns {missing}")
    # the mean of every sample in the running, not only of the grouped domains: the direction
    # to remove is the encoder's, and a small domain made of a few sources' copies would
    # otherwise have its copies' shared direction removed with it
    centre = pool_mean(pool, cfg, seed)
    if cfg.domains:
        pool = pool.where(F.col(DOMAIN).isin(*cfg.domains))
    pool = pool.select(*REQUIRED_COLUMNS)
    pairs = candidate_pairs(pool, cfg, seed, centre).localCheckpoint()
    groups = components(pairs, cfg.max_iterations)
    members = groups.join(pool.select(S.SAMPLE_ID, S.LANG, S.QSM_SCORE), on=S.SAMPLE_ID)
    return keep_languages(members, cfg, seed)
