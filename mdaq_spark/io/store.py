"""Model outputs kept across runs, keyed by (sample_id, fingerprint).

Why: the encoder is the whole cost of the job (~99% of a CPU run), and a scheduled refresh
of a corpus that grew by 5% should pay for the 5% only. A sample_id is a hash of the
sample's content and a fingerprint names the exact model weights and settings, so a stored
row is valid for as long as both match, whatever run wrote it.

Layout: `<store>/batch=<n>/lang=<xx>/part-*.parquet`. A batch is written under a `_tmp`
name (which Spark's reader ignores) and committed by one directory rename, so a job killed
mid-stage leaves whole batches or nothing, and the rows already committed are not computed
again when it restarts. Pending rows are found by an anti-join against every committed
batch, so no (sample_id, fingerprint) pair is ever stored twice.
"""

from __future__ import annotations

import logging
import uuid

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.io import writers

log = logging.getLogger(__name__)

BATCH = "batch"


class ModelStore:
    def __init__(self, spark: SparkSession, path: str, fingerprint_column: str) -> None:
        self.spark = spark
        self.path = path.rstrip("/")
        self.fingerprint_column = fingerprint_column

    def batches(self) -> list[int]:
        fs, jpath = writers.filesystem(self.spark, self.path)
        if not fs.exists(jpath):
            return []
        names = [status.getPath().getName() for status in fs.listStatus(jpath) if status.isDirectory()]
        return sorted(int(n.split("=", 1)[1]) for n in names if n.startswith(f"{BATCH}="))

    def rows(self, fingerprint: str) -> DataFrame | None:
        """Every committed row of this fingerprint, or None when nothing is stored."""
        if not self.batches():
            return None
        stored = self.spark.read.option("basePath", self.path).parquet(self.path)
        return stored.where(F.col(self.fingerprint_column) == fingerprint).drop(BATCH)

    def pending(self, wanted: DataFrame, fingerprint: str) -> DataFrame:
        """The rows of `wanted` (keyed by sample_id) that have no stored result for this fingerprint."""
        stored = self.rows(fingerprint)
        if stored is None:
            return wanted
        return wanted.join(stored.select(S.SAMPLE_ID), on=S.SAMPLE_ID, how="left_anti")

    def view(self, ids: DataFrame, fingerprint: str) -> DataFrame:
        """The stored rows of exactly these sample_ids: what later stages read as the stage's table."""
        stored = self.rows(fingerprint)
        if stored is None:
            raise FileNotFoundError(f"nothing stored at {self.path} for fingerprint {fingerprint}")
        return stored.join(ids.select(S.SAMPLE_ID), on=S.SAMPLE_ID, how="left_semi")

    def commit(self, df: DataFrame, partition_by: tuple[str, ...] = (S.LANG,)) -> int:
        """Write `df` as the next batch; returns its number. The rename is the commit."""
        number = max(self.batches(), default=-1) + 1
        tmp = f"{self.path}/_tmp_{uuid.uuid4().hex[:8]}"
        writer = df.write.mode("overwrite").format("parquet")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        writer.save(tmp)
        writers.rename(self.spark, tmp, f"{self.path}/{BATCH}={number:06d}")
        log.debug("committed batch %d to %s", number, self.path)
        return number

    def adopt_unbatched(self) -> None:
        """A table written whole by an earlier version (no batch= level) becomes batch 0, not lost work."""
        fs, jpath = writers.filesystem(self.spark, self.path)
        if not fs.exists(jpath) or self.batches():
            return
        names = [status.getPath().getName() for status in fs.listStatus(jpath)]
        if not any(n.startswith(f"{S.LANG}=") or n.endswith(".parquet") for n in names):
            return
        moved = f"{self.path}._adopt_{uuid.uuid4().hex[:8]}"
        writers.rename(self.spark, self.path, moved)
        fs.mkdirs(jpath)
        writers.rename(self.spark, moved, f"{self.path}/{BATCH}={0:06d}")
        log.info("adopted %s as batch 0 of its store", self.path)

    def sweep(self) -> None:
        """Remove batches a killed job left uncommitted (one writer per store at a time)."""
        fs, jpath = writers.filesystem(self.spark, self.path)
        if fs.exists(jpath):
            for status in fs.listStatus(jpath):
                if status.getPath().getName().startswith("_tmp_"):
                    fs.delete(status.getPath(), True)

    def clear(self) -> None:
        writers.delete(self.spark, self.path)
