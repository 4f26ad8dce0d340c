"""selected/ as a Delta table through delta-spark's own jars, and Delta input with deletion vectors.

One shared store serves every run here, so the corpus is encoded once: the runs differ in the
corpus version, the output format and the Delta engine, which is what these tests are about.
"""

from __future__ import annotations

import json
import shutil

import pytest

from mdaq_spark import schema as S
from mdaq_spark.config import InputConfig, load_config
from mdaq_spark.errors import InputError
from mdaq_spark.io import delta, readers
from mdaq_spark.pipeline.runner import run_pipeline
from mdaq_spark.report.diff import diff_runs
from mdaq_spark.rundir import SELECTED
from tests.conftest import require_midb

pytestmark = pytest.mark.delta_spark

LANGS = ("German", "Malay")


def _corpus(folder, first: int, last: int):
    midb = require_midb(*LANGS)
    folder.mkdir(parents=True, exist_ok=True)
    for lang in LANGS:
        records = json.loads((midb / f"{lang}.json").read_text(encoding="utf-8"))[first:last]
        (folder / f"{lang}.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return folder


def _run(spark, model_cache, corpus, out, store, *overrides):
    cfg = load_config(
        None,
        ["spark.shuffle_partitions=4", f"model.cache_dir={model_cache}", "selection.budget_fraction=0.3", *overrides],
        **{"input.paths": [str(corpus)], "output.path": str(out), "output.store": str(store)},
    )
    return run_pipeline(spark, cfg)


def _rows(df) -> list[tuple]:
    cols = [S.SAMPLE_ID, S.LANG, S.SELECTION_REASON, S.QSM_SCORE, S.QUALITY_RANK, S.CLUSTER_ID]
    return sorted(tuple(r) for r in df.select(*cols).collect())


@pytest.fixture(scope="module")
def runs(lake_spark, model_cache, tmp_path_factory):
    """First run and a refresh (delta-spark) in one directory; the first run again with delta-rs elsewhere."""
    spark, root = lake_spark, tmp_path_factory.mktemp("delta_spark")
    store = root / "store"
    v1, v2 = _corpus(root / "v1", 0, 14), _corpus(root / "v2", 3, 17)  # 3 records left, 3 arrived
    lake, before, offline = root / "lake", root / "lake_v0", root / "offline"
    first = _run(spark, model_cache, v1, lake, store, "output.format=delta", "spark.delta_engine=delta-spark")
    shutil.copytree(lake, before)  # the first run's directory as it was, for `mdaq diff`
    refresh = _run(spark, model_cache, v2, lake, store, "output.format=delta", "spark.delta_engine=delta-spark")
    as_parquet = _run(spark, model_cache, v1, offline, store)
    as_delta_rs = _run(spark, model_cache, v1, offline, store, "output.format=delta", "spark.delta_engine=delta-rs")
    return {
        "spark": spark,
        "lake": lake,
        "before": before,
        "offline": offline,
        "first": first,
        "refresh": refresh,
        "as_parquet": as_parquet,
        "as_delta_rs": as_delta_rs,
    }


def test_first_run_creates_the_table_and_a_refresh_merges(runs):
    spark, lake = runs["spark"], str(runs["lake"] / SELECTED)
    first, refresh = runs["first"]["stage_info"]["select"]["delta"], runs["refresh"]["stage_info"]["select"]["delta"]
    assert first == {"engine": "delta-spark", "version": 0, "created": True}
    assert refresh["engine"] == "delta-spark" and refresh["version"] == 1
    history = spark.sql(f"DESCRIBE HISTORY delta.`{lake}`").orderBy("version").collect()
    assert [h["operation"] for h in history] == ["WRITE", "MERGE"]
    assert spark.read.format("delta").load(lake).count() == runs["refresh"]["counts"]["selected"]

    # the MERGE's own counts are the refresh's membership changes as `mdaq diff` reports them
    diff = diff_runs(spark, str(runs["before"]), str(runs["lake"]))
    assert refresh["num_target_rows_inserted"] == diff["totals"]["added"] > 0
    assert refresh["num_target_rows_deleted"] == diff["totals"]["removed"] > 0
    assert refresh["num_target_rows_updated"] == diff["totals"]["unchanged"]


def test_version_as_of_the_previous_version_is_the_previous_selection(runs):
    spark, lake = runs["spark"], str(runs["lake"] / SELECTED)
    previous = spark.sql(f"SELECT * FROM delta.`{lake}` VERSION AS OF 0")
    before = spark.read.format("delta").load(str(runs["before"] / SELECTED))
    assert _rows(previous) == _rows(before)
    assert len(_rows(previous)) == runs["first"]["counts"]["selected"]
    current = spark.read.format("delta").option("versionAsOf", 1).load(lake)
    assert _rows(current) != _rows(previous)


def test_both_engines_write_the_same_rows(runs):
    spark = runs["spark"]
    by_delta_rs = delta_rs_table(runs["offline"] / SELECTED)
    by_delta_spark = spark.sql(f"SELECT * FROM delta.`{runs['lake'] / SELECTED}` VERSION AS OF 0")
    assert runs["as_delta_rs"]["stage_info"]["select"]["delta"]["engine"] == "delta-rs"
    assert sorted(by_delta_rs) == _rows(by_delta_spark)


def test_switching_only_the_output_format_reruns_the_select_stage(runs):
    parquet, switched = runs["as_parquet"], runs["as_delta_rs"]
    assert "select" not in parquet["stages_skipped"]
    assert "select" not in switched["stages_skipped"]  # its key includes output.format
    assert {"ingest", "encode", "score", "cluster"} <= set(switched["stages_skipped"])
    assert switched["stage_info"]["select"]["delta"]["created"] is True  # a parquet selected/ became a table


def delta_rs_table(path) -> list[tuple]:
    import deltalake

    table = deltalake.DeltaTable(str(path)).to_pyarrow_table()
    cols = [S.SAMPLE_ID, S.LANG, S.SELECTION_REASON, S.QSM_SCORE, S.QUALITY_RANK, S.CLUSTER_ID]
    return [tuple(row[c] for c in cols) for row in table.select(cols).to_pylist()]


def test_delta_input_with_deletion_vectors(lake_spark, tmp_path):
    """delta-spark applies the deletion vectors; delta-rs, which cannot, refuses the table with exit 3."""
    spark, table = lake_spark, str(tmp_path / "input_table")
    rows = [(f"instruction {i}", f"answer number {i}", "en") for i in range(12)]
    spark.createDataFrame(rows, ["instruction", "output", "lang"]).coalesce(1).write.format("delta").option(
        "delta.enableDeletionVectors", "true"
    ).save(table)
    spark.sql(f"DELETE FROM delta.`{table}` WHERE instruction IN ('instruction 3', 'instruction 7')")
    deleted = spark.sql(f"DESCRIBE HISTORY delta.`{table}`").first()["operationMetrics"]
    assert int(deleted["numDeletionVectorsAdded"]) == 1  # the rows are hidden by a vector, not rewritten away

    try:
        assert delta.use_engine(spark, "delta-spark") == "delta-spark"
        corpus = readers.read_corpus(spark, InputConfig(paths=[table]))
        texts = sorted(r[0] for r in corpus.select(S.INSTRUCTION).collect())
        assert len(texts) == 10 and "instruction 3" not in texts and "instruction 7" not in texts

        assert delta.use_engine(spark, "delta-rs") == "delta-rs"
        with pytest.raises(InputError) as refused:
            readers.read_corpus(spark, InputConfig(paths=[table]))
        assert refused.value.exit_code == 3
        message = str(refused.value)
        assert table in message and "deletionVectors" in message and "\n" not in message
    finally:
        delta.use_engine(spark, "auto")
