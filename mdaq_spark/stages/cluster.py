"""Per-language k-means over sample embeddings: Spark ML (or spark-rapids-ml), or faiss in one task per language.

Embeddings are L2-normalised, so euclidean k-means orders points exactly as cosine k-means
would. For a large language the model is fitted on a seeded sample and every row is then
assigned in one pass: centroids stabilise long before all rows are seen, and the
assignment pass is a cheap map.

Three backends fit the same model on the same fit sample (rows chosen by a seeded hash of
their id). Spark ML (`clustering.backend: spark`) runs every iteration as a Spark job over
the sample, cached across the executors once for all languages, so it scales past one
machine's memory; each fit is a chain of small jobs, so `clustering.parallel_fits`
languages are fitted at once from driver threads, each in its own FAIR scheduler pool (a
fit's layout and seed are its own, so the centroids do not depend on which fits
overlapped). A language whose fit sample is small (`clustering.local_fit_max` rows) is
fitted inside one task instead, by scikit-learn's k-means: its thirty iterations are a
fraction of a second of arithmetic, and would be sixty Spark jobs. rapids
(`backend: rapids`) is the same recipe through spark-rapids-ml's KMeans on the executors'
GPUs. faiss (`backend: faiss`) collects each language's fit sample into one pandas group
(at most `fit_sample_max` x dim floats: 200k x 384 is 300 MB) and clusters it with BLAS in
that task. Every backend then assigns every row to its nearest centroid in one numpy pass
over all languages, without collecting rows anywhere.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.ml.clustering import KMeans
from pyspark.ml.functions import array_to_vector
from pyspark.ml.stat import Summarizer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.storagelevel import StorageLevel
from pyspark.util import inheritable_thread_target

from mdaq_spark import dependencies
from mdaq_spark import schema as S
from mdaq_spark.config import ClusteringConfig
from mdaq_spark.io import writers
from mdaq_spark.rundir import CENTROIDS, CLUSTERS
from mdaq_spark.stages import arrow_vectors
from mdaq_spark.stages.base import Stage, StageContext, Table, digest, section

log = logging.getLogger(__name__)

_FEATURES = "_features"
KMEANS_POOL = "mdaq-kmeans"  # FAIR scheduler pools of the concurrent per-language fits (session.py: FAIR mode)

CENTROID_SCHEMA = T.StructType(
    [
        T.StructField(S.LANG, T.StringType(), False),
        T.StructField(S.CLUSTER_ID, T.IntegerType(), False),
        T.StructField(S.CENTROID, T.ArrayType(T.FloatType(), False), False),
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


def require_backend(cfg: ClusteringConfig) -> None:
    """Fail before ingest, not after encoding, when the configured backend's package is missing."""
    need = {"faiss": dependencies.FAISS, "rapids": dependencies.RAPIDS}.get(cfg.backend)
    if need is not None:
        dependencies.require(need, need.why)


def _kmeans_estimator(cfg: ClusteringConfig, k: int, seed: int):
    """pyspark.ml's KMeans, or spark-rapids-ml's (the same parameters, fitted on the GPUs)."""
    if cfg.backend == "rapids":
        from spark_rapids_ml.clustering import KMeans as RapidsKMeans

        return RapidsKMeans(
            k=k, seed=seed, maxIter=cfg.max_iter, tol=cfg.tol, initMode=cfg.init_mode, featuresCol=_FEATURES
        )
    return KMeans(
        k=k,
        seed=seed,
        maxIter=cfg.max_iter,
        tol=cfg.tol,
        initMode=cfg.init_mode,
        solver=cfg.solver,
        featuresCol=_FEATURES,
        predictionCol=S.CLUSTER_ID,
    )


_HASH_RANGE = 1 << 30


def _fit_sample(embeddings: DataFrame, sizes: dict[str, int], cfg: ClusteringConfig, seed: int) -> DataFrame:
    """At most about fit_sample_max rows per language, chosen by a seeded hash of the sample id.

    DataFrame.sample draws per partition, so its rows move with the input's layout; a hash
    threshold picks the same rows on any cluster, after any retry.
    """
    fraction = F.create_map(
        *[x for lang, n in sorted(sizes.items()) for x in (F.lit(lang), F.lit(min(1.0, cfg.fit_sample_max / n)))]
    )
    unit = F.pmod(F.xxhash64(S.SAMPLE_ID, F.lit(seed)), F.lit(_HASH_RANGE)) / F.lit(float(_HASH_RANGE))
    return embeddings.where(unit < F.element_at(fraction, F.col(S.LANG)))


def _fit_language(samples: DataFrame, lang: str, k: int, cfg: ClusteringConfig, seed: int) -> np.ndarray:
    """(k, dim) centroids of one language, fitted by Spark ML (or spark-rapids-ml) on its rows of `samples`."""
    spark = samples.sparkSession
    # its own pool: the languages' chains of small jobs share the executors fairly instead of queueing
    spark.sparkContext.setLocalProperty("spark.scheduler.pool", f"{KMEANS_POOL}-{lang}")
    rows = samples.where(F.col(S.LANG) == lang)
    if cfg.backend == "rapids" and k > 1:  # spark-rapids-ml reads array<float> directly
        features = rows.select(F.col(S.EMBEDDING).alias(_FEATURES))
    else:
        # not persisted here: Spark ML then caches its own deserialized vectors (and their norms) for
        # the iterations, instead of decoding every cached row again in each of them
        features = rows.select(array_to_vector(S.EMBEDDING).alias(_FEATURES))
    if k == 1:  # Spark's KMeans needs k >= 2; one cluster is the mean
        mean = features.select(Summarizer.mean(F.col(_FEATURES)).alias("m")).first()["m"]
        return np.asarray([mean.toArray()], dtype=np.float64)
    model = _kmeans_estimator(cfg, k, seed).fit(features)
    return np.asarray(model.clusterCenters(), dtype=np.float64)


def cluster_by_language(spark: SparkSession, embeddings: DataFrame, cfg: ClusteringConfig, seed: int) -> ClusterResult:
    """`embeddings` has sample_id, lang, embedding. One k-means per language, seeded."""
    sizes = {row[S.LANG]: row["count"] for row in embeddings.groupBy(S.LANG).count().collect()}
    k_per_lang = {lang: choose_k(sizes[lang], cfg) for lang in sorted(sizes)}
    rows = embeddings.select(S.SAMPLE_ID, S.LANG, S.EMBEDDING)
    if cfg.backend == "faiss":
        fitted = _fit_in_tasks(_fit_sample(rows, sizes, cfg, seed), k_per_lang, cfg, seed, faiss_kmeans)
        _log_fits(fitted, sizes, cfg, {lang: "faiss" for lang in fitted})
        return _result(spark, embeddings, fitted, cfg)
    require_backend(cfg)
    # a small fit is a second or less of arithmetic but 30 rounds of Spark jobs: in one task instead
    local = {lang for lang, n in sizes.items() if min(n, cfg.fit_sample_max) <= cfg.local_fit_max}
    large = [lang for lang in k_per_lang if lang not in local]
    sample = _fit_sample(rows, sizes, cfg, seed)
    fitted = {}
    if local:
        small = sample.where(F.col(S.LANG).isin(*sorted(local)))
        fitted.update(_fit_in_tasks(small, k_per_lang, cfg, seed, local_kmeans))
    if large:
        fitted.update(_fit_with_spark(spark, sample, large, k_per_lang, cfg, seed))
    _log_fits(fitted, sizes, cfg, {lang: "in one task" if lang in local else cfg.backend for lang in fitted})
    return _result(spark, embeddings, fitted, cfg)


def _fit_with_spark(
    spark: SparkSession,
    sample: DataFrame,
    langs: list[str],
    k_per_lang: dict[str, int],
    cfg: ClusteringConfig,
    seed: int,
) -> dict[str, np.ndarray]:
    """{lang: centroids} of Spark ML (or spark-rapids-ml) fits of `langs`' rows of `sample`, several at once."""
    # every language's fit sample in one fixed layout, read once and cached: k-means|| seeds are
    # drawn per partition, so partitions fixed by config (not by the cluster's size or the input
    # files' splits) make the fits reproducible, and each fit reads its rows from memory instead
    # of scanning and shuffling the whole table again
    samples = (
        sample.where(F.col(S.LANG).isin(*langs))
        .repartition(cfg.fit_partitions, S.SAMPLE_ID)
        .sortWithinPartitions(S.LANG, S.SAMPLE_ID)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    try:
        samples.count()
        # each fit is a chain of small Spark jobs (k-means|| rounds, one per iteration) that leaves most
        # cores idle: several languages at once fill them. Each fit reads its own rows of the fixed
        # layout with its own seed, so the centroids do not depend on which fits overlapped
        fit = inheritable_thread_target(spark)(_fit_language)  # the job group and tags follow each fit
        with ThreadPoolExecutor(max_workers=max(1, min(cfg.parallel_fits, len(langs)))) as pool:
            futures = {lang: pool.submit(fit, samples, lang, k_per_lang[lang], cfg, seed) for lang in langs}
            return {lang: future.result() for lang, future in futures.items()}
    finally:
        samples.unpersist()


def _log_fits(fitted: dict, sizes: dict[str, int], cfg: ClusteringConfig, how: dict[str, str]) -> None:
    for lang in sorted(fitted):
        log.info(
            "lang %s: %d samples, k=%d (%s, fitted on %s)",
            lang,
            sizes[lang],
            len(fitted[lang]),
            how[lang],
            "sample" if sizes[lang] > cfg.fit_sample_max else "all",
        )


# ------------------------------------------------------------------ fits inside one task per language


def _fit_in_tasks(samples: DataFrame, k_wanted: dict[str, int], cfg: ClusteringConfig, seed: int, fitter) -> dict:
    """{lang: (k, dim) centroids}: each language's rows of `samples` fitted by `fitter` in one pandas group.

    At most `fit_sample_max` x dim floats per group (200k x 384 is 300 MB), so one executor holds it.
    """

    def fit(key: tuple, pdf: pd.DataFrame) -> pd.DataFrame:
        lang = key[0]
        pdf = pdf.sort_values(S.SAMPLE_ID, kind="stable")  # the rows' order, not the shuffle's, feeds the fit
        x = np.stack(pdf[S.EMBEDDING].to_numpy())
        centers = fitter(x, min(k_wanted[lang], len(pdf)), cfg, seed)
        return pd.DataFrame(
            {S.LANG: lang, S.CLUSTER_ID: np.arange(len(centers), dtype=np.int32), S.CENTROID: list(centers)}
        )

    rows = samples.groupBy(S.LANG).applyInPandas(fit, CENTROID_SCHEMA).collect()  # k x dim per language
    centers: dict[str, list] = {}
    for row in rows:
        centers.setdefault(row[S.LANG], []).append((row[S.CLUSTER_ID], row[S.CENTROID]))
    return {lang: np.asarray([c for _, c in sorted(parts)], dtype=np.float32) for lang, parts in centers.items()}


def local_kmeans(x: np.ndarray, k: int, cfg: ClusteringConfig, seed: int) -> np.ndarray:
    """(k, d) centroids by scikit-learn's k-means (k-means++ start, Lloyd iterations), seeded; k = 1 is the mean.

    One thread: scikit-learn sums the centres' updates per thread chunk, so the last bits of a
    centroid, and with them a near-tie assignment, would depend on the executor's cores.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if k <= 1:
        return x.mean(axis=0, keepdims=True)
    from sklearn.cluster import KMeans as SklearnKMeans
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        model = SklearnKMeans(
            n_clusters=k, init="k-means++", n_init=1, max_iter=cfg.max_iter, tol=cfg.tol, random_state=seed
        ).fit(x)
    return np.asarray(model.cluster_centers_, dtype=np.float32)


def faiss_kmeans(x: np.ndarray, k: int, cfg: ClusteringConfig, seed: int) -> np.ndarray:
    """(k, d) centroids of `x` (rows in a fixed order); k = 1 is the mean, without faiss."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if k <= 1:
        return x.mean(axis=0, keepdims=True)
    try:
        import faiss
    except ImportError as exc:  # an optional extra: say how to get it instead of a bare ImportError
        raise ImportError(
            "clustering.backend: faiss needs the faiss package: pip install 'mdaq-spark[faiss]' "
            "(or a faiss GPU build on GPU hosts)"
        ) from exc
    km = faiss.Kmeans(
        x.shape[1],
        k,
        niter=cfg.max_iter,
        seed=seed,
        verbose=False,
        # the fit sample is already bounded by fit_sample_max; faiss must not subsample it again,
        # nor warn that a small language has few points per centroid
        max_points_per_centroid=max(1, x.shape[0]),
        min_points_per_centroid=1,
    )
    km.train(x)
    return np.asarray(km.centroids, dtype=np.float32).reshape(k, x.shape[1])


ASSIGNMENT_SCHEMA = T.StructType(
    [
        T.StructField(S.SAMPLE_ID, T.StringType(), False),
        T.StructField(S.LANG, T.StringType(), False),
        T.StructField(S.CLUSTER_ID, T.IntegerType(), False),
        T.StructField(S.CENTROID_DISTANCE, T.DoubleType(), False),
    ]
)


def _result(
    spark: SparkSession, embeddings: DataFrame, centers: dict[str, np.ndarray], cfg: ClusteringConfig
) -> ClusterResult:
    """Every backend's output from its fitted centers: the centroids table as fitted, rows assigned in float32."""
    centroids = spark.createDataFrame(
        [(lang, i, [float(v) for v in c]) for lang, m in sorted(centers.items()) for i, c in enumerate(m)],
        CENTROID_SCHEMA,
    )
    matrix = {lang: m.astype(np.float32) for lang, m in sorted(centers.items())}
    return ClusterResult(
        assignments=_assign_all(spark, embeddings, matrix, cfg),
        centroids=centroids,
        k_per_lang={lang: len(m) for lang, m in sorted(centers.items())},
    )


def _assign_all(
    spark: SparkSession, embeddings: DataFrame, centroid_matrix: dict[str, np.ndarray], cfg: ClusteringConfig
) -> DataFrame:
    """Every row's nearest centroid and distance, all languages in one numpy pass (every backend)."""
    # a fixed layout: a row's Arrow batch, and so its BLAS call, does not depend on the cluster's
    # size or on which executor ran it
    ordered = embeddings.select(S.SAMPLE_ID, S.LANG, S.EMBEDDING).repartition(cfg.fit_partitions, S.SAMPLE_ID)
    # a broadcast, not the closure: 10 languages x k 222 x 384 floats already made a 7.5 MB task
    shared = spark.sparkContext.broadcast(centroid_matrix)
    return ordered.sortWithinPartitions(S.SAMPLE_ID).mapInArrow(_assign_nearest(shared), ASSIGNMENT_SCHEMA)


_ASSIGNMENT_ARROW = pa.schema(
    [
        pa.field(S.SAMPLE_ID, pa.string(), False),
        pa.field(S.LANG, pa.string(), False),
        pa.field(S.CLUSTER_ID, pa.int32(), False),
        pa.field(S.CENTROID_DISTANCE, pa.float64(), False),
    ]
)


def _assign_nearest(shared):
    """Nearest centroid by euclidean distance (argmin |c|^2 - 2 x.c, the first index on a tie) and the distance.

    `shared` is a broadcast of {lang: (k, dim) centroids}, read once per task.
    """

    def assign(batches):
        centroids = shared.value
        squared = {lang: np.einsum("ij,ij->i", m, m) for lang, m in centroids.items()}
        for batch in batches:
            n = batch.num_rows
            cluster = np.zeros(n, dtype=np.int32)
            distance = np.zeros(n, dtype=np.float64)
            langs = np.asarray(batch.column(S.LANG).to_pylist(), dtype=object)
            vectors = arrow_vectors.matrix(batch.column(S.EMBEDDING))
            for lang in np.unique(langs):
                at = np.flatnonzero(langs == lang)
                x = vectors[at]
                nearest = np.argmin(squared[lang][None, :] - 2.0 * (x @ centroids[lang].T), axis=1)
                cluster[at] = nearest
                distance[at] = np.linalg.norm(x - centroids[lang][nearest], axis=1)
            yield pa.RecordBatch.from_arrays(
                [batch.column(S.SAMPLE_ID), batch.column(S.LANG), pa.array(cluster), pa.array(distance)],
                schema=_ASSIGNMENT_ARROW,
            )

    return assign


@dataclass(frozen=True)
class ClusterStage(Stage):
    """Per-language k-means on the embeddings: clusters/ (assignments) and centroids/."""

    name = "cluster"
    clustering: ClusteringConfig
    seed: int
    embedding_table: str  # scores (embedding.source: qsm) or embeddings (model)
    embedding_fingerprint: str
    upstream: str  # the key of the stage that wrote the embeddings

    @property
    def requires(self) -> tuple[Table, ...]:
        return (Table(self.embedding_table, (S.SAMPLE_ID, S.LANG, S.EMBEDDING), self.embedding_fingerprint),)

    @property
    def produces(self) -> tuple[Table, ...]:
        return (
            Table(CLUSTERS, (S.SAMPLE_ID, S.LANG, S.CLUSTER_ID, S.CENTROID_DISTANCE)),
            Table(CENTROIDS, (S.LANG, S.CLUSTER_ID, S.CENTROID)),
        )

    def key(self) -> str:
        return digest(self.upstream, section(self.clustering), str(self.seed))

    def run(self, ctx: StageContext) -> dict:
        embeddings = ctx.rundir.model_table(self.embedding_table, self.embedding_fingerprint)
        result = cluster_by_language(ctx.spark, embeddings, self.clustering, self.seed)
        writers.write_table(result.assignments, ctx.rundir.path(CLUSTERS), partition_by=(S.LANG,))
        writers.write_table(result.centroids.coalesce(1), ctx.rundir.path(CENTROIDS))
        return {"k_per_lang": result.k_per_lang}
