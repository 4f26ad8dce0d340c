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


def _ids(df):
    return sorted(r[0] for r in df.select(S.SAMPLE_ID).collect())


def test_compact_rewrites_the_kept_rows_as_one_batch(spark, tmp_path):
    store = ModelStore(spark, str(tmp_path / "scores"), S.MODEL_FINGERPRINT)
    store.commit(_rows(spark, ["a", "b"]))
    store.commit(_rows(spark, ["c"], lang="fr"))
    store.commit(_rows(spark, ["a", "b", "c"], fp="old"))
    keep = store.read_all().where(F.col(S.MODEL_FINGERPRINT) == "fp1").where(F.col(S.SAMPLE_ID) != "b")
    before = {r[S.SAMPLE_ID]: r["value"] for r in store.rows("fp1").collect()}
    result = store.compact(keep)
    assert result == {"batches_before": 3, "rows_before": 6, "rows_after": 2}
    assert store.batches() == [3]
    assert sorted(p.name for p in (tmp_path / "scores").iterdir()) == ["batch=000003"]  # plan gone too
    assert {r[S.SAMPLE_ID]: r["value"] for r in store.rows("fp1").collect()} == {"a": before["a"], "c": before["c"]}
    assert store.rows("old").count() == 0
    # the next commit follows the compacted batch
    assert store.commit(_rows(spark, ["d"])) == 4


def test_a_compaction_killed_after_its_commit_is_finished_by_the_next_sweep(spark, tmp_path):
    from mdaq_spark.io import writers
    from mdaq_spark.io.store import COMPACTION_PLAN

    root = tmp_path / "enc"
    store = ModelStore(spark, str(root), S.MODEL_FINGERPRINT)
    store.commit(_rows(spark, ["a"]))
    store.commit(_rows(spark, ["b"]))
    # killed between the commit rename and the deletion of the replaced batches
    _rows(spark, ["a", "b"]).write.partitionBy(S.LANG).parquet(str(root / "batch=000002"))
    writers.write_text(spark, str(root / COMPACTION_PLAN), '{"replaces": [0, 1], "into": 2}')
    assert store.batches() == [2]
    assert _ids(store.rows("fp1")) == ["a", "b"]  # readers see no sample twice
    store.sweep()
    assert sorted(p.name for p in root.iterdir()) == ["batch=000002"]


def test_a_compaction_killed_before_its_commit_leaves_the_old_batches(spark, tmp_path):
    from mdaq_spark.io import writers
    from mdaq_spark.io.store import COMPACTION_PLAN

    root = tmp_path / "enc"
    store = ModelStore(spark, str(root), S.MODEL_FINGERPRINT)
    store.commit(_rows(spark, ["a"]))
    store.commit(_rows(spark, ["b"]))
    _rows(spark, ["a"]).write.parquet(str(root / "_tmp_0badf00d"))  # the new batch, never renamed
    writers.write_text(spark, str(root / COMPACTION_PLAN), '{"replaces": [0, 1], "into": 2}')
    assert store.batches() == [0, 1]
    assert _ids(store.rows("fp1")) == ["a", "b"]
    store.sweep()
    assert sorted(p.name for p in root.iterdir()) == ["batch=000000", "batch=000001"]


def test_a_merged_schema_store_reads_batches_written_before_a_column_existed(spark, tmp_path):
    """Encodings gained a column; a store an earlier version filled must still be read, the new column null."""
    store = ModelStore(spark, str(tmp_path / "encodings"), S.MODEL_FINGERPRINT, merge_schema=True)
    store.commit(_rows(spark, ["a", "b"], fp="old"))  # the earlier layout: no extra column
    store.commit(_rows(spark, ["c"], fp="new").withColumn("extra", F.lit(b"\x01\x02")))
    rows = {r[S.SAMPLE_ID]: r for r in store.read_all().collect()}
    assert set(rows) == {"a", "b", "c"}
    assert rows["a"]["extra"] is None and bytes(rows["c"]["extra"]) == b"\x01\x02"
    assert [bytes(r["extra"]) for r in store.rows("new").collect()] == [b"\x01\x02"]
