"""A PySpark job spark-submitted to a real 2-worker standalone cluster really runs on both executors.

Why: this is the proof that the cluster helper gives what local[N] cannot (separate executor JVMs, each with its own
Python workers, pandas UDFs shipped over the wire), before heavier jobs such as jobs/run_select.py are run on it. The
fixture's finaliser also proves that stopping leaves no master, worker, executor or Python worker behind.
"""

from __future__ import annotations

import logging
import textwrap
import time

import pyarrow.parquet as pq
import pytest

from tests.standalone_cluster import StandaloneCluster, java_available, pid_alive, start_cluster

LOG = logging.getLogger(__name__)

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not java_available(), reason="a standalone Spark cluster needs a JVM"),
]

N_ROWS = 4000
N_PARTITIONS = 8

# Runs as the driver under spark-submit. Every row records where its batch was computed: the Python worker pid,
# the executor JVM above it and that JVM's parent (the worker daemon), and the executor id, which is the name of the
# executor's working directory (<worker dir>/<app id>/<executor id>) that the Python worker inherits.
PROBE_JOB = textwrap.dedent(
    """
    import os
    import socket
    import sys
    import time

    import pandas as pd
    from pyspark import TaskContext
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import pandas_udf


    def _stat(pid):
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return stat[stat.index("(") + 1 : stat.rindex(")")], int(stat[stat.rindex(")") + 2 :].split()[1])


    def _executor_jvm():
        pid = os.getppid()
        while pid > 1:
            comm, ppid = _stat(pid)
            if comm == "java":
                return pid, ppid
            pid = ppid
        return -1, -1


    def make_probe():
        # Spark 4 parses a DDL return type through the active session, so this is built after getOrCreate().
        @pandas_udf(
            "doubled long, python_pid long, executor_jvm_pid long, worker_pid long, executor_id string, "
            "app_id string, host string, partition_id int, task_attempt_id long"
        )
        def probe(ids: pd.Series) -> pd.DataFrame:
            ctx = TaskContext.get()
            jvm_pid, worker_pid = _executor_jvm()
            cwd = os.getcwd()
            time.sleep(0.25)  # long enough per task that both executors are busy at once
            n = len(ids)
            return pd.DataFrame(
                {
                    "doubled": ids * 2,
                    "python_pid": [os.getpid()] * n,
                    "executor_jvm_pid": [jvm_pid] * n,
                    "worker_pid": [worker_pid] * n,
                    "executor_id": [os.path.basename(cwd)] * n,
                    "app_id": [os.path.basename(os.path.dirname(cwd))] * n,
                    "host": [socket.gethostname()] * n,
                    "partition_id": [ctx.partitionId()] * n,
                    "task_attempt_id": [ctx.taskAttemptId()] * n,
                }
            )

        return probe


    out, n_rows, n_parts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    spark = SparkSession.builder.appName("standalone-cluster-probe").getOrCreate()
    probe = make_probe()
    df = spark.range(n_rows, numPartitions=n_parts).select("id", probe("id").alias("p")).select("id", "p.*")
    df.write.mode("overwrite").parquet(out)
    spark.stop()
    """
)


@pytest.fixture(scope="module")
def standalone_cluster():
    cluster = start_cluster(workers=2)
    LOG.info("cluster start took %.1fs", cluster.start_seconds)
    daemons = [cluster.master_pid(), *cluster.worker_pids()]
    try:
        yield cluster
    finally:
        cluster.stop()
    # The finaliser assertion: a stopped cluster leaves neither daemons nor executors nor Python workers.
    assert not [p for p in daemons if pid_alive(p)], f"daemons still running after stop(): {daemons}"
    assert cluster.cluster_processes() == [], f"cluster processes left after stop(): {cluster.cluster_processes()}"


def test_pandas_udf_job_runs_on_both_executors(standalone_cluster: StandaloneCluster, tmp_path):
    job = tmp_path / "probe_job.py"
    job.write_text(PROBE_JOB)
    out = tmp_path / "probe.parquet"

    t0 = time.monotonic()
    proc = standalone_cluster.spark_submit([str(job), str(out), str(N_ROWS), str(N_PARTITIONS)], timeout=300)
    LOG.info("spark-submit took %.1fs", time.monotonic() - t0)
    # The Python driver's own traceback goes to stdout (spark-submit merges it there), the JVM's log to stderr.
    assert proc.returncode == 0, f"spark-submit failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"

    rows = pq.read_table(out).to_pandas()
    assert len(rows) == N_ROWS
    assert sorted(rows["id"]) == list(range(N_ROWS))
    assert (rows["doubled"] == rows["id"] * 2).all()
    assert rows["partition_id"].nunique() == N_PARTITIONS
    assert rows["app_id"].nunique() == 1 and rows["app_id"].iloc[0].startswith("app-")

    per_executor = rows.groupby("executor_id").agg(
        python_pids=("python_pid", "nunique"),
        jvm_pids=("executor_jvm_pid", "nunique"),
        worker_pids=("worker_pid", "nunique"),
        tasks=("task_attempt_id", "nunique"),
    )
    LOG.info("work per executor:\n%s", per_executor)
    assert len(per_executor) >= 2, f"all tasks ran on one executor:\n{per_executor}"
    # One executor is one JVM under one worker, and a Python worker belongs to exactly one executor.
    assert (per_executor[["jvm_pids", "worker_pids"]] == 1).all().all()
    assert rows.groupby("python_pid")["executor_id"].nunique().max() == 1
    assert rows["python_pid"].nunique() >= 2
    assert rows["executor_jvm_pid"].nunique() >= 2
    # The executors hung under the two worker daemons this fixture started, not under some other cluster.
    assert set(rows["worker_pid"]) == set(standalone_cluster.worker_pids())

    status = standalone_cluster.status()
    assert [a["state"] for a in status["completedapps"]] == ["FINISHED"]
    assert status["aliveworkers"] == 2


def _select_args(corpus, out, model_cache) -> list[str]:
    from tests.conftest import REPO

    return [
        str(REPO / "jobs" / "run_select.py"),
        "--config",
        str(REPO / "mdaq_spark" / "conf" / "default.yaml"),
        "--input",
        str(corpus),
        "--output",
        str(out),
        "--set",
        f"model.cache_dir={model_cache}",
        "--set",
        "selection.budget_fraction=0.25",
        # several encode batches, so that a worker can die between two of them
        "--set",
        f"spark.rows_per_commit={ROWS_PER_COMMIT}",
    ]


ROWS_PER_COMMIT = 40
SELECT_LANGS = ("French", "Turkish")
SELECT_RECORDS = 40


@pytest.fixture(scope="module")
def select_corpus(tmp_path_factory):
    import json

    from tests.conftest import require_midb

    midb = require_midb(*SELECT_LANGS)
    corpus = tmp_path_factory.mktemp("midb")
    for lang in SELECT_LANGS:
        records = json.loads((midb / f"{lang}.json").read_text(encoding="utf-8"))[:SELECT_RECORDS]
        (corpus / f"{lang}.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return corpus


@pytest.fixture(scope="module")
def clean_select_run(standalone_cluster: StandaloneCluster, model_cache, select_corpus, tmp_path_factory):
    """jobs/run_select.py, the product's own entry point, on the cluster without faults: the reference output."""
    out = tmp_path_factory.mktemp("clean") / "run"
    proc = standalone_cluster.spark_submit(
        _select_args(select_corpus, out, model_cache), timeout=900, cwd=str(out.parent)
    )
    assert proc.returncode == 0, f"spark-submit failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return out


def test_spark_submit_select_job(standalone_cluster: StandaloneCluster, clean_select_run):
    """Output complete and consistent, and the job really ran on the cluster."""
    import json

    import pandas as pd

    out = clean_select_run
    stats = json.loads((out / "report" / "stats.json").read_text())
    assert stats["counts"]["identity_holds"] and stats["counts"]["records_read"] == 2 * 2 * SELECT_RECORDS
    assert stats["environment"]["spark_master"].startswith("spark://")
    assert stats["stage_info"]["encode"]["batches_committed"] >= 2
    selected = pd.read_parquet(out / "selected")
    normalized = pd.read_parquet(out / "normalized")
    assert set(selected["lang"].astype(str)) == {"fr", "tr"}
    for lang, n in normalized.groupby(normalized["lang"].astype(str)).size().items():
        assert (selected["lang"].astype(str) == lang).sum() == max(1, int(0.25 * n + 0.5))
    assert selected["sample_id"].is_unique
    assert set(selected["selection_reason"]) == {"quality", "diversity"}
    assert standalone_cluster.status()["completedapps"][-1]["state"] == "FINISHED"


@pytest.mark.delta_spark
@pytest.mark.s3
def test_spark_submit_delta_on_s3(
    standalone_cluster: StandaloneCluster, lake_spark, s3_server, model_cache, select_corpus, clean_select_run
):
    """The same job from and to a bucket, selected/ a Delta table MERGEd by delta-spark on the executors.

    spark-submit brings the jar folder's delta-spark and hadoop-aws (`mdaq jars submit-args`:
    driver and executor class paths, Delta's extension) and the job's config the S3A settings.
    """
    import json

    import pandas as pd

    from mdaq_spark import jars
    from mdaq_spark.session import apply_hadoop_conf

    bucket = s3_server.new_bucket("cluster")
    corpus = s3_server.upload_tree(select_corpus, bucket, "corpus")
    out = f"s3a://{bucket}/runs/delta"
    args = _select_args(corpus, out, model_cache)
    args[args.index("--input") + 1] = corpus
    s3 = [a for o in s3_server.overrides() for a in ("--set", o)]
    lake = ["--set", "input.file_type=json", "--set", "output.format=delta", "--set", "spark.delta_engine=delta-spark"]
    submit = jars.submit_args(["delta", "s3a"], jars.jars_dir())
    proc = standalone_cluster.spark_submit([*submit, *args, *s3, *lake], timeout=900)
    assert proc.returncode == 0, f"spark-submit failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"

    apply_hadoop_conf(lake_spark, s3_server.hadoop_conf())  # this test's own reads of the bucket
    keys = s3_server.keys(bucket, "runs/delta/")
    assert any(k.startswith("runs/delta/selected/_delta_log/") for k in keys)
    stats = json.loads(lake_spark.sparkContext.wholeTextFiles(f"{out}/report/stats.json").first()[1])
    assert stats["environment"]["spark_master"].startswith("spark://")
    assert stats["stage_info"]["select"]["delta"]["engine"] == "delta-spark"
    cols = ["sample_id", "selection_reason", "qsm_score"]
    on_s3 = lake_spark.read.format("delta").load(f"{out}/selected").select(*cols).toPandas()
    local = pd.read_parquet(clean_select_run / "selected", columns=cols)
    key = "sample_id"
    pd.testing.assert_frame_equal(
        on_s3.sort_values(key).reset_index(drop=True), local.sort_values(key).reset_index(drop=True), atol=1e-6
    )


def test_worker_killed_while_encoding_same_selection(
    standalone_cluster: StandaloneCluster, model_cache, select_corpus, clean_select_run, tmp_path
):
    """A worker dies (SIGKILL) in the middle of the encode stage: Spark re-runs its tasks on the other
    executor and the job ends with exactly the clean run's selection. Runs last: it leaves one worker."""
    import threading

    import pandas as pd

    out = tmp_path / "run"
    result: dict = {}
    job = threading.Thread(
        target=lambda: result.update(
            proc=standalone_cluster.spark_submit(
                _select_args(select_corpus, out, model_cache), timeout=900, cwd=str(tmp_path)
            )
        )
    )
    job.start()
    deadline = time.monotonic() + 600
    # the first encode batch is committed: the executors are busy with the next one
    while not (out / "encodings" / "batch=000000").is_dir():
        assert job.is_alive(), "the job ended before the encode stage committed a batch"
        assert time.monotonic() < deadline, "no encode batch committed within 10 minutes"
        time.sleep(0.2)
    killed = standalone_cluster.kill_worker(1)
    LOG.info("killed worker pid %d during the encode stage", killed)
    job.join(timeout=900)
    proc = result["proc"]
    assert proc.returncode == 0, f"spark-submit failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    # the application did lose an executor (the driver logs it), and finished anyway
    assert "Lost executor" in proc.stderr, proc.stderr[-4000:]

    def selection(run) -> pd.DataFrame:
        df = pd.read_parquet(run / "selected", columns=["sample_id", "selection_reason", "qsm_score"])
        return df.sort_values("sample_id").reset_index(drop=True)

    pd.testing.assert_frame_equal(selection(out), selection(clean_select_run))
