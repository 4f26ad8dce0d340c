"""Delta Lake input and output without a JVM-side Delta install when none is there.

On a cluster with delta-spark on the classpath (`--packages io.delta:delta-spark_2.13:4.x`,
or jars in the image) Spark reads the table itself. Offline, where those jars cannot be
fetched, delta-rs (`deltalake`, pure Rust, from PyPI) resolves the table's current snapshot
to its Parquet files and Spark reads those: same rows, no Maven. Deletion vectors and
column mapping need the delta-spark path; delta-rs refuses such tables with its own error.

Output is the selected subset as one Delta table that every refresh MERGEs into on
sample_id (new picks inserted, changed ones updated, dropped ones deleted), so consumers
read one table with a version per refresh and can time-travel to the previous selection.
With delta-spark the executors do the merge; offline, delta-rs does it in the driver,
streaming the staged Parquet batch by batch (the selected subset, never the corpus).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from mdaq_spark.errors import DependencyError, InputError


def spark_has_delta(spark: SparkSession) -> bool:
    return "DeltaSparkSessionExtension" in spark.conf.get("spark.sql.extensions", "")


def delta_files(path: str) -> list[str]:
    """The data files of the table's current version, resolved by delta-rs (no JVM)."""
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
    return files


def read_delta(spark: SparkSession, path: str) -> DataFrame:
    if spark_has_delta(spark):
        return spark.read.format("delta").load(path)
    files = delta_files(path)
    # basePath keeps partition columns, which Delta stores only in the directory names
    return spark.read.option("basePath", path).parquet(*files)


def merge_on_key(staged: DataFrame, staged_path: str, target: str, key: str, partition_by: tuple[str, ...]) -> dict:
    """Make the Delta table at `target` equal to `staged` (already written at `staged_path`) by MERGE on `key`."""
    spark = staged.sparkSession
    if spark_has_delta(spark):
        return _merge_with_delta_spark(staged, target, key, partition_by)
    return _merge_with_delta_rs(staged_path, target, key, partition_by)


def _merge_with_delta_spark(staged: DataFrame, target: str, key: str, partition_by: tuple[str, ...]) -> dict:
    from delta.tables import DeltaTable

    spark = staged.sparkSession
    if not DeltaTable.isDeltaTable(spark, target):
        staged.write.format("delta").partitionBy(*partition_by).save(target)
    else:
        (
            DeltaTable.forPath(spark, target)
            .alias("t")
            .merge(staged.alias("s"), f"t.{key} = s.{key}")
            .whenMatchedUpdateAll()
            .whenNotMatchedInsertAll()
            .whenNotMatchedBySourceDelete()
            .execute()
        )
    version = DeltaTable.forPath(spark, target).history(1).select("version").first()[0]
    return {"engine": "delta-spark", "version": int(version)}


def _merge_with_delta_rs(staged_path: str, target: str, key: str, partition_by: tuple[str, ...]) -> dict:
    import pyarrow.dataset as ds

    try:
        from deltalake import DeltaTable, write_deltalake
        from deltalake.exceptions import TableNotFoundError
    except ImportError as exc:
        raise DependencyError(
            "output.format=delta needs delta-spark on the cluster or `pip install deltalake` (extra [delta])"
        ) from exc
    source = ds.dataset(staged_path, format="parquet", partitioning="hive")
    reader = source.scanner(batch_size=4096).to_reader()
    try:
        table = DeltaTable(target)
    except TableNotFoundError:
        write_deltalake(target, reader, partition_by=list(partition_by) or None)
        return {"engine": "delta-rs", "version": int(DeltaTable(target).version()), "created": True}
    metrics = (
        table.merge(reader, predicate=f"t.{key} = s.{key}", source_alias="s", target_alias="t")
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .when_not_matched_by_source_delete()
        .execute()
    )
    wanted = ("num_target_rows_inserted", "num_target_rows_updated", "num_target_rows_deleted")
    return {"engine": "delta-rs", "version": int(DeltaTable(target).version()), **{k: metrics.get(k) for k in wanted}}
