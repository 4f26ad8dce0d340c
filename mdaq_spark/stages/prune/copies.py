"""UltraLink pruning, second half: translated copies of one source sample across languages.

A multilingual corpus built by translation holds the same maths problem or code task once
per language. For language-agnostic data the copies teach one skill many times over, so
UltraLink keeps only a few languages of each; language-specific chat stays whole (hence
`copies.domains`, math and code by default). The frozen multilingual E5 encoder puts a
sample and its translations close together, but not far enough apart from everything else
for a cosine threshold alone: on MIDB the translations of one record sit at cosine 0.85-0.98
and unrelated samples at 0.75-0.88, and there are thousands of times more unrelated pairs,
so at any threshold that finds most copies the false pairs outnumber the true ones, and the
connected components chain unrelated groups into one. What does work is asking whether a
pair is closer than each side's usual neighbours: the ratio margin of bitext mining
(Artetxe & Schwenk, 2019), cosine(a, b) / mean(k-nearest cosines of a in b's language, of b
in a's language). Two samples are copies when they are in different languages, one is among
the other's `neighbours` nearest of its language, cosine >= `threshold` and margin >=
`margin`.

Three steps, none of them all-pairs:

1. Neighbours by random-hyperplane LSH (SimHash) with banding. Each embedding, centred
   by the pool's mean, is projected on `bits` seeded random hyperplanes; the sign bits are
   cut into `bands` bands, and samples that agree on every bit of one band share a bucket.
   Two vectors at angle t agree on a bit with probability 1 - t/pi, so a band of r bits
   lets through (1 - t/pi)^r of the pairs at that angle and b bands find a pair with
   probability 1 - (1 - (1 - t/pi)^r)^b: the AND inside a band discards unrelated pairs,
   the OR across bands keeps close ones. Each bucket is one pandas group (oversized buckets
   cut into blocks of at most `max_block_size` along one more random direction) that gives
   every sample its k nearest bucket-mates per other language; the union over bands, cut
   to the k best, gives the neighbours and the k-nearest means of the margin.
   pyspark.ml's BucketedRandomProjectionLSH is not used: each of its hash tables is one
   projection cut into intervals, tables are ORed, nothing is ANDed; on MIDB a bucket length
   that keeps 85% of the pairs above cosine 0.9 together (0.02, 4 tables) also compares 70%
   of all cross-language pairs (docs/benchmarks.md, section 5).
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
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mdaq_spark import schema as S
from mdaq_spark.config import CopyGroupConfig
from mdaq_spark.stages.prune.neardup import balanced_block

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = (S.SAMPLE_ID, S.LANG, S.QSM_SCORE, S.EMBEDDING)

# rows projected at once: the (rows, planes, dim) product array stays a few MB
_PROJECT_CHUNK = 64
_A, _B, _COSINE, _MARGIN = "a", "b", "cosine", "margin"
_LANG_A, _LANG_B, _GROUPED_B = "lang_a", "lang_b", "grouped_b"
GROUPED = "_grouped"  # optional pool column: only these samples are paired (all are neighbours)
_BAND, _BUCKET, _ORDER, _BLOCK = "_band", "_bucket", "_order", "_block"
_NODE, _LABEL = "_node", "_label"
NEIGHBOUR_SCHEMA = T.StructType(
    [
        T.StructField(_A, T.StringType(), False),
        T.StructField(_LANG_A, T.StringType(), False),
        T.StructField(_B, T.StringType(), False),
        T.StructField(_LANG_B, T.StringType(), False),
        T.StructField(_GROUPED_B, T.BooleanType(), False),
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


def block_neighbours(
    ids: list[str], langs: list[str], grouped: list[bool], embeddings: np.ndarray, k: int
) -> pd.DataFrame:
    """For each grouped sample of one block and each other language in it: its k nearest samples of that language.

    Rows a, lang_a, b, lang_b, grouped_b, cosine. The ranking uses one matrix product; the
    cosine reported is the dot product of the two stored unit vectors summed per pair, so a
    pair gets the same value from whichever block finds it.
    """
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    x = embeddings[order].astype(np.float64)
    sid = np.asarray([ids[i] for i in order], dtype=object)
    lang = np.asarray([langs[i] for i in order], dtype=object)
    is_grouped = np.asarray([grouped[i] for i in order], dtype=bool)
    queries = np.flatnonzero(is_grouped)
    sims = x[queries] @ x.T
    rows_a, rows_b = [], []
    for target in sorted(set(lang)):
        cols = np.flatnonzero(lang == target)
        rows = np.flatnonzero(lang[queries] != target)  # positions among the queries
        if not len(rows):
            continue
        kk = min(k, len(cols))
        sub = sims[np.ix_(rows, cols)]
        top = (
            np.argpartition(-sub, kk - 1, axis=1)[:, :kk]
            if kk < len(cols)
            else np.tile(np.arange(len(cols)), (len(rows), 1))
        )
        rows_a.append(np.repeat(queries[rows], kk))
        rows_b.append(cols[top].ravel())
    a = np.concatenate(rows_a) if rows_a else np.zeros(0, dtype=int)
    b = np.concatenate(rows_b) if rows_b else np.zeros(0, dtype=int)
    # typed columns: an empty list would become float64 and not convert to an Arrow string
    return pd.DataFrame(
        {
            _A: pd.Series(sid[a], dtype=object),
            _LANG_A: pd.Series(lang[a], dtype=object),
            _B: pd.Series(sid[b], dtype=object),
            _LANG_B: pd.Series(lang[b], dtype=object),
            _GROUPED_B: pd.Series(is_grouped[b], dtype=bool),
            _COSINE: pd.Series((x[a] * x[b]).sum(axis=1), dtype="float64"),
        }
    )


def _knn_mean(values: str, k: int) -> Column:
    """Sum of up to k cosines over k, added in sorted order (a float sum that does not depend on
    shuffle order). Fewer than k neighbours found count the missing ones as 0: a sample with a
    single sample of a language near it has nothing to stand out from, and its pair then rests
    on the cosine threshold (a margin over one neighbour would always be 1)."""
    ordered = F.array_sort(F.col(values))
    return F.aggregate(ordered, F.lit(0.0), lambda acc, v: acc + v) / F.lit(float(k))


def candidate_pairs(pool: DataFrame, cfg: CopyGroupConfig, seed: int, centre: np.ndarray | None) -> DataFrame:
    """a < b, cosine, margin: the pairs of `pool` that count as copies (see the module docstring).

    `centre` (see pool_mean) is subtracted before hashing; None hashes the raw embeddings.
    With a boolean column GROUPED in `pool`, only those samples are paired, but every sample
    of the pool counts as a neighbour: a maths problem's usual neighbours in a language are
    whatever lies near it, and a margin over a few maths problems alone would say little.
    Neighbours are searched among bucket-mates only, so a pair LSH never puts in one bucket is
    missed, and a sample's k-nearest mean is taken over the neighbours found (never more than
    the true one, so a missed neighbour can only raise a margin).
    """
    bits, bands, k = cfg.bits, cfg.bands, cfg.neighbours

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

    if GROUPED not in pool.columns:
        pool = pool.withColumn(GROUPED, F.lit(True))
    hashed = pool.select(S.SAMPLE_ID, S.LANG, GROUPED, lsh(F.col(S.EMBEDDING)).alias("_h"))
    members = hashed.select(
        S.SAMPLE_ID,
        S.LANG,
        GROUPED,
        F.posexplode("_h.keys").alias(_BAND, _BUCKET),
        F.col("_h.order").alias(_ORDER),
    )
    bucket = Window.partitionBy(_BAND, _BUCKET)
    # a bucket of one language or without a grouped sample cannot hold a pair: skip it
    # before shipping any embedding
    members = (
        members.withColumn("_mixed", F.min(S.LANG).over(bucket) != F.max(S.LANG).over(bucket))
        .withColumn("_any", F.max(F.col(GROUPED).cast("int")).over(bucket))
        .where(F.col("_mixed") & (F.col("_any") == 1))
    )
    block = balanced_block([_BAND, _BUCKET], [_ORDER, S.SAMPLE_ID], cfg.max_block_size)
    blocked = members.select(S.SAMPLE_ID, S.LANG, GROUPED, _BAND, _BUCKET, block.alias(_BLOCK))
    blocked = blocked.join(pool.select(S.SAMPLE_ID, S.EMBEDDING), on=S.SAMPLE_ID)

    def per_block(pdf: pd.DataFrame) -> pd.DataFrame:
        return block_neighbours(
            pdf[S.SAMPLE_ID].tolist(),
            pdf[S.LANG].tolist(),
            pdf[GROUPED].tolist(),
            np.stack(pdf[S.EMBEDDING].to_numpy()),
            k,
        )

    found = blocked.groupBy(_BAND, _BUCKET, _BLOCK).applyInPandas(per_block, NEIGHBOUR_SCHEMA)
    # a neighbour found in several bands has the same cosine in each (see block_neighbours)
    found = found.groupBy(_A, _LANG_A, _B, _LANG_B, _GROUPED_B).agg(F.max(_COSINE).alias(_COSINE))
    rank = F.row_number().over(Window.partitionBy(_A, _LANG_B).orderBy(F.col(_COSINE).desc(), F.col(_B)))
    nearest = found.withColumn("_rank", rank).where(F.col("_rank") <= k).drop("_rank").localCheckpoint()
    knn = nearest.groupBy(_A, _LANG_B).agg(F.collect_list(_COSINE).alias("_cosines"))
    knn = knn.select(
        F.col(_A).alias("_sample"), F.col(_LANG_B).alias("_towards"), _knn_mean("_cosines", k).alias("_knn")
    )
    # a pair is a candidate when either side has the other among its k nearest in that language
    swap = F.col(_A) > F.col(_B)
    pairs = (
        nearest.where(F.col(_GROUPED_B) & (F.col(_COSINE) >= F.lit(cfg.threshold)))
        .select(
            F.when(swap, F.col(_B)).otherwise(F.col(_A)).alias(_A),
            F.when(swap, F.col(_LANG_B)).otherwise(F.col(_LANG_A)).alias(_LANG_A),
            F.when(swap, F.col(_A)).otherwise(F.col(_B)).alias(_B),
            F.when(swap, F.col(_LANG_A)).otherwise(F.col(_LANG_B)).alias(_LANG_B),
            _COSINE,
        )
        .dropDuplicates([_A, _B])
    )
    side_a = knn.select(F.col("_sample").alias(_A), F.col("_towards").alias(_LANG_B), F.col("_knn").alias("_knn_a"))
    side_b = knn.select(F.col("_sample").alias(_B), F.col("_towards").alias(_LANG_A), F.col("_knn").alias("_knn_b"))
    scored = pairs.join(side_a, on=[_A, _LANG_B]).join(side_b, on=[_B, _LANG_A])
    margin = F.col(_COSINE) / ((F.col("_knn_a") + F.col("_knn_b")) / F.lit(2.0))
    return scored.select(_A, _B, _COSINE, margin.alias(_MARGIN)).where(F.col(_MARGIN) >= F.lit(cfg.margin))


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
            edges.join(labels, on=_NODE)
            .groupBy("_nbr")
            .agg(F.min(_LABEL).alias("_offer"))
            .withColumnRenamed("_nbr", _NODE)
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
        changed = (
            new.join(labels.withColumnRenamed(_LABEL, "_old"), on=_NODE).where(F.col(_LABEL) != F.col("_old")).count()
        )
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
    return labels.select(F.col(_NODE).alias(S.SAMPLE_ID), F.col(_LABEL).alias(S.COPY_GROUP))


def keep_languages(members: DataFrame, cfg: CopyGroupConfig, seed: int) -> DataFrame:
    """sample_id, copy_group, copy_count, translated_copy of grouped samples.

    `members` has sample_id, lang, qsm_score, copy_group and, optionally, demoted.
    """
    # a language's best sample, clean before demoted (S.best_first): a struct orders field by field
    clean = ~F.col(S.DEMOTED) if S.DEMOTED in members.columns else F.lit(True)
    best = F.max(F.struct(clean.alias("clean"), F.col(S.QSM_SCORE).alias("score")))
    per_lang = members.groupBy(S.COPY_GROUP, S.LANG).agg(best.alias("_best"))
    if cfg.keep == "spread":
        order = [F.xxhash64(S.COPY_GROUP, S.LANG, F.lit(seed)), F.col(S.LANG)]
    else:
        order = [F.col("_best").desc(), F.col(S.LANG)]
    rank = F.row_number().over(Window.partitionBy(S.COPY_GROUP).orderBy(*order))
    per_lang = per_lang.select(S.COPY_GROUP, S.LANG, (rank > cfg.max_langs_per_group).alias(S.TRANSLATED_COPY))
    marked = members.join(per_lang, on=[S.COPY_GROUP, S.LANG])
    pruned = F.sum(F.col(S.TRANSLATED_COPY).cast("long")).over(Window.partitionBy(S.COPY_GROUP))
    return marked.select(
        S.SAMPLE_ID,
        S.COPY_GROUP,
        F.when(F.col(S.TRANSLATED_COPY), F.lit(0).cast("long")).otherwise(pruned).alias(S.COPY_COUNT),
        S.TRANSLATED_COPY,
    )


def translated_copies(pool: DataFrame, cfg: CopyGroupConfig, seed: int) -> DataFrame:
    """sample_id, copy_group, copy_count, translated_copy for the samples of `pool` that have a copy.

    `pool` is the samples still in the running, with sample_id, lang, qsm_score, embedding and
    (when cfg.domains is not empty) domain; only samples of those domains are grouped, every
    sample is a neighbour for the margin.
    """
    needed = REQUIRED_COLUMNS + ((S.DOMAIN,) if cfg.domains else ())
    missing = [c for c in needed if c not in pool.columns]
    if missing:
        raise ValueError(f"grouping translated copies needs columns {missing}")
    # the mean of every sample in the running, not only of the grouped domains: the direction
    # to remove is the encoder's, and a small domain made of a few sources' copies would
    # otherwise have its copies' shared direction removed with it
    centre = pool_mean(pool, cfg, seed)
    grouped = F.col(S.DOMAIN).isin(*cfg.domains) if cfg.domains else F.lit(True)
    demoted = [S.DEMOTED] if S.DEMOTED in pool.columns else []
    pool = pool.select(*REQUIRED_COLUMNS, *demoted, grouped.alias(GROUPED))
    pairs = candidate_pairs(pool, cfg, seed, centre).localCheckpoint()
    groups = components(pairs, cfg.max_iterations)
    members = groups.join(pool.select(S.SAMPLE_ID, S.LANG, S.QSM_SCORE, *demoted), on=S.SAMPLE_ID)
    return keep_languages(members, cfg, seed)
