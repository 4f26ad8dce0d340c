"""The job, stage by stage: ingest -> encode -> score -> (embed) -> cluster -> select -> report -> export.

Each stage reads the previous stages' outputs from the run directory and writes its own,
atomically; the runner then records a marker keyed by everything that determines the
stage's result (config section, upstream keys, input files). A rerun skips stages whose
key is unchanged, so a crashed run resumes from the last finished stage and a config
change redoes exactly the stages it affects. The runner checks each stage's declared
tables before it runs and after it finishes: a stage that reads a column nobody wrote
fails with its name, not with an analysis error deep in a plan.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from pyspark.sql import SparkSession

from mdaq_spark.config import JobConfig
from mdaq_spark.errors import ConfigError, MdaqError, NoUsableRecords
from mdaq_spark.io import delta
from mdaq_spark.io.export import export_all
from mdaq_spark.models import registry
from mdaq_spark.report.diff import diff_runs, summary
from mdaq_spark.report.run_stats import ExportResult, PreviousRun, RunStats, typed
from mdaq_spark.report.stats import code_commit, write_html, write_ingest_only_stats, write_stats
from mdaq_spark.resources import model_resource_profile
from mdaq_spark.rundir import EMBEDDINGS, SCORES, RunDir, RunLog
from mdaq_spark.scoring.base import build_scorers, combination_fingerprint
from mdaq_spark.session import apply_hadoop_conf
from mdaq_spark.stages.base import Stage, StageContext, Table, section
from mdaq_spark.stages.cluster import ClusterStage, require_backend
from mdaq_spark.stages.embed import EmbedStage
from mdaq_spark.stages.encode import EncodeStage
from mdaq_spark.stages.ingest import IngestStage
from mdaq_spark.stages.score import ScoreStage
from mdaq_spark.stages.select import SelectStage

log = logging.getLogger(__name__)


class StageContractError(MdaqError):
    """A stage's declared input or output table lacks a column: a bug, not bad data."""


class Runner:
    """Runs stages in order, skipping the finished ones; keeps the log the report is written from."""

    def __init__(self, ctx: StageContext, file_format: str) -> None:
        self.ctx = ctx
        self.file_format = file_format
        self.log = RunLog(code_commit=code_commit())

    def _check(self, stage: Stage, tables: tuple[Table, ...], when: str) -> None:
        for table in tables:
            columns = self.ctx.rundir.columns(table.name, table.fingerprint, self.file_format)
            if columns is None:
                raise StageContractError(f"stage {stage.name} {when} table {table.name}/, which is not there")
            missing = [c for c in table.columns if c not in columns]
            if missing:
                raise StageContractError(f"stage {stage.name} {when} {table.name}/ with columns {missing}")

    def run(self, stage: Stage) -> dict:
        """Run `stage` unless a finished run holds its output for the same key; returns its marker info."""
        key = stage.key()
        self.log.keys[stage.name] = key
        done = None if self.ctx.overwrite else self.ctx.rundir.marker(stage.name)
        if done is not None and done.get("key") == key:
            log.info("stage %-8s skipped: finished earlier with the same inputs and config", stage.name)
            self.log.skipped.append(stage.name)
            self.log.timings[stage.name] = 0.0
            self.log.info[stage.name] = done.get("info", {})
            return self.log.info[stage.name]
        self._check(stage, stage.requires, "needs")
        spark = self.ctx.spark
        spark.sparkContext.setJobGroup(f"mdaq-{stage.name}", f"mdaq stage: {stage.name}", interruptOnCancel=True)
        started = time.perf_counter()
        info = stage.run(self.ctx) or {}
        seconds = time.perf_counter() - started
        self._check(stage, stage.produces, "did not write")
        self.log.timings[stage.name] = round(seconds, 2)
        self.log.info[stage.name] = info
        self.ctx.rundir.write_marker(stage.name, {"stage": stage.name, "key": key, "seconds": seconds, "info": info})
        log.info("stage %-8s done in %.1fs %s", stage.name, seconds, json.dumps(info, sort_keys=True))
        return info


def run_pipeline(
    spark: SparkSession, cfg: JobConfig, on_progress: Callable[[str, int, int], None] | None = None
) -> dict:
    """The whole job on `cfg`; returns the run's stats (also written to report/stats.json)."""
    scorers = build_scorers(cfg)  # a config error (unknown kind, a head that does not fit) before Spark works
    apply_hadoop_conf(spark, cfg.spark.conf)  # S3 endpoint and credentials, even on a session made earlier
    delta.use_engine(spark, cfg.spark.delta_engine)  # a forced delta-spark without Delta fails here
    require_backend(cfg.clustering)  # checked before any stage runs, as is the profile
    profile = model_resource_profile(spark, cfg.spark)
    rundir = RunDir.of_job(spark, cfg.output)
    runner = Runner(StageContext(spark, rundir, cfg.output.overwrite, on_progress, profile), cfg.output.format)

    ingest = IngestStage(cfg.input, cfg.language)
    ingested = runner.run(ingest)
    if ingested.get("samples") == 0:
        _stop_without_samples(spark, rundir, cfg, runner.log)
    # downstream keys follow the corpus content, not its files (see stages.ingest)
    content = str(ingested.get("content_digest", runner.log.keys[ingest.name]))

    location = registry.ensure_prepared(cfg.model.name, cfg.model.cache_dir)
    layer_sets = {s.encoder_layers for s in scorers if s.encoder_layers}
    if len(layer_sets) > 1:
        raise ConfigError(f"scoring.scorers: heads over different encoder layers {sorted(layer_sets)} in one run")
    layers = next(iter(layer_sets), ())
    encodings_fp = registry.encodings_fingerprint(registry.encoder_fingerprint(location, cfg.model), layers)
    encode = EncodeStage(cfg.model, cfg.spark, location, encodings_fp, content, layers, cfg.scoring.turns)
    runner.run(encode)

    scorer_fps = tuple(s.fingerprint(encodings_fp) for s in scorers)
    qsm_fp = combination_fingerprint(cfg, scorers, list(scorer_fps), content)
    score = ScoreStage(cfg.scoring, cfg.spark, scorers, scorer_fps, encodings_fp, qsm_fp, encode.key())
    runner.run(score)

    embedding_table, embedding_fp, upstream = SCORES, qsm_fp, score.key()
    if cfg.embedding.source == "model":
        emb_cfg = cfg.embedding.model
        emb_location = registry.ensure_prepared(emb_cfg.name, emb_cfg.cache_dir)
        embedding_fp = registry.fingerprint(emb_location, section(emb_cfg))
        embed = EmbedStage(emb_cfg, cfg.spark, emb_location, embedding_fp, content)
        runner.run(embed)
        embedding_table, upstream = EMBEDDINGS, embed.key()

    cluster = ClusterStage(cfg.clustering, cfg.seed, embedding_table, embedding_fp, upstream)
    runner.run(cluster)
    runner.run(SelectStage(cfg, qsm_fp, embedding_table, embedding_fp, cluster.key(), score.key()))

    started = time.perf_counter()
    spark.sparkContext.setJobGroup("mdaq-report", "mdaq stage: report", interruptOnCancel=True)
    stats = write_stats(spark, rundir, cfg, runner.log, score_fingerprint=qsm_fp)
    runner.log.timings["report"] = round(time.perf_counter() - started, 2)
    grown = _after_report(spark, rundir, cfg, stats)
    if grown is not stats:
        stats = grown
        rundir.write_stats(stats)
        if cfg.report.html:
            write_html(rundir)
    rundir.record_finished(stats.finished_at)
    return stats.to_json()


def _stop_without_samples(spark: SparkSession, rundir: RunDir, cfg: JobConfig, runlog: RunLog) -> None:
    """Every record was quarantined: stats.json and the report say why, then the run ends (exit 6).

    Not a crash and not a success: there is nothing to encode or select, and a scheduled job
    must notice. The run is not entered in a shared store's index of finished runs, since it
    has no selection to compare a later run with.
    """
    started = time.perf_counter()
    stats = write_ingest_only_stats(spark, rundir, cfg, runlog)
    runlog.timings["report"] = round(time.perf_counter() - started, 2)
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(stats.quarantine_by_reason.items()))
    raise NoUsableRecords(
        f"no usable record: all {stats.counts.records_read} records read were quarantined ({reasons}); "
        f"see {rundir.stats_path} and quarantine/"
    )


def _after_report(spark: SparkSession, rundir: RunDir, cfg: JobConfig, stats: RunStats) -> RunStats:
    """The previous run over a shared store (and what changed since), then the exports: the stats they grow."""
    previous = rundir.previous_run()
    if previous is not None:
        diff = None
        try:
            diff = summary(diff_runs(spark, previous, rundir.root))
        except Exception as exc:  # noqa: BLE001 -- the previous run may be gone or unreadable: the link stays
            log.warning("previous run %s could not be compared with this one: %s", previous, exc)
        stats = replace(stats, previous_run=PreviousRun(path=previous, diff=diff))
    if cfg.output.export:
        started = time.perf_counter()
        spark.sparkContext.setJobGroup("mdaq-export", "mdaq stage: export", interruptOnCancel=True)
        exports = [typed(ExportResult, e, "export") for e in export_all(spark, rundir, cfg.output.export, stats)]
        seconds = {**stats.stage_seconds, "export": round(time.perf_counter() - started, 2)}
        stats = replace(stats, exports=exports, stage_seconds=seconds)
    return stats
