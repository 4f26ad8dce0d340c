"""Per-language k-means over sample embeddings with Spark ML.

Embeddings are L2-normalised, so Spark's euclidean k-means orders points exactly as
cosine k-means would. For a large language the model is fitted on a seeded sample and
every row is then assigned in one pass: centroids stabilise long before all rows are
seen, and the assignment pass is a cheap map.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from pyspark.ml.clustering import KMeans
from pyspark.ml.functions import array_to_vector
from pyspark.ml.stat import Summarizer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mdaq_spark import schema as S
from mdaq_spark.config import ClusteringConfig

log = logging.getLogger(__name__)

_FEATURES = "_features"
CENTROID = "centroid"
CLUSTER_SIZE = "cluster_size"

CENTROID_SCHEMA = T.StructType(
    [
        T.StructField(S.LANG, T.StringType(), False),
        T.StructField(S.CLUSTER_ID, T.IntegerType(), False),
        T.StructField(CENTROID, T.ArrayType(T.FloatType(), False), False),
    ]
)


def choose_k(n: int, cfg: ClusteringConfig) -> int:
    """M-DaQ's k = ceil(sqrt(N / 2)), unless fixed; never more clusters than rows."""
    k = cfg.k if cfg.k is not None else math.ceil(math.sqrt(n / 2))
    return max(1, min(k, cfg.max_k, n))


@dataclass(frozen=True)
class ClusterResult:
    assignments: DataFrame  # sample_id, lang, cluster_id, centroid_distance
    centroids: DataFrame  # lang, cluster_id, centroid
    k_per_lang: dict[str, int]


def cluster_by_language(spark: SparkSession, embeddings: DataFrame, cfg: ClusteringConfig, seed: int) -> ClusterResult:
    """`embeddings` has sample_id, lang, embedding. One k-means per language, seeded."""
    sizes = {row[S.LANG]: row["count"] for row in embeddings.groupBy(S.LANG).count().collect()}
    assignments: list[DataFrame] = []
    centroid_rows: list[tuple[str, int, list[float]]] = []
    k_per_lang: dict[str, int] = {}
    for lang in sorted(sizes):
        n = sizes[lang]
        k = choose_k(n, cfg)
        k_per_lang[lang] = k
        rows = embeddings.where(F.col(S.LANG) == lang).select(S.SAMPLE_ID, S.LANG, S.EMBEDDING)
        features = rows.withColumn(_FEATURES, array_to_vector(S.EMBEDDING))
        if k == 1:  # Spark's KMeans needs k >= 2; one cluster is the mean
            mean = features.select(Summarizer.mean(F.col(_FEATURES)).alias("m")).first()["m"]
            centroid_rows.append((lang, 0, [float(x) for x in mean]))
            assignments.append(rows.withColumn(S.CLUSTER_ID, F.lit(0)))
            continue
        # a fixed layout, whatever the cluster's size or the input files' splits: k-means||
        # seeds and the fit sample are drawn per partition, so this makes them reproducible
        features = features.repartition(cfg.fit_partitions, S.SAMPLE_ID).sortWithinPartitions(S.SAMPLE_ID)
        fit_rows = features
        if n > cfg.fit_sample_max:
            fit_rows = features.sample(withReplacement=False, fraction=cfg.fit_sample_max / n, seed=seed)
        fit_rows = fit_rows.select(_FEATURES).persist()
        try:
            model = KMeans(
                k=k,
                seed=seed,
                maxIter=cfg.max_iter,
                tol=cfg.tol,
                initMode=cfg.init_mode,
                featuresCol=_FEATURES,
                predictionCol=S.CLUSTER_ID,
            ).fit(fit_rows)
        finally:
            fit_rows.unpersist()
        centers = model.clusterCenters()
        log.info(
            "lang %s: %d samples, k=%d (fitted on %s)",
            lang,
            n,
            len(centers),
            "sample" if n > cfg.fit_sample_max else "all",
        )
        centroid_rows += [(lang, i, [float(x) for x in c]) for i, c in enumerate(centers)]
        assignments.append(model.transform(features).select(S.SAMPLE_ID, S.LANG, S.EMBEDDING, S.CLUSTER_ID))
    centroids = spark.createDataFrame(centroid_rows, CENTROID_SCHEMA)
    assigned = _union(assignments, embeddings)
    return ClusterResult(
        assignments=_with_centroid_distance(assigned, centroids), centroids=centroids, k_per_lang=k_per_lang
    )


def _union(parts: list[DataFrame], like: DataFrame) -> DataFrame:
    if not parts:
        return like.select(S.SAMPLE_ID, S.LANG, S.EMBEDDING).withColumn(S.CLUSTER_ID, F.lit(0)).limit(0)
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def _with_centroid_distance(assigned: DataFrame, centroids: DataFrame) -> DataFrame:
    """Euclidean distance to the own centroid, in SQL (no Python): small = typical of its cluster."""
    joined = assigned.withColumn(S.CLUSTER_ID, F.col(S.CLUSTER_ID).cast("int")).join(
        F.broadcast(centroids), on=[S.LANG, S.CLUSTER_ID], how="left"
    )
    squared = F.aggregate(
        F.zip_with(S.EMBEDDING, CENTROID, lambda x, c: (x - c) * (x - c)), F.lit(0.0), lambda acc, d: acc + d
    )
    return joined.select(S.SAMPLE_ID, S.LANG, S.CLUSTER_ID, F.sqrt(squared).alias(S.CENTROID_DISTANCE))
