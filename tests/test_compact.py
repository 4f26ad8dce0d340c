"""`mdaq compact` on a run directory: current fingerprint, current corpus, one batch per store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.config import JobConfig
from mdaq_spark.io.store import ModelStore
from mdaq_spark.pipeline.compact import compact_run
from mdaq_spark.rundir import ENCODINGS, NORMALIZED, SCORES, STAGE_MARKERS
from tests.conftest import REPO


def _store_rows(spark, ids, fp_column, fp, key=S.SAMPLE_ID):
    return spark.createDataFrame([(i, "de", [float(len(i))]) for i in ids], [key, S.LANG, "v"]).withColumn(
        fp_column, F.lit(fp)
    )


def _run_dir(spark, root):
    """A finished run's layout: its corpus (a, b, c: single-turn, so each is its own one exchange), stage
    markers, and stores with history (encodings kept per exchange, scores per sample)."""
    columns = [S.SAMPLE_ID, S.LANG, S.INSTRUCTION, S.INPUT, S.RESPONSE, S.HISTORY]
    rows = [(i, "de", f"question {i}", "", f"answer {i}", "[]") for i in ("a", "b", "c")]
    spark.createDataFrame(rows, columns).write.parquet(str(root / NORMALIZED))
    markers = root / STAGE_MARKERS
    markers.mkdir(parents=True)
    (markers / "encode.json").write_text(json.dumps({"stage": "encode", "info": {S.ENCODER_FINGERPRINT: "enc2"}}))
    (markers / "score.json").write_text(json.dumps({"stage": "score", "info": {S.MODEL_FINGERPRINT: "head2"}}))
    enc = ModelStore(spark, str(root / ENCODINGS), S.ENCODER_FINGERPRINT, key=S.EXCHANGE_ID)
    # an older encoder
    enc.commit(_store_rows(spark, ["a", "b", "gone"], S.ENCODER_FINGERPRINT, "enc1", S.EXCHANGE_ID))
    enc.commit(_store_rows(spark, ["a", "b", "gone"], S.ENCODER_FINGERPRINT, "enc2", S.EXCHANGE_ID))
    enc.commit(_store_rows(spark, ["c"], S.ENCODER_FINGERPRINT, "enc2", S.EXCHANGE_ID))  # a refresh's batch
    scores = ModelStore(spark, str(root / SCORES), S.MODEL_FINGERPRINT)
    scores.commit(_store_rows(spark, ["a", "b", "c", "gone"], S.MODEL_FINGERPRINT, "head1"))
    scores.commit(_store_rows(spark, ["a", "b", "c", "gone"], S.MODEL_FINGERPRINT, "head2"))
    return enc, scores


def test_compact_keeps_the_current_model_and_corpus(spark, tmp_path):
    enc, scores = _run_dir(spark, tmp_path)
    result = compact_run(spark, str(tmp_path))
    assert result[ENCODINGS] == {"batches_before": 3, "rows_before": 7, "rows_after": 3}
    assert result[SCORES] == {"batches_before": 2, "rows_before": 8, "rows_after": 3}
    assert len(enc.batches()) == 1 and len(scores.batches()) == 1
    assert sorted(r[0] for r in enc.rows("enc2").select(S.EXCHANGE_ID).collect()) == ["a", "b", "c"]
    assert enc.rows("enc1").count() == 0 and scores.rows("head1").count() == 0


def test_compact_can_keep_every_model_and_absent_samples(spark, tmp_path):
    enc, scores = _run_dir(spark, tmp_path)
    result = compact_run(spark, str(tmp_path), all_fingerprints=True, keep_absent=True)
    assert result[ENCODINGS]["rows_after"] == 7 and result[SCORES]["rows_after"] == 8
    assert enc.rows("enc1").count() == 3 and len(enc.batches()) == 1


def test_compact_command_line(spark, tmp_path):
    enc, _ = _run_dir(spark, tmp_path)
    (tmp_path / "report").mkdir()
    cfg = JobConfig().model_dump(mode="json")
    cfg["spark"].update({"master": "local[1]", "driver_memory": "1g"})
    (tmp_path / "report" / "stats.json").write_text(json.dumps({"config": cfg}))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "mdaq_spark.cli", "compact", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout[done.stdout.index("{") :])
    assert out["compacted"][ENCODINGS]["rows_after"] == 3
    assert len(enc.batches()) == 1
    # a run directory without a stats.json is refused with the input-error exit code
    bad = subprocess.run(
        [sys.executable, "-m", "mdaq_spark.cli", "compact", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode != 0 and "stats.json" in bad.stderr
