"""Per-language k-means, both backends, on constructed embeddings with known groups (real Spark)."""

from __future__ import annotations

import numpy as np
import pytest

from mdaq_spark import schema as S
from mdaq_spark.config import ClusteringConfig
from mdaq_spark.stages.cluster import choose_k, cluster_by_language

DIM = 16
# spark: Spark ML for every language (local_fit_max 0); local: the spark backend's default, which
# fits languages this small inside one task (scikit-learn); faiss
BACKENDS = ["spark", "local", "faiss"]


def clustering(backend: str, **fields) -> ClusteringConfig:
    if backend == "spark":
        fields.setdefault("local_fit_max", 0)
    return ClusteringConfig(backend="spark" if backend == "local" else backend, **fields)


def blobs(langs: dict[str, int], per_blob: int, seed: int = 0) -> list[tuple[str, str, list[float], int]]:
    """(sample_id, lang, unit embedding, true blob) with `n` far-apart blobs per language."""
    rng = np.random.default_rng(seed)
    rows = []
    for lang, n_blobs in langs.items():
        centres = rng.normal(size=(n_blobs, DIM))
        for b in range(n_blobs):
            for i in range(per_blob):
                v = centres[b] + rng.normal(scale=0.05, size=DIM)
                v = v / np.linalg.norm(v)
                rows.append((f"{lang}-{b}-{i:03d}", lang, [float(x) for x in v], b))
    return rows


def frame(spark, rows):
    return spark.createDataFrame(
        [r[:3] for r in rows], f"{S.SAMPLE_ID} string, {S.LANG} string, {S.EMBEDDING} array<float>"
    )


def test_choose_k_follows_mdaq_and_caps():
    cfg = ClusteringConfig()
    assert choose_k(45_858 // 10, cfg) == 48  # ceil(sqrt(4585 / 2))
    assert choose_k(1, cfg) == 1
    assert choose_k(10**9, ClusteringConfig(max_k=100)) == 100
    assert choose_k(5, ClusteringConfig(k=50)) == 5  # never more clusters than rows


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_blob_becomes_one_cluster(spark, backend):
    rows = blobs({"de": 3, "fr": 4}, per_blob=30)
    cfg = clustering(backend, k=None, max_k=4, max_iter=20)
    # k = ceil(sqrt(N/2)) is 7 and 8 here; fix it per language through max_k and the blob count
    cfg_de = cfg.model_copy(update={"max_k": 3})
    result = cluster_by_language(spark, frame(spark, [r for r in rows if r[1] == "de"]), cfg_de, seed=42)
    assert result.k_per_lang == {"de": 3}
    result = cluster_by_language(spark, frame(spark, rows), cfg, seed=42)
    assert result.k_per_lang == {"de": 4, "fr": 4}
    got = {r[S.SAMPLE_ID]: (r[S.LANG], r[S.CLUSTER_ID], r[S.CENTROID_DISTANCE]) for r in result.assignments.collect()}
    assert len(got) == len(rows)
    truth = {r[0]: r[3] for r in rows}
    # French has 4 blobs and k = 4: each blob is exactly one cluster, and no two blobs share one
    fr = {}
    for sid, (lang, cid, _) in got.items():
        if lang == "fr":
            fr.setdefault(truth[sid], set()).add(cid)
    assert all(len(c) == 1 for c in fr.values())
    assert len({next(iter(c)) for c in fr.values()}) == 4
    # the recorded distance is the distance to the row's own centroid, and that centroid is the nearest
    centroids = {(r[S.LANG], r[S.CLUSTER_ID]): np.array(r[S.CENTROID]) for r in result.centroids.collect()}
    vectors = {r[0]: np.array(r[2], dtype=np.float32) for r in rows}
    for sid, (lang, cid, dist) in got.items():
        own = np.linalg.norm(vectors[sid] - centroids[(lang, cid)])
        assert dist == pytest.approx(own, abs=1e-5)
        others = [np.linalg.norm(vectors[sid] - c) for (lg, _), c in centroids.items() if lg == lang]
        assert own <= min(others) + 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_clusters_whatever_the_input_layout(spark, backend):
    rows = blobs({"de": 5, "ko": 3}, per_blob=25, seed=3)
    cfg = clustering(backend, max_iter=10, fit_sample_max=60)  # the fit sees a sample
    df = frame(spark, rows)

    def run(layout):
        result = cluster_by_language(spark, layout, cfg, seed=7)
        assignments = sorted(tuple(r) for r in result.assignments.collect())
        centroids = sorted((r[S.LANG], r[S.CLUSTER_ID], tuple(r[S.CENTROID])) for r in result.centroids.collect())
        return assignments, centroids

    first = run(df.repartition(1))
    assert first == run(df.repartition(5))  # bit for bit, distances included
    assert first == run(df.orderBy(S.SAMPLE_ID, ascending=False).repartition(3))


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_sample_is_bounded_and_every_row_assigned(spark, backend):
    from mdaq_spark.stages.cluster import _fit_sample

    rows = blobs({"de": 4, "it": 2}, per_blob=100, seed=5)  # 400 and 200 rows
    df = frame(spark, rows)
    cfg = clustering(backend, fit_sample_max=100, max_iter=10)
    sample = _fit_sample(df, {"de": 400, "it": 200}, cfg, seed=1)
    per_lang = {r[S.LANG]: r["count"] for r in sample.groupBy(S.LANG).count().collect()}
    assert 60 <= per_lang["de"] <= 140 and 60 <= per_lang["it"] <= 140  # ~100 each, by hash
    ids = {r[S.SAMPLE_ID] for r in sample.collect()}
    assert ids == {r[S.SAMPLE_ID] for r in _fit_sample(df.repartition(7), {"de": 400, "it": 200}, cfg, 1).collect()}
    assert ids != {r[S.SAMPLE_ID] for r in _fit_sample(df, {"de": 400, "it": 200}, cfg, 2).collect()}
    result = cluster_by_language(spark, df, cfg, seed=1)
    assert result.assignments.count() == len(rows)
    assert result.k_per_lang == {"de": 15, "it": 10}  # ceil(sqrt(400/2)), ceil(sqrt(200/2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_row_language_is_its_own_cluster(spark, backend):
    rows = blobs({"de": 3}, per_blob=10) + [("ms-0", "ms", [1.0] + [0.0] * (DIM - 1), 0)]
    result = cluster_by_language(spark, frame(spark, rows), clustering(backend), seed=42)
    assert result.k_per_lang["ms"] == 1
    ms = [r for r in result.assignments.collect() if r[S.LANG] == "ms"]
    assert [(r[S.CLUSTER_ID], r[S.CENTROID_DISTANCE]) for r in ms] == [(0, 0.0)]


def test_concurrent_fits_give_the_same_clusters(spark):
    rows = blobs({"de": 3, "fr": 2, "ko": 4}, per_blob=20, seed=11)
    df = frame(spark, rows)

    def run(parallel):
        cfg = clustering("spark", max_iter=10, parallel_fits=parallel)
        result = cluster_by_language(spark, df, cfg, seed=5)
        return (
            sorted(tuple(r) for r in result.assignments.collect()),
            sorted((r[S.LANG], r[S.CLUSTER_ID], tuple(r[S.CENTROID])) for r in result.centroids.collect()),
        )

    assert run(1) == run(3)


def test_block_and_row_solvers_find_the_same_clusters(spark):
    from mdaq_spark.stages.cluster import _kmeans_estimator

    assert ClusteringConfig().solver == "block"
    assert _kmeans_estimator(ClusteringConfig(), k=4, seed=1).getSolver() == "block"  # reaches Spark ML
    rows = blobs({"de": 4, "fr": 3}, per_blob=40, seed=17)
    df = frame(spark, rows)

    def run(solver):
        result = cluster_by_language(spark, df, clustering("spark", max_iter=20, solver=solver), seed=9)
        centroids = {(r[S.LANG], r[S.CLUSTER_ID]): np.array(r[S.CENTROID]) for r in result.centroids.collect()}
        return {r[S.SAMPLE_ID]: r[S.CLUSTER_ID] for r in result.assignments.collect()}, centroids

    block, row = run("block"), run("row")
    # one BLAS product per block of rows or one distance at a time: the same start, assignments and
    # centres (up to the last bits of the sums)
    assert block[0] == row[0]
    assert block[1].keys() == row[1].keys()
    for key in block[1]:
        np.testing.assert_allclose(block[1][key], row[1][key], rtol=0, atol=1e-6)


def test_small_languages_fit_in_one_task_beside_spark_ml_fits(spark):
    rows = blobs({"de": 3}, per_blob=30, seed=13) + blobs({"fr": 3, "ko": 3}, per_blob=15, seed=14)
    df = frame(spark, rows)  # 90, 45 and 45 rows, three blobs each
    cfg = clustering("local", k=3, max_iter=20, local_fit_max=60)  # fr and ko in one task, de by Spark ML

    def run(layout, **update):
        result = cluster_by_language(spark, layout, cfg.model_copy(update=update), seed=3)
        return (
            sorted(tuple(r) for r in result.assignments.collect()),
            sorted((r[S.LANG], r[S.CLUSTER_ID], tuple(r[S.CENTROID])) for r in result.centroids.collect()),
        )

    mixed = run(df)
    assert mixed == run(df.repartition(5))  # bit for bit whatever the layout
    assert {lang for lang, *_ in mixed[1]} == {"de", "fr", "ko"}
    spark_ml = run(df, local_fit_max=0)
    german = [c for c in mixed[1] if c[0] == "de"]
    assert german == [c for c in spark_ml[1] if c[0] == "de"]  # de is Spark ML's fit either way
    assert [c for c in mixed[1] if c[0] == "ko"] != [c for c in spark_ml[1] if c[0] == "ko"]  # another fit
    truth = {r[0]: (r[1], r[3]) for r in rows}
    for assignments in (mixed[0], spark_ml[0]):  # both fits find the blobs: one cluster each
        clusters = {}
        for sid, _lang, cid, _ in assignments:
            clusters.setdefault(truth[sid], set()).add(cid)
        assert all(len(c) == 1 for c in clusters.values())


def test_rapids_backend_without_its_package_stops_before_ingest(spark, tmp_path):
    import importlib.util

    from mdaq_spark.config import load_config
    from mdaq_spark.errors import DependencyError
    from mdaq_spark.pipeline.runner import run_pipeline
    from mdaq_spark.stages.cluster import require_backend
    from tests.conftest import DEMO_CORPUS

    if importlib.util.find_spec("spark_rapids_ml") is not None:
        pytest.skip("spark-rapids-ml is installed: the missing-package error cannot happen")
    with pytest.raises(DependencyError, match=r"spark-rapids-ml.*pip install 'mdaq-spark\[rapids\]'"):
        require_backend(ClusteringConfig(backend="rapids"))
    cfg = load_config(
        None,
        ["clustering.backend=rapids", "model.qsm_head=none"],
        **{"input.paths": [str(DEMO_CORPUS)], "output.path": str(tmp_path / "run")},
    )
    with pytest.raises(DependencyError, match="spark-rapids-ml"):
        run_pipeline(spark, cfg)
    assert not (tmp_path / "run" / "normalized").exists()
