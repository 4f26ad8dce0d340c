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

from mdaq_spark import jars
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
    packages: dict[str, str] = {}
    if not _under_spark_submit():
        builder = builder.master(cfg.master).config("spark.driver.memory", cfg.driver_memory)
        # under spark-submit the JVM has started: its --packages / --jars / image decide
        packages = jars.session_conf(cfg.packages, jars.jars_dir(cfg.jars_dir), cfg.master.startswith("local"))
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
        **packages,
        **cfg.conf,
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    apply_hadoop_conf(spark, cfg.conf)
    log.info("Spark %s, master %s", spark.version, spark.sparkContext.master)
    return spark


def apply_hadoop_conf(spark: SparkSession, conf: dict[str, str]) -> None:
    """The job's `spark.hadoop.*` settings (S3 endpoint, credentials) on a session that already existed.

    A session is built once per process: one made before this job's config was read (a notebook,
    a test, a driver that runs several jobs) would otherwise keep its own file-system settings.
    """
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    for key, value in conf.items():
        if key.startswith("spark.hadoop."):
            hadoop.set(key[len("spark.hadoop.") :], value)
