"""Delta Lake input without a JVM-side Delta install when none is there.

On a cluster with delta-spark on the classpath (`--packages io.delta:delta-spark_2.13:4.x`,
or jars in the image) Spark reads the table itself. Offline, where those jars cannot be
fetched, delta-rs (`deltalake`, pure Rust, from PyPI) resolves the table's current snapshot
to its Parquet files and Spark reads those: same rows, no Maven. Deletion vectors and
column mapping need the delta-spark path; delta-rs refuses such tables with its own error.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from mdaq_spark.errors import DependencyError, InputError


def spark_has_delta(spark: SparkSession) -> bool:
    return "DeltaSparkSessionExtension" in spark.conf.get("spark.sql.extensions", "")


def read_delta(spark: SparkSession, path: str) -> DataFrame:
    if spark_has_delta(spark):
        return spark.read.format("delta").load(path)
    try:
        from deltalake import DeltaTable
    except ImportError as exc:
        raise DependencyError(
            "reading Delta input needs delta-spark on the cluster or `pip install deltalake` (extra [delta])"
        ) from exc
    try:
        files = DeltaTable(path).file_uris()
    except Exception as exc:  # delta-rs raises its own error types for a missing or unreadable log
        raise InputError(f"{path}: cannot read the Delta table: {exc}") from exc
    if not files:
        raise InputError(f"{path}: the Delta table's current version has no data files")
    return spark.read.parquet(*files)
