"""The selected subset as a Delta table refreshed by MERGE on sample_id, by delta-rs (see io/delta.py).

delta-rs is the engine of a session without Delta Lake; the shared test session may have
delta-spark's jars, so these tests choose delta-rs explicitly (tests/io/test_delta_spark.py
covers delta-spark).
"""

from __future__ import annotations

import pytest

from mdaq_spark import schema as S
from mdaq_spark.io import delta, writers

deltalake = pytest.importorskip("deltalake")


def _merge(spark, tmp_path, rows, name):
    df = spark.createDataFrame(rows, [S.SAMPLE_ID, S.LANG, S.QSM_SCORE])
    staged = str(tmp_path / f"staged_{name}")
    writers.write_table(df, staged, partition_by=(S.LANG,))
    return delta.merge_on_key(spark.read.parquet(staged), staged, str(tmp_path / "selected"), S.SAMPLE_ID, (S.LANG,))


@pytest.fixture
def delta_rs(spark):
    assert delta.use_engine(spark, "delta-rs") == "delta-rs"
    yield spark
    delta.use_engine(spark, "auto")


def test_merge_inserts_updates_and_deletes(delta_rs, tmp_path):
    spark = delta_rs
    first = _merge(spark, tmp_path, [("a", "de", 0.5), ("b", "de", 0.4), ("c", "fr", 0.3)], "1")
    assert first == {"engine": "delta-rs", "version": 0, "created": True}

    second = _merge(spark, tmp_path, [("a", "de", 0.9), ("c", "fr", 0.3), ("d", "fr", 0.2)], "2")
    assert second["version"] == 1
    assert second["num_target_rows_inserted"] == 1  # d
    assert second["num_target_rows_deleted"] == 1  # b left the selection
    table = deltalake.DeltaTable(str(tmp_path / "selected"))
    rows = sorted(table.to_pyarrow_table().to_pylist(), key=lambda r: r[S.SAMPLE_ID])
    assert [(r[S.SAMPLE_ID], r[S.LANG], r[S.QSM_SCORE]) for r in rows] == [
        ("a", "de", 0.9),
        ("c", "fr", 0.3),
        ("d", "fr", 0.2),
    ]
    assert table.metadata().partition_columns == [S.LANG]
    assert [h["operation"] for h in table.history()][:2] == ["MERGE", "WRITE"]
    # the previous selection is still there: time travel to version 0
    old = deltalake.DeltaTable(str(tmp_path / "selected"), version=0).to_pyarrow_table()
    assert sorted(old.column(S.SAMPLE_ID).to_pylist()) == ["a", "b", "c"]

    # Spark reads the current snapshot, partition column included
    back = delta.read_delta(spark, str(tmp_path / "selected")).toPandas()
    assert sorted(zip(back[S.SAMPLE_ID], back[S.LANG], strict=True)) == [("a", "de"), ("c", "fr"), ("d", "fr")]
