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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", required=True, help="Parquet table with an array<float> column")
    parser.add_argument("--column", default="embedding")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--k", type=int, default=100)
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
