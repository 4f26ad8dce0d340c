"""A run directory given as a URI: tables, markers and stats all go through the Hadoop file system.

An HDFS or S3 run directory holds its own resume state only if markers and stats.json are
written the way the tables are; a `file://` URI takes exactly that path on local disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mdaq_spark.config import load_config
from mdaq_spark.errors import InputError
from mdaq_spark.pipeline.runner import run_pipeline
from mdaq_spark.rundir import SELECTED, STAGE_MARKERS, HadoopFiles, RunDir
from tests.conftest import DEMO_CORPUS


def test_markers_and_stats_through_hadoop_files(spark, tmp_path):
    run = RunDir(f"file://{tmp_path}/run", spark=spark)
    assert isinstance(run.files, HadoopFiles) and run.marker("ingest") is None
    run.write_marker("ingest", {"key": "k1"})
    run.write_marker("ingest", {"key": "k2"})  # replaced whole, never appended
    assert run.marker("ingest") == {"key": "k2"}
    run.files.write_text(run.stats_path, json.dumps({"counts": {"selected": 3}}))
    # read strictly: a stats.json that lacks a section fails naming what is missing, never reads as zeros
    with pytest.raises(InputError, match="missing keys"):
        run.read_stats()
    written = sorted(p.name for p in (tmp_path / "run").rglob("*") if p.is_file())
    assert written == ["ingest.json", "stats.json"]  # no checksum or temporary file left beside them


def test_job_with_a_file_uri_run_directory(spark, model_cache, tmp_path):
    out = tmp_path / "run"
    cfg = load_config(
        None,
        ["spark.shuffle_partitions=4", f"model.cache_dir={model_cache}", "model.name=multilingual-e5-small-static"],
        **{"input.paths": [str(DEMO_CORPUS)], "output.path": f"file://{out}"},
    )
    first = run_pipeline(spark, cfg)
    assert first["counts"]["identity_holds"] and first["counts"]["selected"] > 0
    markers = sorted(p.name for p in (out / STAGE_MARKERS).iterdir())
    assert markers == ["cluster.json", "encode.json", "ingest.json", "score.json", "select.json"]
    assert (
        json.loads((out / STAGE_MARKERS / "select.json").read_text())["info"]["selected"]
        == first["counts"]["selected"]
    )
    stats = json.loads((out / "report" / "stats.json").read_text())
    assert stats["counts"] == first["counts"] and (out / "report" / "report.html").is_file()
    assert spark.read.parquet(str(out / SELECTED)).count() == first["counts"]["selected"]
    # the markers written through the URI are read back through it: a rerun skips every stage
    again = run_pipeline(spark, cfg)
    assert again["stages_skipped"] == ["ingest", "encode", "score", "cluster", "select"]
    assert again["counts"] == first["counts"]
    assert not [p for p in Path(out).rglob("*.tmp")]
