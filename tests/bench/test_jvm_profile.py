"""The JVM profile breakdown: a real Spark command recorded, its samples sorted into categories."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

from tests.conftest import REPO


def _profiler():
    spec = importlib.util.spec_from_file_location("jvm_profile", REPO / "bench" / "jvm_profile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_categorise_takes_the_first_matching_marker_and_counts_the_rest_as_other():
    prof = _profiler()
    samples = [
        ["a.Inner", "b.KMeansAggregator.add", "c.KMeans.initKMeansParallel"],  # init wins: listed first
        ["x.gemm", "b.KMeansAggregator.add"],
        ["y.Unknown", "z.Caller"],
    ]
    counts, other = prof.categorise(samples, [("init", "initKMeansParallel"), ("gemm", "gemm"), ("agg", "Aggregator")])
    assert counts == {"init": 1, "gemm": 1, "other": 1}
    assert other == {"y.Unknown": 1}


def test_a_spark_command_is_recorded_and_its_samples_sorted(tmp_path):
    out = tmp_path / "profile.json"
    job = (
        "from pyspark.sql import SparkSession;"
        "s = SparkSession.builder.master('local[1]').config('spark.ui.enabled', 'false').getOrCreate();"
        "print(s.range(20_000_000).selectExpr('sum(id * 7 % 13)').collect())"
    )
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "jvm_profile.py"), "--out", str(out),
         "--category", "spark=org.apache.spark", "--", sys.executable, "-c", job],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["samples"] > 0
    shares = {row["name"]: row for row in result["categories"]}
    assert set(shares) == {"spark", "other"}
    assert shares["spark"]["samples"] > 0
    assert shares["spark"]["samples"] + shares["other"]["samples"] == result["samples"]
