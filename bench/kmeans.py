"""k-means at scale: Spark ML KMeans (fit on a sample, assign all) vs faiss on one node, same vectors.

    python bench/kmeans.py --vectors runs/scale_1m/scores --k 100 --fractions 0.01 0.05 0.2 \
        --spark-fractions 0.01 0.05 0.2 --out bench/results/kmeans_1m.json

The vectors are the `embedding` column of a Parquet table (e.g. the job's `scores/`, the
L2-normalised sample embeddings the cluster stage clusters). With `--replicate R`, each real
vector is repeated R times with seeded Gaussian noise (relative norm `--noise`) and
re-normalised, and the result is written to Parquet (`--work`) for the Spark side: a
million realistic vectors from a 100k-sample run. For each sample fraction f:
- Spark: the cluster stage's recipe (`KMeans(k, maxIter, tol, seed, k-means||)` fitted on
  `sample(f)`, then `transform` of every row, forced with a count), in a local[*] session;
- faiss: `faiss.Kmeans` with the same k, iterations and seed, trained on the same fraction
  (a seeded numpy sample of the in-memory matrix), then `index.search` of every row.
Inertia (sum of squared distances of every row to its nearest centroid) is computed by one
numpy function for both centroid sets, over all rows, so the numbers compare directly.
Wall times exclude reading the vectors (Spark reads Parquet inside its timed fit/assign;
that read is measured alone and reported beside it).

`--stage` measures the cluster stage itself instead (`cluster_by_language`, the job's own
code, every backend given in `--backends`) on synthetic languages: `--langs` languages of
`--rows-per-lang` unit vectors each (Gaussian blobs around random centres, seeded), k from
the stage's own rule (ceil(sqrt(N / 2))), written to Parquet and read back as the job does.
Fit time (sizes and fits) and assign time (every row, forced with a noop write) are
reported per backend, with each language's inertia and their sum:

    python bench/kmeans.py --stage --langs 4 --rows-per-lang 10000 --backends spark faiss \
        --parallel-fits 1 4 --out bench/results/kmeans_stage_40k.json

With `--vectors TABLE` beside `--stage`, the stage runs on real embeddings instead (a table
with sample_id, lang and the vectors, e.g. a run's `scores/`): real sentence embeddings do
not converge in a few iterations as separated blobs do, so every fit runs its max_iter.
`--replicate R --work DIR` then repeats each language's vectors R times with seeded noise (as
above): a 100k run's embeddings become a 1M-row stage. `--backends` names variants of the
spark backend as `spark:<solver>[:<init mode>]` (`spark:row`, `spark:block:random`), and
`--parallel-fits` / `--fit-partitions` list the settings to try. Every variant runs once per
round (`--rounds`, default 2) in one session, and the comparison takes each variant's fastest
round: the first round also pays the session's warm-up (Python workers, imports, JIT), which a
job's cluster stage, coming after its other stages, never pays.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from mdaq_spark.report.stats import code_commit


def load_matrix(path: str, column: str, limit: int | None) -> np.ndarray:
    """The vectors as one float32 matrix, filled batch by batch (no intermediate Python lists)."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(path, format="parquet", partitioning="hive")
    n = dataset.count_rows() if limit is None else min(limit, dataset.count_rows())
    out = None
    at = 0
    for batch in dataset.to_batches(columns=[column]):
        arr = batch.column(0)
        values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        rows = values.reshape(len(arr), -1)
        if out is None:
            out = np.empty((n, rows.shape[1]), dtype=np.float32)
        take = min(len(rows), n - at)
        out[at : at + take] = rows[:take]
        at += take
        if at >= n:
            break
    return out


def replicate(x: np.ndarray, times: int, noise: float, seed: int) -> np.ndarray:
    """`times` noisy, re-normalised copies of every row (seeded), in one preallocated matrix."""
    rng = np.random.default_rng(seed)
    out = np.empty((len(x) * times, x.shape[1]), dtype=np.float32)
    for t in range(times):
        block = x + rng.standard_normal(x.shape, dtype=np.float32) * (noise / np.sqrt(x.shape[1]))
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[t * len(x) : (t + 1) * len(x)] = block
    return out


def write_parquet(x: np.ndarray, path: Path, column: str, rows_per_file: int = 100_000) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(x), rows_per_file):
        block = x[i : i + rows_per_file]
        values = pa.array(block.reshape(-1), type=pa.float32())
        offsets = pa.array(np.arange(0, block.size + 1, block.shape[1], dtype=np.int32))
        table = pa.table({column: pa.ListArray.from_arrays(offsets, values)})
        pq.write_table(table, path / f"part-{i // rows_per_file:05d}.parquet")


def inertia(x: np.ndarray, centroids: np.ndarray, chunk: int = 65536) -> float:
    """Sum over rows of the squared distance to the nearest centroid (float64 accumulation)."""
    c = centroids.astype(np.float32)
    c_sq = (c * c).sum(axis=1)
    total = 0.0
    for i in range(0, len(x), chunk):
        block = x[i : i + chunk]
        d = (block * block).sum(axis=1, keepdims=True) - 2.0 * block @ c.T + c_sq
        total += float(np.maximum(d.min(axis=1), 0.0).astype(np.float64).sum())
    return total


def run_faiss(x: np.ndarray, k: int, fraction: float, iters: int, seed: int) -> dict:
    import faiss

    n = len(x)
    m = max(k, int(round(fraction * n)))
    started = time.perf_counter()
    idx = np.random.default_rng(seed).choice(n, size=m, replace=False) if m < n else None
    sample = x[np.sort(idx)] if idx is not None else x
    km = faiss.Kmeans(x.shape[1], k, niter=iters, seed=seed, max_points_per_centroid=m // k + 1, verbose=False)
    km.train(sample)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    km.index.search(x, 1)
    assign_s = time.perf_counter() - started
    return {
        "fit_rows": m,
        "fit_seconds": round(fit_s, 2),
        "assign_seconds": round(assign_s, 2),
        "wall_seconds": round(fit_s + assign_s, 2),
        "centroids": km.centroids,
        "threads": faiss.omp_get_max_threads(),
    }


def run_spark(
    spark, path: str, column: str, limit: int | None, k: int, fraction: float, iters: int, tol: float, seed: int
):
    from pyspark.ml.clustering import KMeans
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    df = spark.read.parquet(path).select(column)
    if limit is not None:
        df = df.limit(limit)
    features = df.select(array_to_vector(F.col(column)).alias("features"))
    started = time.perf_counter()
    fit_rows = features.sample(withReplacement=False, fraction=fraction, seed=seed) if fraction < 1 else features
    fit_rows = fit_rows.persist()
    try:
        n_fit = fit_rows.count()
        model = KMeans(k=k, seed=seed, maxIter=iters, tol=tol, initMode="k-means||", featuresCol="features").fit(
            fit_rows
        )
    finally:
        fit_rows.unpersist()
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    model.transform(features).select("prediction").write.format("noop").mode("overwrite").save()
    assign_s = time.perf_counter() - started
    return {
        "fit_rows": n_fit,
        "fit_seconds": round(fit_s, 2),
        "assign_seconds": round(assign_s, 2),
        "wall_seconds": round(fit_s + assign_s, 2),
        "iterations": model.summary.numIter,
        "centroids": np.asarray(model.clusterCenters(), dtype=np.float32),
    }


def synthetic_languages(langs: int, rows: int, dim: int, blobs: int, seed: int) -> dict[str, np.ndarray]:
    """`langs` languages of `rows` unit vectors: `blobs` Gaussian blobs each, of unequal spread, seeded."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(langs):
        centres = rng.standard_normal((blobs, dim)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        which = rng.integers(0, blobs, size=rows)
        spread = rng.uniform(0.5, 1.5, size=blobs).astype(np.float32)[which, None]
        x = centres[which] + rng.standard_normal((rows, dim), dtype=np.float32) * spread / np.sqrt(dim)
        out[f"l{i:02d}"] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def real_languages(path: Path, column: str) -> dict[str, np.ndarray]:
    """{lang: (n, dim) float32} of a table with `lang` and a vector column, for the inertia."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["lang", column])
    langs = np.asarray(table.column("lang").to_pylist(), dtype=object)
    flat = table.column(column).combine_chunks()
    x = flat.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(langs), -1)
    return {lang: x[langs == lang] for lang in sorted(set(langs))}


def write_languages(data: dict[str, np.ndarray], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True, exist_ok=True)
    for lang, x in data.items():
        values = pa.array(x.reshape(-1), type=pa.float32())
        offsets = pa.array(np.arange(0, x.size + 1, x.shape[1], dtype=np.int32))
        table = pa.table(
            {
                "sample_id": pa.array([f"{lang}-{i:07d}" for i in range(len(x))]),
                "lang": pa.array([lang] * len(x)),
                "embedding": pa.ListArray.from_arrays(offsets, values),
            }
        )
        pq.write_table(table, path / f"{lang}.parquet")


def _backend_variants(backends: list[str]) -> list[tuple[str, str | None, str | None]]:
    """`spark:row:random` is the spark backend with Spark ML's row solver and a random start; a part
    left out (`spark`, `spark:block`) keeps the config's default (or --init-mode)."""
    out = []
    for item in backends:
        backend, solver, init = (item.split(":") + [None, None])[:3]
        out.append((backend, solver or None, init or None))
    return out


VARIANT_KEYS = ("backend", "solver", "init_mode", "parallel_fits", "fit_partitions")


def compare_to_faiss(runs: list[dict]) -> list[dict]:
    """Each non-faiss variant's fastest round against faiss's fastest, with the inertia difference."""
    fastest: dict[tuple, dict] = {}
    for r in runs:
        key = tuple(r.get(k) for k in VARIANT_KEYS)
        if key not in fastest or r["wall_seconds"] < fastest[key]["wall_seconds"]:
            fastest[key] = r
    ref = next((r for key, r in fastest.items() if key[0] == "faiss"), None)
    if ref is None:
        return []
    return [
        {
            **{k: r.get(k) for k in VARIANT_KEYS},
            "wall_seconds": r["wall_seconds"],
            "faiss_wall_seconds": ref["wall_seconds"],
            "time_ratio_to_faiss": round(r["wall_seconds"] / ref["wall_seconds"], 2),
            "inertia_diff_vs_faiss_percent": round(100 * (r["inertia"] / ref["inertia"] - 1), 3),
        }
        for key, r in fastest.items()
        if key[0] != "faiss"
    ]


def run_stage(args) -> int:
    """The cluster stage's own code on synthetic languages, per backend (and per parallel_fits for Spark)."""
    from pyspark.sql import functions as F

    from mdaq_spark.config import ClusteringConfig, SparkConfig
    from mdaq_spark.session import build_session
    from mdaq_spark.stages.cluster import cluster_by_language

    if args.vectors:  # real embeddings: a table with sample_id, lang and the vectors
        vectors = Path(args.vectors)
        data = real_languages(vectors, args.column)
        if args.replicate > 1:  # each language's real vectors, R noisy copies each: a 1M-row stage from a 100k run
            if not args.work:
                raise SystemExit("--replicate needs --work (a folder for the replicated vectors)")
            data = {lang: replicate(x, args.replicate, args.noise, args.seed) for lang, x in data.items()}
            vectors = Path(args.work) / "stage_vectors_replicated"
            write_languages(data, vectors)
            args.column = "embedding"
    else:
        if not args.work:
            raise SystemExit("--stage needs --work (a folder for the synthetic vectors) or --vectors")
        data = synthetic_languages(args.langs, args.rows_per_lang, args.dim, args.blobs, args.seed)
        vectors = Path(args.work) / "stage_vectors"
        write_languages(data, vectors)
    spark = build_session(
        SparkConfig(master=args.master, driver_memory=args.driver_memory, app_name="kmeans-stage-bench")
    )
    runs = []
    variants = [
        (backend, solver, init, parallel, partitions)
        for backend, solver, init in _backend_variants(args.backends)
        for parallel in (args.parallel_fits if backend != "faiss" else [1])
        for partitions in (args.fit_partitions if backend != "faiss" else [None])
    ]
    try:
        table = spark.read.parquet(str(vectors))
        embeddings = table.select("sample_id", "lang", F.col(args.column).alias("embedding"))
        # every variant once per round: the first round also pays the session's warm-up (Python
        # workers, imports, JIT), which a job's cluster stage never sees after its earlier stages
        for round_no, (backend, solver, init, parallel, partitions) in (
            (r, v) for r in range(1, args.rounds + 1) for v in variants
        ):
            fields = {"backend": backend, "max_iter": args.iters, "tol": args.tol, "k": args.k}
            if partitions is not None:
                fields["fit_partitions"] = partitions
            if args.fit_sample_max is not None:
                fields["fit_sample_max"] = args.fit_sample_max
            if args.local_fit_max is not None:
                fields["local_fit_max"] = args.local_fit_max
            if (init or args.init_mode) is not None:
                fields["init_mode"] = init or args.init_mode
            if solver is not None:
                fields["solver"] = solver
            if "parallel_fits" in ClusteringConfig.model_fields:  # absent before concurrent fits
                fields["parallel_fits"] = parallel
            cfg = ClusteringConfig(**fields)
            started = time.perf_counter()
            result = cluster_by_language(spark, embeddings, cfg, args.seed)
            centroids = result.centroids.collect()
            fit_s = time.perf_counter() - started
            started = time.perf_counter()
            result.assignments.write.format("noop").mode("overwrite").save()
            assign_s = time.perf_counter() - started
            per_lang = {}
            for lang, x in data.items():
                c = np.asarray(
                    [r["centroid"] for r in sorted(centroids, key=lambda r: r["cluster_id"]) if r["lang"] == lang]
                )
                per_lang[lang] = round(inertia(x, c), 3)
            run = {
                "round": round_no,
                "backend": backend,
                "solver": cfg.solver if backend == "spark" else None,
                "init_mode": cfg.init_mode if backend != "faiss" else None,
                "parallel_fits": parallel if backend != "faiss" else None,
                "fit_partitions": cfg.fit_partitions if backend != "faiss" else None,
                "fit_seconds": round(fit_s, 2),
                "assign_seconds": round(assign_s, 2),
                "wall_seconds": round(fit_s + assign_s, 2),
                "k_per_lang": result.k_per_lang,
                "inertia_per_lang": per_lang,
                "inertia": round(sum(per_lang.values()), 3),
            }
            runs.append(run)
            print(json.dumps(run), flush=True)
    finally:
        spark.stop()
    comparison = compare_to_faiss(runs)
    result = {
        "benchmark": "kmeans_stage",
        "command": " ".join(["python", *sys.argv]),
        "commit": code_commit() or "unknown",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "gpu": "none", "master": args.master},
        "vectors": str(args.vectors) if args.vectors else "synthetic",
        "replicated": {"times": args.replicate, "noise": args.noise} if args.vectors and args.replicate > 1 else None,
        "langs": len(data),
        "rows_per_lang": {lang: len(x) for lang, x in data.items()},
        "dim": next(iter(data.values())).shape[1],
        "blobs_per_lang": None if args.vectors else args.blobs,
        "fit_sample_max": args.fit_sample_max,
        "local_fit_max": args.local_fit_max,
        "init_mode": args.init_mode or "default",
        "k_rule": "ceil(sqrt(N / 2))" if args.k is None else args.k,
        "max_iter": args.iters,
        "tol": args.tol,
        "seed": args.seed,
        "inertia_definition": "per language, sum over its rows of the squared distance to the nearest centroid",
        "rounds": args.rounds,
        "comparison_rule": "each variant's fastest round against faiss's fastest round",
        "runs": runs,
        "comparison": comparison,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(comparison, indent=2))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", help="Parquet table with an array<float> column (not with --stage)")
    parser.add_argument(
        "--stage", action="store_true", help="time the cluster stage's own code (synthetic data unless --vectors)"
    )
    parser.add_argument("--fit-sample-max", type=int, default=None, help="--stage: clustering.fit_sample_max")
    parser.add_argument("--init-mode", default=None, help="--stage: clustering.init_mode (Spark ML's start)")
    parser.add_argument("--langs", type=int, default=4)
    parser.add_argument("--rows-per-lang", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--blobs", type=int, default=40, help="true groups per synthetic language")
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["spark", "faiss"],
        help="--stage: faiss, spark, or spark:<solver>[:<init mode>] (spark:row, spark:block:random, ...)",
    )
    parser.add_argument("--parallel-fits", type=int, nargs="+", default=[4], help="clustering.parallel_fits values")
    parser.add_argument(
        "--fit-partitions", type=int, nargs="+", default=[8], help="--stage: clustering.fit_partitions values"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="--stage: every variant this many times; ratios use the fastest"
    )
    parser.add_argument(
        "--local-fit-max", type=int, default=None, help="--stage: clustering.local_fit_max (0: every fit by Spark ML)"
    )
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--column", default="embedding")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--k", type=int, default=None, help="default: 100, or the stage's rule with --stage")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1, 1.0], help="faiss")
    parser.add_argument("--spark-fractions", type=float, nargs="+", default=[0.01, 0.1], help="Spark ML")
    parser.add_argument("--replicate", type=int, default=1, help="noisy copies of every real vector")
    parser.add_argument("--noise", type=float, default=0.1, help="noise norm relative to the unit vectors")
    parser.add_argument("--work", default=None, help="where the replicated vectors are written for Spark")
    parser.add_argument("--driver-memory", default="6g")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.stage:
        return run_stage(args)
    if not args.vectors:
        parser.error("--vectors is required without --stage")
    if args.k is None:
        args.k = 100

    started = time.perf_counter()
    x = load_matrix(args.vectors, args.column, args.limit)
    read_s = time.perf_counter() - started
    spark_vectors, spark_limit = args.vectors, args.limit
    if args.replicate > 1:
        if not args.work:
            parser.error("--replicate needs --work (a folder for the replicated vectors)")
        x = replicate(x, args.replicate, args.noise, args.seed)
        spark_vectors, spark_limit = str(Path(args.work) / "vectors"), None
        write_parquet(x, Path(spark_vectors), args.column)
    results: dict[str, list[dict]] = {"faiss": [], "spark_ml": []}
    for f in args.fractions:
        r = run_faiss(x, args.k, f, args.iters, args.seed)
        r["inertia"] = round(inertia(x, r.pop("centroids")), 2)
        r["fraction"] = f
        results["faiss"].append(r)
        print(json.dumps({"faiss": r}), flush=True)

    if args.spark_fractions:
        from mdaq_spark.config import SparkConfig
        from mdaq_spark.session import build_session

        spark = build_session(SparkConfig(driver_memory=args.driver_memory, app_name="kmeans-bench"))
        try:
            for f in args.spark_fractions:
                r = run_spark(
                    spark, spark_vectors, args.column, spark_limit, args.k, f, args.iters, args.tol, args.seed
                )
                r["inertia"] = round(inertia(x, r.pop("centroids")), 2)
                r["fraction"] = f
                results["spark_ml"].append(r)
                print(json.dumps({"spark_ml": r}), flush=True)
        finally:
            spark.stop()

    result = {
        "benchmark": "kmeans",
        "command": " ".join(["python", *sys.argv]),
        "commit": code_commit() or "unknown",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "gpu": "none"},
        "vectors": args.vectors,
        "replicated": {"times": args.replicate, "noise": args.noise} if args.replicate > 1 else None,
        "rows": int(x.shape[0]),
        "dim": int(x.shape[1]),
        "k": args.k,
        "iterations": args.iters,
        "numpy_read_seconds": round(read_s, 2),
        "inertia_definition": "sum over all rows of the squared distance to the nearest centroid (numpy, float64)",
        **results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
