"""Stage-level GPU scheduling on a real standalone cluster, and the same selection wherever the job runs.

The workers offer a custom resource `gpu` through a discovery script that reports a fake
address: Spark's scheduler cannot tell it from a real device, so what it does with the
model stages' ResourceProfile is what a GPU cluster gets (the encoder itself runs on the
CPU). The Spark event log of the one cluster run says which profile each stage ran under
and when and where each task ran. The same corpus then goes through local[1], one core
against the cluster's four in two executors: the selected rows must be the same bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from tests.conftest import DEMO_CORPUS, REPO
from tests.standalone_cluster import StandaloneCluster, java_available, start_cluster

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not java_available(), reason="a standalone Spark cluster needs a JVM"),
]

ENCODE_GROUP = "mdaq-encode"


def _job_args(corpus: Path, out: Path, model_cache: str) -> list[str]:
    """The same job everywhere: the fast packaged encoder, four model tasks, everything else default."""
    return [
        str(REPO / "jobs" / "run_select.py"),
        "--input",
        str(corpus),
        "--output",
        str(out),
        "--set",
        f"model.cache_dir={model_cache}",
        "--set",
        "model.name=multilingual-e5-small-static",
        "--set",
        "spark.min_model_tasks=4",
    ]


@pytest.fixture(scope="module")
def cluster_run(model_cache, tmp_path_factory):
    """One run of jobs/run_select.py on 2 workers of 2 cores and one fake GPU each; returns (run dir, events)."""
    from mdaq_spark.models import registry

    registry.ensure_prepared("multilingual-e5-small-static", model_cache)
    root = tmp_path_factory.mktemp("gpu_cluster")
    events_dir = root / "events"
    events_dir.mkdir()
    out = root / "run"
    cluster: StandaloneCluster = start_cluster(workers=2, cores_per_worker=2, worker_resources={"gpu": 1})
    try:
        submit = [
            *("--conf", "spark.executor.resource.gpu.amount=1"),
            *("--conf", "spark.eventLog.enabled=true"),
            *("--conf", f"spark.eventLog.dir=file://{events_dir}"),
            *("--conf", "spark.eventLog.compress=false"),
        ]
        args = [*_job_args(DEMO_CORPUS, out, model_cache), "--set", "spark.model_task_resources={cpus: 1, gpu: 1}"]
        proc = cluster.spark_submit([*submit, *args], timeout=900, cwd=str(root))
        assert proc.returncode == 0, f"spark-submit failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    finally:
        cluster.stop()
    return out, read_event_log(events_dir)


def read_event_log(folder: Path) -> list[dict]:
    """Every event of the one application in `folder`, in order (Spark 4 writes a folder of rolled files)."""
    files = sorted(
        (p for p in folder.rglob("*") if p.is_file() and not p.name.startswith((".", "appstatus"))),
        key=lambda p: (int(p.name.split("_")[1]) if p.name.startswith("events_") else 0, p.name),
    )
    assert files, f"no event log under {folder}"
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]


def _stages(events: list[dict]) -> dict[int, dict]:
    """stage id -> its job group, resource profile id and tasks (executor, start ms, end ms)."""
    stages: dict[int, dict] = {}
    for e in events:
        if e["Event"] == "SparkListenerStageSubmitted":
            info = e["Stage Info"]
            stages[info["Stage ID"]] = {
                "group": (e.get("Properties") or {}).get("spark.jobGroup.id"),
                "profile": info["Resource Profile Id"],
                "tasks": [],
            }
    for e in events:
        if e["Event"] == "SparkListenerTaskEnd" and e["Stage ID"] in stages:
            # the driver stamps "Finish Time" when it has handled the result, after the executor freed the
            # slot, so the next task's launch may come first; the executor's own times bound the task instead
            t, m = e["Task Info"], e.get("Task Metrics") or {}
            busy = m.get("Executor Deserialize Time", 0) + m.get("Executor Run Time", 0)
            stages[e["Stage ID"]]["tasks"].append((t["Executor ID"], t["Launch Time"], t["Launch Time"] + busy))
    return stages


def _profiles(events: list[dict]) -> dict[int, dict]:
    return {
        e["Resource Profile Id"]: e["Task Resource Requests"]
        for e in events
        if e["Event"] == "SparkListenerResourceProfileAdded"
    }


def _most_concurrent(tasks: list[tuple[str, int, int]]) -> int:
    """The most tasks running at once on one executor."""
    peak = 0
    by_executor = defaultdict(list)
    for executor, start, end in tasks:
        by_executor[executor] += [(start, 1), (end, -1)]
    for points in by_executor.values():
        running = 0
        for _, step in sorted(points, key=lambda p: (p[0], p[1])):  # a task ending at t frees its slot first
            running += step
            peak = max(peak, running)
    return peak


def test_only_the_model_stage_holds_the_gpu(cluster_run):
    _, events = cluster_run
    stages, profiles = _stages(events), _profiles(events)
    assert "gpu" not in profiles[0], f"the default task requirement asks for a GPU: {profiles[0]}"
    gpu_stages = {sid: s for sid, s in stages.items() if "gpu" in profiles[s["profile"]]}
    assert gpu_stages, "no stage ran under a profile with a GPU"
    # every GPU stage is the encoder's, and each of them asked for exactly one GPU per task
    assert {s["group"] for s in gpu_stages.values()} == {ENCODE_GROUP}
    assert {profiles[s["profile"]]["gpu"]["Amount"] for s in gpu_stages.values()} == {1.0}
    gpu_tasks = [t for s in gpu_stages.values() for t in s["tasks"]]
    assert len(gpu_tasks) >= 4 and len({t[0] for t in gpu_tasks}) == 2, gpu_tasks  # both executors encoded
    # (a) one GPU per executor: never two model tasks at once on an executor, though it has 2 cores
    assert _most_concurrent(gpu_tasks) == 1, sorted(gpu_tasks)
    # (b) the other stages use both cores of an executor at the same time
    cpu_peak = max(_most_concurrent(s["tasks"]) for s in stages.values() if "gpu" not in profiles[s["profile"]])
    assert cpu_peak == 2  # and never more than its 2 cores


def _local_run(corpus: Path, out: Path, model_cache: str, master: str) -> None:
    cmd = [sys.executable, *_job_args(corpus, out, model_cache), "--set", f"spark.master={master}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=str(out.parent))
    assert proc.returncode == 0, f"{master} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def _selected(run: Path):
    table = ds.dataset(str(run / "selected"), format="parquet", partitioning="hive").to_table()
    return table.sort_by("sample_id").combine_chunks()


def test_same_selection_on_local_1_and_the_cluster(cluster_run, model_cache, tmp_path):
    cluster_out, _ = cluster_run
    # the two ends of what a cluster's size changes: one task at a time in one Python worker, and
    # four at once in two executors' own workers
    local_out = tmp_path / "local_1"
    _local_run(DEMO_CORPUS, local_out, model_cache, "local[1]")
    reference, table = _selected(cluster_out), _selected(local_out)
    assert reference.num_rows > 0
    assert table.schema == reference.schema
    for column in reference.column_names:
        assert table[column].equals(reference[column]), f"local[1]: column {column} differs from the cluster's"
    cluster_stats, local_stats = (
        json.loads((run / "report" / "stats.json").read_text()) for run in (cluster_out, local_out)
    )
    assert local_stats["counts"] == cluster_stats["counts"]
    assert local_stats["per_language"] == cluster_stats["per_language"]
