"""The run directory: every table path, stage marker and report file of a run, in one place.

A run directory may live on local disk, HDFS or an object store. Tables are written by
Spark; markers, stats.json and report.html go through the same Hadoop FileSystem, so a run
directory anywhere Spark can write holds its own resume state and report. Commands that
read a finished run without Spark (`mdaq report`, `mdaq inspect`, a dry run) use plain
file I/O on local paths and `file://` URIs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mdaq_spark import schema as S
from mdaq_spark.errors import InputError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from mdaq_spark.config import JobConfig
    from mdaq_spark.io.store import ModelStore
    from mdaq_spark.report.run_stats import RunStats

# tables of the run directory
NORMALIZED = "normalized"
QUARANTINE = "quarantine"
FLAGGED = "flagged"  # samples with a flag, a cross-lingual mark or a non-general domain
CANDIDATES = "candidates"  # every clustered sample with its prune_reason (null: went on to selection)
CLUSTERS = "clusters"
CENTROIDS = "centroids"
SELECTED = "selected"
# trainer-ready copies of selected/, one folder per format (export/<format>/)
EXPORT = "export"
# model outputs, kept in a store across runs (output.store, else the run directory)
ENCODINGS = "encodings"
SCORES = "scores"
EMBEDDINGS = "embeddings"
EXCHANGE_SCORES = "exchange_scores"  # every scorer's raw score of every exchange, each under its own fingerprint
STORES = (ENCODINGS, EXCHANGE_SCORES, SCORES, EMBEDDINGS)
# each store is keyed by the fingerprint named here, and filled by one stage
STORE_FINGERPRINT = {
    ENCODINGS: S.ENCODER_FINGERPRINT,
    EXCHANGE_SCORES: S.MODEL_FINGERPRINT,
    SCORES: S.MODEL_FINGERPRINT,
    EMBEDDINGS: S.MODEL_FINGERPRINT,
}
STAGE_OF = {ENCODINGS: "encode", EXCHANGE_SCORES: "score", SCORES: "score", EMBEDDINGS: "embed"}
# what a stored row belongs to: an exchange (encodings and scores of exchanges) or a whole sample
STORE_KEY = {ENCODINGS: S.EXCHANGE_ID, EXCHANGE_SCORES: S.EXCHANGE_ID, SCORES: S.SAMPLE_ID, EMBEDDINGS: S.SAMPLE_ID}
# stores whose batches may differ in columns: encodings gained response_layers, and batches an
# earlier version committed lack it (read as null, so they serve any head but a layer head);
# scores gained turn_scores, and rows without it (of the first exchange alone) are computed again
MERGED_SCHEMA = (ENCODINGS, SCORES)
STORE_COMPLETE = {SCORES: S.TURN_SCORES}
# bookkeeping
REPORT = "report"
STATS_FILE = "stats.json"
HTML_FILE = "report.html"
STAGING = "_staging"
STAGE_MARKERS = "_stages"
# in a store shared by dated run directories: the finished runs that used it, oldest first
RUNS_INDEX = "_runs.json"


def is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def local_path(path: str) -> Path:
    return Path(path[len("file://") :] if path.startswith("file://") else path)


class LocalFiles:
    """Small files on local disk, replaced atomically."""

    def exists(self, path: str) -> bool:
        return local_path(path).exists()

    def read_text(self, path: str) -> str:
        return local_path(path).read_text(encoding="utf-8")

    def write_text(self, path: str, text: str) -> None:
        target = local_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)

    def delete(self, path: str) -> None:
        local_path(path).unlink(missing_ok=True)

    def write_bytes(self, path: str, data: bytes) -> None:
        target = local_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def list_names(self, folder: str) -> list[str] | None:
        """The names of the files in `folder`, sorted; None when there is no such folder."""
        target = local_path(folder)
        return sorted(p.name for p in target.iterdir()) if target.is_dir() else None

    def mkdirs(self, folder: str) -> None:
        local_path(folder).mkdir(parents=True, exist_ok=True)

    def delete_tree(self, folder: str) -> None:
        import shutil

        shutil.rmtree(local_path(folder), ignore_errors=True)

    def rename(self, src: str, dst: str) -> None:
        local_path(src).replace(local_path(dst))


class HadoopFiles:
    """Small files through the Hadoop FileSystem of their path: the one the tables beside them use."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    def _fs(self, path: str):
        from mdaq_spark.io.writers import filesystem

        fs, jpath = filesystem(self.spark, path)
        try:  # local disk: the raw file system, which leaves no .crc file beside each marker
            fs = fs.getRawFileSystem()
        except Exception:  # py4j: this file system has no raw layer (HDFS, object stores)
            pass
        return fs, jpath

    def exists(self, path: str) -> bool:
        fs, jpath = self._fs(path)
        return bool(fs.exists(jpath))

    def read_text(self, path: str) -> str:
        fs, jpath = self._fs(path)
        stream = fs.open(jpath)
        try:
            return str(self.spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
        finally:
            stream.close()

    def write_text(self, path: str, text: str) -> None:
        """Write beside the target, then rename: a reader sees the old file, no file, or the whole new one."""
        fs, jpath = self._fs(path)
        tmp = self.spark.sparkContext._jvm.org.apache.hadoop.fs.Path(jpath.getParent(), f".{jpath.getName()}.tmp")
        fs.mkdirs(jpath.getParent())
        stream = fs.create(tmp, True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()
        if fs.exists(jpath):
            fs.delete(jpath, False)
        if not fs.rename(tmp, jpath):
            raise OSError(f"could not rename {tmp} to {path}")

    def delete(self, path: str) -> None:
        fs, jpath = self._fs(path)
        if fs.exists(jpath):
            fs.delete(jpath, False)

    def write_bytes(self, path: str, data: bytes) -> None:
        fs, jpath = self._fs(path)
        fs.mkdirs(jpath.getParent())
        stream = fs.create(jpath, True)
        try:
            stream.write(bytearray(data))
        finally:
            stream.close()

    def list_names(self, folder: str) -> list[str] | None:
        fs, jpath = self._fs(folder)
        if not fs.exists(jpath):
            return None
        return sorted(str(status.getPath().getName()) for status in fs.listStatus(jpath))

    def mkdirs(self, folder: str) -> None:
        fs, jpath = self._fs(folder)
        fs.mkdirs(jpath)

    def delete_tree(self, folder: str) -> None:
        fs, jpath = self._fs(folder)
        if fs.exists(jpath):
            fs.delete(jpath, True)

    def rename(self, src: str, dst: str) -> None:
        fs, jsrc = self._fs(src)
        _, jdst = self._fs(dst)
        if not fs.rename(jsrc, jdst):
            raise OSError(f"could not rename {src} to {dst}")


@dataclass
class RunLog:
    """What the runner saw of this run's stages: the report states it beside the tables' counts."""

    timings: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    info: dict[str, dict] = field(default_factory=dict)
    # the checkout's commit when the run started: a commit made while it runs is not what ran
    code_commit: str | None = None


@dataclass
class RunDir:
    """One run directory (and the store its model outputs live in): paths, markers, stats, tables."""

    root: str
    store_root: str | None = None
    spark: SparkSession | None = None
    _stores: dict[str, ModelStore] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = self.root.rstrip("/")
        self.store_root = (self.store_root or self.root).rstrip("/")
        self.files = HadoopFiles(self.spark) if self.spark is not None else LocalFiles()

    @classmethod
    def of_job(cls, spark: SparkSession, output) -> RunDir:
        """The run directory of a job's `output` section."""
        return cls(output.path, output.store, spark)

    @classmethod
    def finished(cls, root: str) -> RunDir:
        """A finished local run directory, read without Spark; a clear error when it is not one."""
        if not is_local(root):
            raise InputError(f"{root}: report and inspect read a local run directory; copy its {REPORT}/ here first")
        run = cls(root)
        if not run.files.exists(run.stats_path):
            raise InputError(f"{root} has no {REPORT}/{STATS_FILE}: is it a finished mdaq run directory?")
        return run

    # -------------------------------------------------------------- paths

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def store_path(self, name: str) -> str:
        return f"{self.store_root}/{name}"

    def staging(self, name: str) -> str:
        return self.path(f"{STAGING}/{name}")

    def marker_path(self, stage: str) -> str:
        return self.path(f"{STAGE_MARKERS}/{stage}.json")

    @property
    def stats_path(self) -> str:
        return self.path(f"{REPORT}/{STATS_FILE}")

    @property
    def html_path(self) -> str:
        return self.path(f"{REPORT}/{HTML_FILE}")

    def export_path(self, file_format: str) -> str:
        return self.path(f"{EXPORT}/{file_format}")

    @property
    def runs_index_path(self) -> str:
        return self.store_path(RUNS_INDEX)

    @property
    def shares_store(self) -> bool:
        """True when the model outputs live outside this run directory, where other runs may use them too."""
        return self.store_root != self.root

    # -------------------------------------------------------------- markers and report files

    def marker(self, stage: str) -> dict | None:
        path = self.marker_path(stage)
        return json.loads(self.files.read_text(path)) if self.files.exists(path) else None

    def write_marker(self, stage: str, record: dict) -> None:
        self.files.write_text(self.marker_path(stage), json.dumps(record, indent=2))

    def read_stats(self) -> RunStats:
        from mdaq_spark.report.run_stats import RunStats

        return RunStats.read(self.files, self.stats_path)

    def read_config(self) -> JobConfig:
        from mdaq_spark.report.run_stats import RunStats

        return RunStats.read_config(self.files, self.stats_path)

    def write_stats(self, stats: RunStats) -> None:
        stats.write(self.files, self.stats_path)

    def write_html(self, page: str) -> str:
        self.files.write_text(self.html_path, page)
        return self.html_path

    # -------------------------------------------------------------- the runs index of a shared store

    def finished_runs(self) -> list[dict]:
        """The runs that finished over this store, oldest first ({"path", "finished_at"} each)."""
        path = self.runs_index_path
        return json.loads(self.files.read_text(path)).get("runs", []) if self.files.exists(path) else []

    def previous_run(self) -> str | None:
        """The last other run directory that finished over this run's shared store, if any."""
        if not self.shares_store:
            return None
        others = [r["path"] for r in self.finished_runs() if r["path"].rstrip("/") != self.root]
        return others[-1] if others else None

    def record_finished(self, finished_at: str) -> None:
        """Add this run to the store's index (once: a rerun moves it to the end)."""
        if not self.shares_store:
            return
        runs = [r for r in self.finished_runs() if r["path"].rstrip("/") != self.root]
        runs.append({"path": self.root, "finished_at": finished_at})
        self.files.write_text(self.runs_index_path, json.dumps({"runs": runs}, indent=2, ensure_ascii=False))

    # -------------------------------------------------------------- tables (need Spark)

    def _spark(self) -> SparkSession:
        if self.spark is None:
            raise RuntimeError("reading tables needs a RunDir opened with a SparkSession")
        return self.spark

    def exists(self, name: str) -> bool:
        return self.files.exists(self.path(name))

    def table(self, name: str) -> DataFrame:
        return self._spark().read.parquet(self.path(name))

    def selected_table(self, file_format: str) -> DataFrame:
        if file_format == "delta":
            from mdaq_spark.io.delta import read_delta

            return read_delta(self._spark(), self.path(SELECTED))
        return self.table(SELECTED)

    def store(self, name: str) -> ModelStore:
        """The store behind a model stage; an old-layout table is adopted once per run, not per call."""
        if name not in self._stores:
            from mdaq_spark.io.store import ModelStore

            store = ModelStore(
                self._spark(),
                self.store_path(name),
                STORE_FINGERPRINT[name],
                name in MERGED_SCHEMA,
                STORE_KEY[name],
                STORE_COMPLETE.get(name),
            )
            store.adopt_unbatched()
            self._stores[name] = store
        return self._stores[name]

    def model_table(self, name: str, fingerprint: str, keys: DataFrame | None = None) -> DataFrame:
        """A model stage's output for exactly the current corpus (or these `keys`), read from the store."""
        return self.store(name).view(self.table(NORMALIZED) if keys is None else keys, fingerprint)

    def columns(self, name: str, fingerprint: str | None = None, file_format: str = "parquet") -> list[str] | None:
        """The columns of table `name` as written, or None when it is not there."""
        if name in STORES:
            rows = self.store(name).rows(fingerprint) if fingerprint else None
            return rows.columns if rows is not None else None
        if not self.exists(name):
            return None
        return (self.selected_table(file_format) if name == SELECTED else self.table(name)).columns
