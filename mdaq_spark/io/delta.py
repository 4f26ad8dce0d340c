"""Delta Lake input and output through delta-spark, or through delta-rs where the session has no Delta.

With delta-spark in the session (its jars from the jar folder, `--packages` or the cluster's
image, and its session extension) Spark reads and MERGEs the table itself. Without it,
delta-rs (`deltalake`, pure Rust, from PyPI) resolves the table's current snapshot to its
Parquet files and Spark reads those: the same rows, no JVM package. A snapshot's file list
is not its rows when deletion vectors or column mapping are in use, so delta-rs refuses such
tables (exit 3, naming the table) instead of reading deleted rows back. `spark.delta_engine`
picks the engine (auto: delta-spark when the session has it); the choice is a session
setting, so every reader of a Delta table in the job (input, selected/, diff, export) follows it.

Output is the selected subset as one Delta table that every refresh MERGEs into on
sample_id (new picks inserted, changed ones updated, dropped ones deleted), so consumers
read one table with a version per refresh and can time-travel to the previous selection.
With delta-spark the executors do the merge; offline, delta-rs does it in the driver,
streaming the staged Parquet batch by batch (the selected subset, never the corpus).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from mdaq_spark.errors import DependencyError, InputError
from mdaq_spark.io import writers

ENGINE_CONF = "spark.mdaq.deltaEngine"
DELTA_SPARK = "delta-spark"
DELTA_RS = "delta-rs"
# reader features under which a snapshot's Parquet files hold other rows or other column names
_NEEDS_DELTA_SPARK = ("deletionVectors", "columnMapping")


def spark_has_delta(spark: SparkSession) -> bool:
    return "DeltaSparkSessionExtension" in (spark.conf.get("spark.sql.extensions", "") or "")


def use_engine(spark: SparkSession, wanted: str) -> str:
    """Set the session's Delta engine (auto | delta-spark | delta-rs); returns the one in effect."""
    spark.conf.set(ENGINE_CONF, wanted)
    return engine(spark)


def engine(spark: SparkSession) -> str:
    wanted = spark.conf.get(ENGINE_CONF, "auto") or "auto"
    has_delta = spark_has_delta(spark)
    if wanted == DELTA_SPARK and not has_delta:
        raise DependencyError(
            "spark.delta_engine: delta-spark, but this Spark session has no Delta Lake: run `mdaq jars fetch delta` "
            "(a local session loads it), or give spark-submit --packages io.delta:delta-spark_<spark>_2.13:<version> "
            "with spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension"
        )
    return DELTA_SPARK if wanted == DELTA_SPARK or (wanted == "auto" and has_delta) else DELTA_RS


def _is_delta_table(spark: SparkSession, path: str) -> bool:
    """A transaction log is what makes a folder a Delta table, whichever engine wrote it."""
    return writers.exists(spark, f"{path.rstrip('/')}/_delta_log")


def delta_files(path: str) -> list[str]:
    """The data files of the table's current version, resolved by delta-rs (no JVM)."""
    try:
        from deltalake import DeltaTable
    except ImportError as exc:
        raise DependencyError(
            "reading Delta input needs delta-spark on the cluster or `pip install deltalake` (extra [delta])"
        ) from exc
    try:
        table = DeltaTable(path)
        features = set(table.protocol().reader_features or ())
        files = table.file_uris()
    except Exception as exc:  # delta-rs raises its own error types for a missing or unreadable log
        raise InputError(f"{path}: cannot read the Delta table: {exc}") from exc
    blocking = sorted(features.intersection(_NEEDS_DELTA_SPARK))
    if blocking:
        raise InputError(
            f"{path}: the Delta table uses {', '.join(blocking)}, which the delta-rs engine cannot apply to its "
            "files: read it with delta-spark (`mdaq jars fetch delta`, spark.delta_engine: auto)"
        )
    if not files:
        raise InputError(f"{path}: the Delta table's current version has no data files")
    return files


def read_delta(spark: SparkSession, path: str) -> DataFrame:
    if engine(spark) == DELTA_SPARK:
        return spark.read.format("delta").load(path)
    files = delta_files(path)
    # basePath keeps partition columns, which Delta stores only in the directory names
    return spark.read.option("basePath", path).parquet(*files)


def merge_on_key(staged: DataFrame, staged_path: str, target: str, key: str, partition_by: tuple[str, ...]) -> dict:
    """Make the Delta table at `target` equal to `staged` (already written at `staged_path`) by MERGE on `key`.

    A `target` that holds something else (a Parquet selected/ of a run before output.format
    became delta) is replaced by a new table: there is nothing to merge into.
    """
    exists = _is_delta_table(staged.sparkSession, target)
    if not exists:
        writers.delete(staged.sparkSession, target)
    if engine(staged.sparkSession) == DELTA_SPARK:
        return _merge_with_delta_spark(staged, target, key, partition_by, exists)
    return _merge_with_delta_rs(staged_path, target, key, partition_by, exists)


# MERGE's row counts, named as delta-rs names them, so a run's stats read alike whichever engine wrote
_MERGE_COUNTS = ("Inserted", "Updated", "Deleted")


def _merge_with_delta_spark(
    staged: DataFrame, target: str, key: str, partition_by: tuple[str, ...], exists: bool
) -> dict:
    from delta.tables import DeltaTable

    spark = staged.sparkSession
    if not exists:
        staged.write.format("delta").partitionBy(*partition_by).save(target)
        version = DeltaTable.forPath(spark, target).history(1).select("version").first()[0]
        return {"engine": DELTA_SPARK, "version": int(version), "created": True}
    (
        DeltaTable.forPath(spark, target)
        .alias("t")
        .merge(staged.alias("s"), f"t.{key} = s.{key}")
        .whenMatchedUpdateAll()
        .whenNotMatchedInsertAll()
        .whenNotMatchedBySourceDelete()
        .execute()
    )
    last = DeltaTable.forPath(spark, target).history(1).select("version", "operationMetrics").first()
    metrics = last["operationMetrics"] or {}
    counts = {f"num_target_rows_{k.lower()}": int(metrics.get(f"numTargetRows{k}", 0)) for k in _MERGE_COUNTS}
    return {"engine": DELTA_SPARK, "version": int(last["version"]), **counts}


def _merge_with_delta_rs(staged_path: str, target: str, key: str, partition_by: tuple[str, ...], exists: bool) -> dict:
    import pyarrow.dataset as ds

    try:
        from deltalake import DeltaTable, write_deltalake
    except ImportError as exc:
        raise DependencyError(
            "output.format=delta needs delta-spark on the cluster or `pip install deltalake` (extra [delta])"
        ) from exc
    source = ds.dataset(staged_path, format="parquet", partitioning="hive")
    reader = source.scanner(batch_size=4096).to_reader()
    if not exists:
        write_deltalake(target, reader, partition_by=list(partition_by) or None)
        return {"engine": DELTA_RS, "version": int(DeltaTable(target).version()), "created": True}
    metrics = (
        DeltaTable(target)
        .merge(reader, predicate=f"t.{key} = s.{key}", source_alias="s", target_alias="t")
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .when_not_matched_by_source_delete()
        .execute()
    )
    wanted = [f"num_target_rows_{k.lower()}" for k in _MERGE_COUNTS]
    return {"engine": DELTA_RS, "version": int(DeltaTable(target).version()), **{k: metrics.get(k) for k in wanted}}
