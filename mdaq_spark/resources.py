"""Stage-level scheduling: only the model stages hold a GPU; every other stage uses all CPU cores.

A GPU executor with 8 cores and 1 GPU runs 8 tasks at a time, unless the default task
requirement asks for the GPU (`spark.task.resource.gpu.amount`): then every task of every
stage needs it, and ingest, language id, k-means and select run one task at a time while
seven cores wait. So the default requirement asks for CPU only, and the model stages
(encode, embed) run their map under a ResourceProfile whose task requests include the GPU:
`spark.model_task_resources`.

With dynamic allocation off, Spark takes a profile of task requests alone (a task resource
profile, on standalone, YARN and Kubernetes): its tasks run on the executors the job already
has, which must own the GPUs (`spark.executor.resource.gpu.amount`). With dynamic allocation
on, a profile must also describe the executors to ask for; they are the session's own
executor settings, so the model stages get executors shaped like the rest.

The checks run on the driver before ingest, so a run that cannot be scheduled stops at once
with a message, instead of hanging with tasks no executor can take.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from mdaq_spark.config import ModelTaskResources, SparkConfig
from mdaq_spark.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.resource import ResourceProfile
    from pyspark.sql import SparkSession

GPU = "gpu"
_EXECUTOR_GPU = "spark.executor.resource.gpu.amount"
_TASK_GPU = "spark.task.resource.gpu.amount"
_DYNAMIC = "spark.dynamicAllocation.enabled"


def _amount(conf: Mapping[str, str], key: str) -> float:
    value = conf.get(key)
    try:
        return float(value) if value not in (None, "") else 0.0
    except ValueError:
        raise ConfigError(f"{key} must be a number, not {value!r}") from None


def check_model_resources(master: str, conf: Mapping[str, str], wanted: ModelTaskResources) -> None:
    """Raise ConfigError when `wanted` cannot be honoured by this master and these Spark settings."""
    key = "spark.model_task_resources"
    if master.startswith("local"):
        raise ConfigError(
            f"{key} needs a standalone, YARN or Kubernetes master; this run's master is {master}: "
            f"set {key} to null for local runs"
        )
    executor_gpus = _amount(conf, _EXECUTOR_GPU)
    if wanted.gpu > 0 and executor_gpus <= 0:
        raise ConfigError(
            f"{key}.gpu is {wanted.gpu} but the executors have no GPU: set {_EXECUTOR_GPU} "
            "(and the workers' GPU discovery script)"
        )
    if wanted.gpu > executor_gpus:
        raise ConfigError(f"{key}.gpu is {wanted.gpu}, more than an executor has ({_EXECUTOR_GPU}={executor_gpus:g})")
    if _amount(conf, _TASK_GPU) > 0:
        raise ConfigError(
            f"{_TASK_GPU} makes every task of every stage wait for a GPU; with {key} only the model stages "
            "ask for one: remove it"
        )
    cores = conf.get("spark.executor.cores")
    if cores and cores.isdigit() and wanted.cpus > int(cores):
        raise ConfigError(f"{key}.cpus is {wanted.cpus}, more than an executor has (spark.executor.cores={cores})")


def build_profile(wanted: ModelTaskResources, conf: Mapping[str, str]) -> ResourceProfile:
    """The model stages' profile: task requests, plus the session's executor shape under dynamic allocation."""
    from pyspark.resource import ExecutorResourceRequests, ResourceProfileBuilder, TaskResourceRequests

    tasks = TaskResourceRequests().cpus(wanted.cpus)
    if wanted.gpu > 0:
        tasks = tasks.resource(GPU, wanted.gpu)
    builder = ResourceProfileBuilder().require(tasks)
    if conf.get(_DYNAMIC, "false").strip().lower() == "true":
        executors = ExecutorResourceRequests()
        if conf.get("spark.executor.cores"):
            executors = executors.cores(int(conf["spark.executor.cores"]))
        if conf.get("spark.executor.memory"):
            executors = executors.memory(conf["spark.executor.memory"])
        if conf.get("spark.executor.memoryOverhead"):
            executors = executors.memoryOverhead(conf["spark.executor.memoryOverhead"])
        if _amount(conf, _EXECUTOR_GPU) > 0:
            executors = executors.resource(
                GPU,
                int(_amount(conf, _EXECUTOR_GPU)),
                discoveryScript=conf.get("spark.executor.resource.gpu.discoveryScript", ""),
                vendor=conf.get("spark.executor.resource.gpu.vendor", ""),
            )
        builder = builder.require(executors)
    return builder.build


def model_resource_profile(spark: SparkSession, cfg: SparkConfig) -> ResourceProfile | None:
    """The profile the model stages run under (checked against the session), or None for Spark's default."""
    wanted = cfg.model_task_resources
    if wanted is None:
        return None
    conf = dict(spark.sparkContext.getConf().getAll())
    check_model_resources(spark.sparkContext.master, conf, wanted)
    return build_profile(wanted, conf)
