"""Stage outputs written atomically: to a temporary sibling first, renamed into place after.

A job killed mid-write leaves only a temporary directory behind, never a half-written
stage that a resumed run would mistake for a finished one. The rename goes through the
Hadoop FileSystem of the path, so it works the same on local disk, HDFS and cloud stores
that support rename.
"""

from __future__ import annotations

import logging
import uuid

from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


def filesystem(spark: SparkSession, path: str):
    """(Hadoop FileSystem, Hadoop Path) of `path`: the same calls on local disk, HDFS and object stores."""
    jvm = spark.sparkContext._jvm
    jpath = jvm.org.apache.hadoop.fs.Path(path)
    return jpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), jpath


def exists(spark: SparkSession, path: str) -> bool:
    fs, jpath = filesystem(spark, path)
    return bool(fs.exists(jpath))


def delete(spark: SparkSession, path: str) -> None:
    fs, jpath = filesystem(spark, path)
    if fs.exists(jpath):
        fs.delete(jpath, True)


def rename(spark: SparkSession, src: str, dst: str) -> None:
    fs, jsrc = filesystem(spark, src)
    _, jdst = filesystem(spark, dst)
    if not fs.rename(jsrc, jdst):
        raise OSError(f"could not rename {src} to {dst}")


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """A small file (a plan, a marker) through the same FileSystem as the tables beside it."""
    fs, jpath = filesystem(spark, path)
    stream = fs.create(jpath, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()


def read_text(spark: SparkSession, path: str) -> str:
    fs, jpath = filesystem(spark, path)
    stream = fs.open(jpath)
    try:
        return str(spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
    finally:
        stream.close()


def _visible_children(spark: SparkSession, path: str) -> list[str]:
    """A table folder's partition folders and data files: every entry but its _SUCCESS marker and hidden ones."""
    fs, jpath = filesystem(spark, path)
    names = sorted(s.getPath().getName() for s in fs.listStatus(jpath))
    return [f"{path.rstrip('/')}/{n}" for n in names if not n.startswith(("_", "."))]


def _has_data(spark: SparkSession, path: str) -> bool:
    """Whether a table folder holds anything but its _SUCCESS marker (a partition folder or a data file)."""
    return bool(_visible_children(spark, path))


def parquet_rows(spark: SparkSession, path: str) -> int:
    """Rows of a Parquet folder just written, from its files' footers (no data page is read); 0 when it has none.

    The folder is read through its children (partition folders or data files): a store's
    staging folder is named `_tmp_...` so readers skip it, and Spark warns when it is named
    as an input itself.
    """
    children = _visible_children(spark, path)
    if not children:
        return 0
    return spark.read.option("basePath", path).parquet(*children).count()


def write_table(df: DataFrame, path: str, *, partition_by: tuple[str, ...] = (), file_format: str = "parquet") -> None:
    """Replace the table at `path` with `df`, atomically at directory level."""
    spark = df.sparkSession
    tmp = f"{path.rstrip('/')}._tmp_{uuid.uuid4().hex[:8]}"
    writer = df.write.mode("overwrite").format(file_format)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.save(tmp)
    if partition_by and not _has_data(spark, tmp):
        # no row, so no partition folder and no file: readers could not even find the columns.
        # Unpartitioned, Spark writes one empty file that carries them
        df.limit(0).write.mode("overwrite").format(file_format).save(tmp)
    delete(spark, path)
    rename(spark, tmp, path)
    log.debug("wrote %s", path)
