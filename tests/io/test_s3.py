"""The job on object storage: an s3a:// corpus, run directory, store and export on a real S3 server.

The server is moto's S3 server on 127.0.0.1 (tests/s3_server.py); Spark talks to it through
hadoop-aws's S3A client from the jar folder, configured only by the standard fs.s3a.* settings
in the job's spark.conf, as a user's config would. S3 has no atomic rename and lists by prefix:
the resumed run shows the commit protocol of the store survives that.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from mdaq_spark import schema as S
from mdaq_spark.config import load_config
from mdaq_spark.pipeline.runner import run_pipeline
from mdaq_spark.report.diff import diff_runs
from mdaq_spark.rundir import ENCODINGS, SELECTED
from tests.conftest import REPO, write_midb_subset
from tests.test_resume import _run_to_end, _run_until

pytestmark = pytest.mark.s3

SELECTED_COLUMNS = [S.SAMPLE_ID, S.LANG, S.SELECTION_REASON, S.QSM_SCORE, S.CLUSTER_ID, S.QUALITY_RANK]


def _overrides(s3_server, model_cache) -> list[str]:
    return [
        "spark.shuffle_partitions=4",
        f"model.cache_dir={model_cache}",
        "input.file_type=json",
        "selection.budget_fraction=0.3",
        *s3_server.overrides(),
    ]


def _selected(spark, root: str) -> pd.DataFrame:
    df = spark.read.parquet(f"{root}/{SELECTED}").select(*SELECTED_COLUMNS).toPandas()
    return df.sort_values(S.SAMPLE_ID).reset_index(drop=True)


@pytest.fixture(scope="module")
def lake(lake_spark, s3_server, model_cache, tmp_path_factory):
    """A bucket with two versions of a corpus; the first run, a killed-and-resumed run, and a refresh."""
    spark, local = lake_spark, tmp_path_factory.mktemp("s3")
    bucket = s3_server.new_bucket()
    v1 = s3_server.upload_tree(write_midb_subset(local / "v1", {"Czech": 12, "Indonesian": 12}), bucket, "corpus/v1")
    v2 = s3_server.upload_tree(write_midb_subset(local / "v2", {"Czech": 14, "Indonesian": 14}), bucket, "corpus/v2")
    base = f"s3a://{bucket}"
    overrides = _overrides(s3_server, model_cache)

    def run(corpus: str, out: str, store: str, *more: str) -> dict:
        fields = {"input.paths": [corpus], "output.path": out, "output.store": store}
        return run_pipeline(spark, load_config(None, [*overrides, *more], **fields))

    first = run(v1, f"{base}/runs/first", f"{base}/store", "output.export=[{format: sharegpt}]")

    # the same corpus in its own run directory and store, by the CLI in its own process: SIGKILLed
    # right after the first encode batch reached S3, then started again to the end
    resumed = f"{base}/runs/resumed"
    cmd = [
        sys.executable, "-m", "mdaq_spark.cli", "run", "--input", v1, "--output", resumed, "--master", "local[2]",
        "--set", "spark.rows_per_commit=15", "--set", f"output.store={base}/store_killed",
        *[arg for o in overrides for arg in ("--set", o)],
    ]  # fmt: skip
    batch = f"store_killed/{ENCODINGS}/"
    _run_until(cmd, lambda: any("batch=000000/" in k for k in s3_server.keys(bucket, batch)), "mid-encode")
    killed_keys = s3_server.keys(bucket, "runs/resumed/_stages/")
    _run_to_end(cmd)

    refresh = run(v2, f"{base}/runs/refresh", f"{base}/store")
    return {
        "spark": spark,
        "server": s3_server,
        "bucket": bucket,
        "base": base,
        "first": first,
        "refresh": refresh,
        "killed_keys": killed_keys,
    }


def test_a_run_reads_and_writes_s3(lake):
    spark, base, server, bucket = lake["spark"], lake["base"], lake["server"], lake["bucket"]
    first = lake["first"]
    assert first["counts"]["selected"] > 0
    assert first["counts"]["identity_holds"] and first["counts"]["records_read"] == 2 * 2 * 12
    keys = server.keys(bucket, "runs/first/")
    for name in ("report/stats.json", "report/report.html", "_stages/select.json"):
        assert f"runs/first/{name}" in keys, name
    stats = json.loads(server.client().get_object(Bucket=bucket, Key="runs/first/report/stats.json")["Body"].read())
    assert stats["counts"] == first["counts"]
    assert any(k.startswith(f"store/{ENCODINGS}/") for k in server.keys(bucket, "store/"))
    assert len(_selected(spark, f"{base}/runs/first")) == first["counts"]["selected"]
    # nothing the driver wrote went to a local path named after the URI
    assert not (Path.cwd() / "s3a:").exists() and not (REPO / "s3a:").exists()


def test_the_export_lands_in_the_bucket(lake):
    spark, base, server, bucket = lake["spark"], lake["base"], lake["server"], lake["bucket"]
    files = [k for k in server.keys(bucket, "runs/first/export/sharegpt/data/") if k.endswith(".jsonl")]
    assert files and "runs/first/export/sharegpt/README.md" in server.keys(bucket, "runs/first/export/sharegpt/")
    exported = spark.read.json(f"{base}/runs/first/export/sharegpt/data/")
    assert exported.count() == lake["first"]["counts"]["selected"]
    assert "conversations" in exported.columns


def test_a_run_killed_mid_encode_on_s3_resumes_to_the_same_selection(lake):
    spark, base = lake["spark"], lake["base"]
    assert "runs/resumed/_stages/encode.json" not in lake["killed_keys"]  # it really died inside encode
    stats = json.loads(spark.sparkContext.wholeTextFiles(f"{base}/runs/resumed/report/stats.json").first()[1])
    encode = stats["stage_info"]["encode"]
    assert encode["computed"] < encode["rows"]  # the batch committed before the kill was not redone
    pd.testing.assert_frame_equal(_selected(spark, f"{base}/runs/resumed"), _selected(spark, f"{base}/runs/first"))


def test_a_refresh_on_s3_encodes_only_new_samples_and_diffs(lake):
    spark, base = lake["spark"], lake["base"]
    first, refresh = lake["first"], lake["refresh"]
    new = refresh["counts"]["kept"] - first["counts"]["kept"]
    assert new > 0
    assert refresh["stage_info"]["encode"]["computed"] == new
    assert refresh["previous_run"]["path"] == f"{base}/runs/first"
    diff = diff_runs(spark, f"{base}/runs/first", f"{base}/runs/refresh")
    assert diff["totals"] == refresh["previous_run"]["diff"]["totals"]
    assert diff["totals"]["added"] > 0
    assert sum(v["added"].get("new_sample", 0) for v in diff["per_language"].values()) > 0
