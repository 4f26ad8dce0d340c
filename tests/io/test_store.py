"""The model-output store: batches commit whole, pending rows are exactly the missing ones, leftovers are swept."""

from __future__ import annotations

from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.io.store import ModelStore


def _rows(spark, ids, lang="de", fp="fp1"):
    return spark.createDataFrame([(i, lang, float(len(i))) for i in ids], [S.SAMPLE_ID, S.LANG, "value"]).withColumn(
        S.MODEL_FINGERPRINT, F.lit(fp)
    )


def test_pending_and_view_follow_committed_batches(spark, tmp_path):
    store = ModelStore(spark, str(tmp_path / "scores"), S.MODEL_FINGERPRINT)
    wanted = spark.createDataFrame([(i,) for i in ("a", "b", "c", "d")], [S.SAMPLE_ID])
    assert store.rows("fp1") is None
    assert sorted(r[0] for r in store.pending(wanted, "fp1").collect()) == ["a", "b", "c", "d"]

    assert store.commit(_rows(spark, ["a", "b"])) == 0
    assert store.commit(_rows(spark, ["c"], lang="fr")) == 1
    assert store.batches() == [0, 1]
    assert sorted(r[0] for r in store.pending(wanted, "fp1").collect()) == ["d"]
    # another fingerprint has nothing stored: everything is pending for it
    assert store.pending(wanted, "fp2").count() == 4

    view = store.view(spark.createDataFrame([("a",), ("c",), ("z",)], [S.SAMPLE_ID]), "fp1").toPandas()
    assert sorted(view[S.SAMPLE_ID]) == ["a", "c"]
    assert set(view.columns) == {S.SAMPLE_ID, S.LANG, "value", S.MODEL_FINGERPRINT}


def test_sweep_removes_uncommitted_batches_only(spark, tmp_path):
    store = ModelStore(spark, str(tmp_path / "enc"), S.MODEL_FINGERPRINT)
    store.commit(_rows(spark, ["a"]))
    # what a job killed mid-write leaves: a temporary batch that was never renamed into place
    _rows(spark, ["b"]).write.parquet(str(tmp_path / "enc" / "_tmp_deadbeef"))
    assert [r[0] for r in store.rows("fp1").collect()] == ["a"]  # invisible to readers already
    store.sweep()
    assert sorted(p.name for p in (tmp_path / "enc").iterdir()) == ["batch=000000"]


def test_a_table_written_whole_is_adopted_as_batch_zero(spark, tmp_path):
    path = tmp_path / "encodings"
    _rows(spark, ["a", "b"]).write.partitionBy(S.LANG).parquet(str(path))
    store = ModelStore(spark, str(path), S.MODEL_FINGERPRINT)
    store.adopt_unbatched()
    assert store.batches() == [0]
    assert sorted(r[0] for r in store.rows("fp1").select(S.SAMPLE_ID).collect()) == ["a", "b"]
