"""Model stages compute only what their store lacks, in batches committed one by one.

Batches are fixed by the corpus (a hash of sample_id modulo a count from the corpus size),
not by what is left to do, so a restarted job computes the missing batches with exactly
the rows, partitions and order an uninterrupted run would have used: the stored floats are
the same bit for bit. The pending rows are staged once, partitioned by batch, so each
batch reads its own files instead of re-deriving them from the corpus.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from pyspark import Accumulator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.config import ModelConfig, SparkConfig
from mdaq_spark.io import writers
from mdaq_spark.rundir import NORMALIZED, STAGE_OF, STORE_FINGERPRINT
from mdaq_spark.stages.base import Stage, StageContext, Table, digest

log = logging.getLogger(__name__)

BATCH = "mdaq_batch"  # a partition column: a leading "_" would hide its folders from Spark


def progress(ctx: StageContext, stage: str, done: int, total: int, seconds: float) -> None:
    rate = done / seconds if seconds > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else 0.0
    log.info("stage %-8s %d/%d rows committed, %.1f rows/s, about %.0fs left", stage, done, total, rate, eta)
    if ctx.on_progress is not None:
        ctx.on_progress(stage, done, total)


def compute_missing(
    ctx: StageContext,
    name: str,
    wanted: DataFrame,
    fingerprint: str,
    compute: Callable[[DataFrame, Accumulator], DataFrame],
    tasks: SparkConfig,
    rows_per_commit: int | None,
    shuffle: bool = True,
    key: str = S.SAMPLE_ID,
) -> dict:
    """Run `compute` on the wanted rows that store `name` lacks; returns the stage's marker info.

    `rows_per_commit=None` commits everything at once (cheap stages: a rerun costs little).
    `shuffle=False` hands `compute` the rows as they are partitioned: for a computation whose
    result for a row does not depend on the other rows of its batch (scoring), the shuffle
    into `rows_per_model_task` tasks would only move every stored vector across the network.
    `key` is the store's key column (sample_id, or exchange_id for the per-exchange stores).
    """
    spark = ctx.spark
    store = ctx.rundir.store(name)
    if ctx.overwrite:
        store.clear()
    store.sweep()
    if rows_per_commit is None and not shuffle:
        return _commit_at_once(ctx, name, store, wanted, fingerprint, compute)
    total = wanted.count()
    n_batches = max(1, math.ceil(total / rows_per_commit)) if rows_per_commit else 1
    pending = store.pending(wanted, fingerprint).withColumn(BATCH, F.pmod(F.xxhash64(key), F.lit(n_batches)))
    # counted before staging: nothing pending (a job killed after its last commit) stages nothing
    todo = {r[BATCH]: r["count"] for r in pending.groupBy(BATCH).count().collect()}
    staged = ctx.rundir.staging(f"{name}_pending")
    if n_batches > 1 and todo:
        writers.write_table(pending, staged, partition_by=(BATCH,))
        pending = spark.read.parquet(staged)
    counter = spark.sparkContext.accumulator(0)
    started, done = time.perf_counter(), 0
    batches = sorted(b for b, rows in todo.items() if rows)
    for i, batch in enumerate(batches, start=1):
        rows = todo[batch]
        n_tasks = max(tasks.min_model_tasks, math.ceil(rows / tasks.rows_per_model_task))
        part = pending.where(F.col(BATCH) == batch).drop(BATCH)
        part = part.repartition(n_tasks, key) if shuffle else part
        spark.sparkContext.setJobDescription(f"mdaq {STAGE_OF[name]}: batch {i}/{len(batches)} ({rows} rows)")
        store.commit(compute(part, counter).withColumn(STORE_FINGERPRINT[name], F.lit(fingerprint)))
        done += rows
        progress(ctx, STAGE_OF[name], done, sum(todo.values()), time.perf_counter() - started)
    spark.sparkContext.setJobDescription(None)
    writers.delete(spark, staged)
    return _marker_info(name, fingerprint, total, sum(todo.values()), counter, len(batches))


def _marker_info(name: str, fingerprint: str, total: int, computed: int, counter: Accumulator, batches: int) -> dict:
    """What a model stage's marker says of its store: rows wanted, computed, reused, batches committed."""
    return {
        STORE_FINGERPRINT[name]: fingerprint,
        "rows": total,
        "computed": computed,
        "reused": total - computed,
        "rows_through_model_udf": int(counter.value),
        "batches_committed": batches,
    }


def _commit_at_once(ctx: StageContext, name: str, store, wanted: DataFrame, fingerprint: str, compute) -> dict:
    """One commit of everything pending, counted from the files it wrote: the plan runs once.

    Counting first (the wanted rows, then the pending ones) would run a plan of joins over the
    whole corpus three times. The wanted rows are counted only when some were stored before.
    """
    spark = ctx.spark
    stored = store.rows(fingerprint)
    pending = store.pending(wanted, fingerprint)
    counter = spark.sparkContext.accumulator(0)
    started = time.perf_counter()
    spark.sparkContext.setJobDescription(f"mdaq {STAGE_OF[name]}: one batch")
    number, computed = store.commit_counted(
        compute(pending, counter).withColumn(STORE_FINGERPRINT[name], F.lit(fingerprint))
    )
    spark.sparkContext.setJobDescription(None)
    total = computed if stored is None else wanted.count()
    if computed:
        progress(ctx, STAGE_OF[name], computed, computed, time.perf_counter() - started)
    return _marker_info(name, fingerprint, total, computed, counter, 0 if number is None else 1)


@dataclass(frozen=True)
class CorpusModelStage(Stage):
    """A model over the corpus's own texts (encode, embed): keyed by the corpus content and the model."""

    model: ModelConfig
    tasks: SparkConfig
    location: str  # the prepared model's directory
    fingerprint: str  # the model's fingerprint: which stored rows are this model's
    content: str  # the ingested corpus's content digest

    @property
    def requires(self) -> tuple[Table, ...]:
        return (Table(NORMALIZED, (S.SAMPLE_ID, S.LANG, S.INSTRUCTION, S.INPUT, S.RESPONSE)),)

    def key(self) -> str:
        return digest(self.content, self.fingerprint)
