"""Model outputs kept across runs, keyed by (sample_id or exchange_id, fingerprint).

Why: the encoder is the whole cost of the job (~99% of a CPU run), and a scheduled refresh
of a corpus that grew by 5% should pay for the 5% only. A sample_id is a hash of the
sample's content and a fingerprint names the exact model weights and settings, so a stored
row is valid for as long as both match, whatever run wrote it.

Layout: `<store>/batch=<n>/lang=<xx>/part-*.parquet`. A batch is written under a `_tmp`
name (which Spark's reader ignores) and committed by one directory rename, so a job killed
mid-stage leaves whole batches or nothing, and the rows already committed are not computed
again when it restarts. Pending rows are found by an anti-join against every committed
batch, so no (sample_id, fingerprint) pair is ever stored twice.

Compaction (`mdaq compact`) rewrites the rows worth keeping (the current fingerprint, the
current corpus) as one new batch. The many batches of a long refresh history become one,
and rows of old models or of samples that left the corpus go. It cannot be one rename, so
it is rolled forward. A plan file names the batches being replaced and the batch replacing
them. Once that batch is committed, readers skip the replaced ones at once, and the next
sweep deletes them. A compaction killed before its commit leaves the old batches untouched.
"""

from __future__ import annotations

import json
import logging
import uuid

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.io import writers

log = logging.getLogger(__name__)

BATCH = "batch"
COMPACTION_PLAN = "_compaction.json"  # {"replaces": [batch numbers], "into": batch number}


def _keyed(rows: DataFrame, key: str) -> DataFrame:
    """Rows an earlier version stored per sample serve as exchange rows: a sample with nothing but its
    first exchange (and any turns before the question) has that exchange's id as its sample_id, and
    its stored encoding is of exactly the text the exchange is encoded from. Any other sample_id
    matches no exchange id, so its rows are never read."""
    if key == S.SAMPLE_ID or S.SAMPLE_ID not in rows.columns:
        return rows
    if key not in rows.columns:
        return rows.withColumnRenamed(S.SAMPLE_ID, key)
    return rows.withColumn(key, F.coalesce(F.col(key), F.col(S.SAMPLE_ID))).drop(S.SAMPLE_ID)


class ModelStore:
    def __init__(
        self,
        spark: SparkSession,
        path: str,
        fingerprint_column: str,
        merge_schema: bool = False,
        key: str = S.SAMPLE_ID,
        complete: str | None = None,
    ) -> None:
        self.spark = spark
        self.path = path.rstrip("/")
        self.fingerprint_column = fingerprint_column
        self.key = key  # the content hash a stored row belongs to: a sample's, or an exchange's
        # a column an earlier version did not write: its rows (null there) are no result of this one
        self.complete = complete
        self.merge_schema = merge_schema  # batches may differ in columns: read the union (one footer job more)

    def _listed_batches(self) -> list[int]:
        fs, jpath = writers.filesystem(self.spark, self.path)
        if not fs.exists(jpath):
            return []
        names = [status.getPath().getName() for status in fs.listStatus(jpath) if status.isDirectory()]
        return sorted(int(n.split("=", 1)[1]) for n in names if n.startswith(f"{BATCH}="))

    def _batch_path(self, number: int) -> str:
        return f"{self.path}/{BATCH}={number:06d}"

    def _plan(self) -> dict | None:
        fs, jpath = writers.filesystem(self.spark, f"{self.path}/{COMPACTION_PLAN}")
        if not fs.exists(jpath):
            return None
        return json.loads(writers.read_text(self.spark, f"{self.path}/{COMPACTION_PLAN}"))

    def batches(self) -> list[int]:
        """Committed batches; those a committed compaction replaced no longer count, deleted or not."""
        listed = self._listed_batches()
        plan = self._plan()
        if plan is not None and plan["into"] in listed:
            replaced = set(plan["replaces"])
            listed = [n for n in listed if n not in replaced]
        return listed

    def read_all(self) -> DataFrame | None:
        """Every committed row, whatever its fingerprint, or None when nothing is stored."""
        numbers = self.batches()
        if not numbers:
            return None
        paths = [self._batch_path(n) for n in numbers]
        reader = self.spark.read.option("basePath", self.path)
        if self.merge_schema:
            reader = reader.option("mergeSchema", "true")
        return _keyed(reader.parquet(*paths).drop(BATCH), self.key)

    def rows(self, fingerprint: str) -> DataFrame | None:
        """Every committed row of this fingerprint, or None when nothing is stored."""
        stored = self.read_all()
        if stored is None:
            return None
        if self.complete is not None:
            written = F.col(self.complete).isNotNull() if self.complete in stored.columns else F.lit(False)
            stored = stored.where(written)
        return stored.where(F.col(self.fingerprint_column) == fingerprint)

    def pending(self, wanted: DataFrame, fingerprint: str) -> DataFrame:
        """The rows of `wanted` (with the store's key) that have no stored result for this fingerprint."""
        stored = self.rows(fingerprint)
        if stored is None:
            return wanted
        return wanted.join(stored.select(self.key), on=self.key, how="left_anti")

    def view(self, ids: DataFrame, fingerprint: str) -> DataFrame:
        """The stored rows of exactly these keys: what later stages read as the stage's table."""
        stored = self.rows(fingerprint)
        if stored is None:
            raise FileNotFoundError(f"nothing stored at {self.path} for fingerprint {fingerprint}")
        return stored.join(ids.select(self.key), on=self.key, how="left_semi")

    def _write_uncommitted(self, df: DataFrame, partition_by: tuple[str, ...]) -> str:
        """Write `df` under a `_tmp_` name, invisible to readers until renamed; returns the path."""
        tmp = f"{self.path}/_tmp_{uuid.uuid4().hex[:8]}"
        writer = df.write.mode("overwrite").format("parquet")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        writer.save(tmp)
        return tmp

    def commit_counted(self, df: DataFrame, partition_by: tuple[str, ...] = (S.LANG,)) -> tuple[int | None, int]:
        """Write `df` as the next batch and count its rows from the files' footers: (batch, rows).

        One pass over `df` instead of a count before the write: for a DataFrame built by joins
        over the whole corpus, every evaluation repeats them. An empty result commits nothing
        (batch None).
        """
        tmp = self._write_uncommitted(df, partition_by)
        rows = writers.parquet_rows(self.spark, tmp)
        if rows == 0:
            writers.delete(self.spark, tmp)
            return None, 0
        return self._commit_written(tmp), rows

    def commit(self, df: DataFrame, partition_by: tuple[str, ...] = (S.LANG,)) -> int:
        """Write `df` as the next batch; returns its number. The rename is the commit."""
        return self._commit_written(self._write_uncommitted(df, partition_by))

    def _commit_written(self, tmp: str) -> int:
        """Rename a written `_tmp_` folder to the next batch: the commit; returns the batch's number."""
        number = max(self.batches(), default=-1) + 1
        writers.rename(self.spark, tmp, self._batch_path(number))
        log.debug("committed batch %d to %s", number, self.path)
        return number

    def compact(self, keep: DataFrame, partition_by: tuple[str, ...] = (S.LANG,)) -> dict:
        """Replace every batch by one holding exactly `keep` (rows read from this store).

        Returns the counts before and after. The caller decides what to keep; see
        `mdaq_spark.pipeline.compact` for the usual choice (current fingerprint, current corpus).
        """
        self.sweep()
        replaced = self.batches()
        if not replaced:
            return {"batches_before": 0, "rows_before": 0, "rows_after": 0}
        rows_before = self.read_all().count()
        into = max(self._listed_batches()) + 1
        tmp = self._write_uncommitted(keep, partition_by)
        writers.write_text(
            self.spark, f"{self.path}/{COMPACTION_PLAN}", json.dumps({"replaces": replaced, "into": into})
        )
        writers.rename(self.spark, tmp, self._batch_path(into))  # the commit: readers now see only `into`
        self.sweep()  # deletes the replaced batches and the plan
        rows_after = self.read_all().count()
        log.info(
            "compacted %s: %d batches, %d rows -> 1 batch, %d rows", self.path, len(replaced), rows_before, rows_after
        )
        return {"batches_before": len(replaced), "rows_before": rows_before, "rows_after": rows_after}

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
        """Remove what a killed job left: uncommitted batches, and the leftovers of a compaction.

        One writer per store at a time. A compaction whose new batch is committed is finished
        (its replaced batches deleted); one that never committed is forgotten.
        """
        fs, jpath = writers.filesystem(self.spark, self.path)
        if not fs.exists(jpath):
            return
        for status in fs.listStatus(jpath):
            if status.getPath().getName().startswith("_tmp_"):
                fs.delete(status.getPath(), True)
        plan = self._plan()
        if plan is None:
            return
        if plan["into"] in self._listed_batches():
            for number in plan["replaces"]:
                writers.delete(self.spark, self._batch_path(number))
        writers.delete(self.spark, f"{self.path}/{COMPACTION_PLAN}")

    def clear(self) -> None:
        writers.delete(self.spark, self.path)
