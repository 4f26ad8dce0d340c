"""Compact a run's model-output store: one batch per store, holding only rows still of use.

A scheduled refresh commits a batch per run, and the store never forgets on its own: a new
encoder or QSM head leaves the old fingerprint's rows behind, and samples that left the
corpus keep theirs. Reading cost grows with the number of batch directories and files, and
the disk holds every model ever used. Compaction keeps, by default, the rows of the
fingerprints the run last used, for the samples of the run's current corpus. Each store is
rewritten through `ModelStore.compact`, which a killed job can never leave half done.
"""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.errors import InputError
from mdaq_spark.io.store import ModelStore
from mdaq_spark.rundir import (
    EXCHANGE_SCORES,
    MERGED_SCHEMA,
    NORMALIZED,
    STAGE_OF,
    STORE_FINGERPRINT,
    STORE_KEY,
    RunDir,
)
from mdaq_spark.stages.exchanges import exchange_ids


def current_fingerprints(rundir: RunDir, name: str) -> list[str] | None:
    """The fingerprints a run's last finished model stage wrote to store `name`, from its marker.

    The exchange scores hold one per scorer.
    """
    marker = rundir.marker(STAGE_OF[name])
    if marker is None:
        return None
    info = marker.get("info", {})
    if name == EXCHANGE_SCORES:
        return [s["fingerprint"] for s in info.get("scorers", {}).values()] or None
    return [info[STORE_FINGERPRINT[name]]] if info.get(STORE_FINGERPRINT[name]) else None


def compact_run(
    spark: SparkSession,
    run_dir: str,
    store_root: str | None = None,
    *,
    all_fingerprints: bool = False,
    keep_absent: bool = False,
) -> dict[str, dict]:
    """Compact every store of a finished run; returns the counts per store.

    `all_fingerprints` keeps the rows of every model (e.g. to switch back to an old head
    without re-scoring); `keep_absent` keeps samples that are no longer in the run's corpus
    (e.g. when several corpora share one store).
    """
    rundir = RunDir(run_dir, store_root, spark)
    corpus = None
    if not keep_absent:
        if not rundir.exists(NORMALIZED):
            raise InputError(f"{run_dir} has no {NORMALIZED}/ table: pass --keep-absent or a finished run directory")
        normalized = rundir.table(NORMALIZED)
        corpus = {S.SAMPLE_ID: normalized.select(S.SAMPLE_ID), S.EXCHANGE_ID: exchange_ids(normalized)}
    out: dict[str, dict] = {}
    for name, column in STORE_FINGERPRINT.items():
        store = ModelStore(spark, rundir.store_path(name), column, name in MERGED_SCHEMA, STORE_KEY[name])
        store.sweep()
        keep = store.read_all()
        if keep is None:
            continue
        if not all_fingerprints:
            fingerprints = current_fingerprints(rundir, name)
            if fingerprints is None:
                raise InputError(
                    f"{run_dir} has no finished {STAGE_OF[name]} stage to say which {column} is current; "
                    "pass --all-fingerprints to keep every model's rows"
                )
            keep = keep.where(F.col(column).isin(fingerprints))
        if corpus is not None:
            keep = keep.join(corpus[STORE_KEY[name]], on=STORE_KEY[name], how="left_semi")
        out[name] = store.compact(keep)
    return out
