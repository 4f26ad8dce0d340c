"""The model stages' ResourceProfile: built from config, refused early where Spark could not honour it."""

from __future__ import annotations

import pytest

from mdaq_spark.config import ModelTaskResources, load_config
from mdaq_spark.errors import ConfigError
from mdaq_spark.resources import build_profile, check_model_resources

GPU_EXECUTORS = {"spark.executor.resource.gpu.amount": "1", "spark.executor.cores": "8"}
STANDALONE = "spark://master:7077"


def test_profile_needs_a_cluster_master_with_gpu_executors():
    wanted = ModelTaskResources()
    check_model_resources(STANDALONE, GPU_EXECUTORS, wanted)
    with pytest.raises(ConfigError, match=r"master is local\[2\]"):
        check_model_resources("local[2]", GPU_EXECUTORS, wanted)
    with pytest.raises(ConfigError, match="executors have no GPU"):
        check_model_resources(STANDALONE, {"spark.executor.cores": "8"}, wanted)
    with pytest.raises(ConfigError, match="spark.task.resource.gpu.amount makes every task"):
        check_model_resources(STANDALONE, {**GPU_EXECUTORS, "spark.task.resource.gpu.amount": "1"}, wanted)
    with pytest.raises(ConfigError, match="more than an executor has"):
        check_model_resources(STANDALONE, GPU_EXECUTORS, ModelTaskResources(gpu=2))
    with pytest.raises(ConfigError, match="cpus is 16"):
        check_model_resources(STANDALONE, GPU_EXECUTORS, ModelTaskResources(cpus=16))
    check_model_resources(STANDALONE, {}, ModelTaskResources(gpu=0, cpus=2))  # CPU-only profiles need no GPU


def test_gpu_amount_is_a_fraction_or_a_whole_number():
    assert load_config(None, ["spark.model_task_resources={gpu: 0.5}"]).spark.model_task_resources.gpu == 0.5
    assert load_config(None).spark.model_task_resources is None
    with pytest.raises(ConfigError, match="whole number"):
        load_config(None, ["spark.model_task_resources={gpu: 1.5}"])


def test_profile_asks_for_the_gpu_per_task_and_for_executors_only_under_dynamic_allocation():
    profile = build_profile(ModelTaskResources(cpus=2, gpu=0.5), GPU_EXECUTORS)
    tasks = profile.taskResources
    assert tasks["cpus"].amount == 2 and tasks["gpu"].amount == 0.5
    assert not profile.executorResources  # a task profile: the job's own executors run it
    dynamic = {**GPU_EXECUTORS, "spark.dynamicAllocation.enabled": "true", "spark.executor.memory": "24g"}
    executors = build_profile(ModelTaskResources(), dynamic).executorResources
    assert executors["gpu"].amount == 1 and executors["cores"].amount == 8


def test_local_run_with_a_profile_stops_before_ingest(spark, tmp_path):
    from mdaq_spark.pipeline.runner import run_pipeline
    from tests.conftest import DEMO_CORPUS

    cfg = load_config(
        None,
        ["spark.model_task_resources={gpu: 1}", "model.qsm_head=none"],
        **{"input.paths": [str(DEMO_CORPUS)], "output.path": str(tmp_path / "run")},
    )
    with pytest.raises(ConfigError, match="spark.model_task_resources needs a standalone"):
        run_pipeline(spark, cfg)
    assert not (tmp_path / "run" / "normalized").exists()
