"""SparkSession for the job: embedded local by default, whatever spark-submit says otherwise.

Settings the pipeline depends on for correctness or speed are set here, once:
Python worker reuse (one model load per worker process), Arrow batch size (the unit the
model UDFs see), offline model loading for every Python worker, and FAIR scheduling for
the jobs that run side by side (the per-language k-means fits).
"""

from __future__ import annotations

import logging
import os
import sys

from pyspark.sql import SparkSession

from mdaq_spark.config import SparkConfig

log = logging.getLogger(__name__)

# the executors' Python workers inherit these: no model hub, no telemetry, quiet tokenizers
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def _under_spark_submit() -> bool:
    """spark-submit starts the driver with the master already chosen; never override it."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(cfg: SparkConfig) -> SparkSession:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    # executors must run the same interpreter that has this package and the models installed
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(cfg.app_name)
    if not _under_spark_submit():
        builder = builder.master(cfg.master).config("spark.driver.memory", cfg.driver_memory)
    settings = {
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(cfg.arrow_batch_size),
        "spark.python.worker.reuse": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.adaptive.enabled": "true",
        # the per-language k-means fits run from several driver threads, each in its own pool
        "spark.scheduler.mode": "FAIR",
        **{f"spark.executorEnv.{k}": v for k, v in OFFLINE_ENV.items()},
        **cfg.conf,
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info("Spark %s, master %s", spark.version, spark.sparkContext.master)
    return spark
