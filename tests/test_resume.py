"""A job killed in the middle of a stage and started again ends exactly where an uninterrupted run does.

Real kills: the CLI runs in its own process group (driver JVM and Python workers included) and
gets SIGKILL, the way a preempted node or an OOM killer ends it, with no chance to clean up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mdaq_spark import schema as S
from mdaq_spark.rundir import ENCODINGS, SELECTED
from tests.conftest import REPO, write_midb_subset

ROWS_PER_COMMIT = 15  # ~60 samples -> several encode batches, so a kill can land between two


def _command(corpus: Path, out: Path, model_cache: str) -> list[str]:
    return [
        sys.executable, "-m", "mdaq_spark.cli", "run", "--input", str(corpus), "--output", str(out),
        "--master", "local[2]", "--set", f"model.cache_dir={model_cache}",
        "--set", f"spark.rows_per_commit={ROWS_PER_COMMIT}", "--set", "spark.shuffle_partitions=4",
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}


def _run_to_end(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _run_until(cmd: list[str], ready, what: str, timeout: float = 600) -> None:
    """Start the job and SIGKILL its whole process group as soon as `ready()` holds."""
    proc = subprocess.Popen(
        cmd, env=_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(f"job ended before {what}: {proc.stderr.read()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the job finished before it could be killed {what}"


def _selected(out: Path) -> pd.DataFrame:
    cols = [S.SAMPLE_ID, S.SELECTION_REASON, S.QSM_SCORE, S.CLUSTER_ID, S.QUALITY_RANK]
    return pd.read_parquet(out / SELECTED, columns=cols).sort_values(S.SAMPLE_ID).reset_index(drop=True)


def _encodings(out: Path) -> pd.DataFrame:
    enc = pd.read_parquet(out / ENCODINGS, columns=[S.EXCHANGE_ID, S.PROMPT_EMBEDDING, S.RESPONSE_EMBEDDING])
    return enc.sort_values(S.EXCHANGE_ID).reset_index(drop=True)


def test_killed_twice_then_resumed_equals_uninterrupted_run(model_cache, tmp_path):
    corpus = write_midb_subset(tmp_path / "midb", {"Portuguese": 15, "Turkish": 15})
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    _run_to_end(_command(corpus, reference, model_cache))

    cmd = _command(corpus, resumed, model_cache)
    # 1) killed inside the encode stage, right after its first batch was committed
    _run_until(cmd, lambda: (resumed / ENCODINGS / "batch=000000").is_dir(), "mid-encode")
    assert not (resumed / "_stages" / "encode.json").exists()
    # 2) killed again inside the select stage (clustering just finished)
    _run_until(cmd, lambda: (resumed / "_stages" / "cluster.json").is_file(), "mid-select")
    assert not (resumed / "_stages" / "select.json").exists()
    _run_to_end(cmd)

    stats = json.loads((resumed / "report" / "stats.json").read_text())
    encode = stats["stage_info"]["encode"]
    # the third start found every encode batch committed by the second one: nothing recomputed
    assert stats["stages_skipped"][:4] == ["ingest", "encode", "score", "cluster"]
    assert encode["batches_committed"] >= 2 and encode["computed"] < encode["rows"]  # from the second start

    ours, theirs = _encodings(resumed), _encodings(reference)
    assert ours[S.EXCHANGE_ID].is_unique and list(ours[S.EXCHANGE_ID]) == list(theirs[S.EXCHANGE_ID])
    for column in (S.PROMPT_EMBEDDING, S.RESPONSE_EMBEDDING):
        assert all(np.array_equal(a, b) for a, b in zip(ours[column], theirs[column], strict=True)), column
    pd.testing.assert_frame_equal(_selected(resumed), _selected(reference))
