"""Hostile input through the real `mdaq` command: every row kept or quarantined as promised, none invented.

The corpus and what must become of each of its rows come from tests/io/hostile_corpus.py.
Files that cannot be read at all end the job before Spark starts, with one line naming the
file (exit 3); so does an output path no run could write to (exit 2).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mdaq_spark import schema as S
from mdaq_spark.cli import main
from tests.conftest import REPO
from tests.io.hostile_corpus import KEPT, build


def _mdaq(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PYSPARK_PYTHON": sys.executable}
    return subprocess.run(
        [sys.executable, "-m", "mdaq_spark.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def _rows_with(frame: pd.DataFrame, column: str, tag: str) -> pd.DataFrame:
    return frame[frame[column].fillna("").str.contains(rf"(?<!\w){re.escape(tag)}(?!\w)")]


def test_hostile_corpus_every_row_accounted_for(model_cache, tmp_path):
    corpus = build(tmp_path / "corpus")
    out = tmp_path / "run"
    done = _mdaq(
        "run", "-i", str(corpus.root), "-o", str(out), "--set", "spark.master=local[2]",
        "--set", "spark.shuffle_partitions=4", "--set", f"model.cache_dir={model_cache}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    normalized = pd.read_parquet(out / "normalized")
    normalized[S.LANG] = normalized[S.LANG].astype(str)
    quarantine = pd.read_parquet(out / "quarantine")
    stats = json.loads((out / "report" / "stats.json").read_text())

    for e in corpus.expected:
        where = f"{e.file} {e.tag}: expected {e.outcome}"
        if e.outcome == KEPT:
            rows = _rows_with(normalized, S.INSTRUCTION, e.tag)
            found = _rows_with(quarantine, S.RAW_RECORD, e.tag)[S.QUARANTINE_REASON].tolist()
            assert len(rows) == 1, f"{where}, found {len(rows)} kept; in quarantine as {found}"
            row = rows.iloc[0]
            assert row[S.SOURCE].endswith(e.file), where
            for column, value in e.checks.items():
                if column == "source_file":
                    assert row[S.SOURCE].endswith("/" + value), where
                elif column == "lang_in":
                    assert row[S.LANG] in value, f"{where}: lang {row[S.LANG]!r}"
                elif column == "history_has":
                    assert value in json.loads(row[S.HISTORY])[0], where
                else:
                    assert row[column] == value, f"{where}: {column} is {row[column]!r}, not {value!r}"
        elif e.tag is None:
            rows = quarantine[quarantine[S.SOURCE].str.endswith(e.file)]
            assert (rows[S.QUARANTINE_REASON] == e.outcome).sum() == 1, where
        else:
            rows = _rows_with(quarantine, S.RAW_RECORD, e.tag)
            assert rows[S.QUARANTINE_REASON].tolist() == [e.outcome], where
            assert rows.iloc[0][S.SOURCE].endswith(e.file), where

    # nothing invented: the rows written are exactly the rows expected, file by file
    written = Counter(Path(s).name for s in pd.concat([normalized[S.SOURCE], quarantine[S.SOURCE]]))
    assert written == Counter(Path(e.file).name for e in corpus.expected)
    counts = stats["counts"]
    assert counts["identity_holds"] and counts["per_file_identity_holds"] is True
    assert counts["records_read"] == len(corpus.expected)
    skipped = {str(Path(x["path"]).relative_to(corpus.root)) for x in stats["input_files"]["skipped"]}
    assert skipped == corpus.skipped
    files = stats["stage_info"]["ingest"]["files"]
    # every file read is listed, one with no record (empty.jsonl) with zeros
    assert {Path(f).name for f in files} == {Path(e.file).name for e in corpus.expected} | {"empty.jsonl"}
    empty = next(v for f, v in files.items() if f.endswith("/empty.jsonl"))
    assert empty == {"records_read": 0, "records_parsed": 0, "rows": 0, "rows_written": 0}
    lines = next(v for f, v in files.items() if f.endswith("/lines.jsonl"))
    # one record per non-blank line on disk (blank, tab and form-feed lines are not records)
    assert lines["records_read"] == lines["records_parsed"] == sum(e.file == "lines.jsonl" for e in corpus.expected)
    assert set(normalized[S.LANG]) <= {"en", "de", "und", "zxx"}

    # the dry run reads the same files, cuts the same units and gives the same reasons
    plan = _mdaq("run", "-i", str(corpus.root), "-o", str(tmp_path / "plan"), "--dry-run", timeout=300)
    assert plan.returncode == 0, plan.stderr[-3000:]
    inputs = json.loads(plan.stdout)["inputs"]
    rejected, formats = Counter(), Counter()
    for entry in inputs:
        if "skipped" in entry:
            assert {str(Path(p).relative_to(corpus.root)) for p in entry["skipped"]} == corpus.skipped
            continue
        rejected.update(entry["first_20_records_per_file"]["rejected"])
        formats.update(entry["first_20_records_per_file"]["record_formats"])
    assert rejected == Counter(quarantine[S.QUARANTINE_REASON])
    assert formats == Counter(normalized[S.RECORD_FORMAT])


def _short_error(done: subprocess.CompletedProcess, code: int, names: str) -> None:
    assert done.returncode == code, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3, done.stderr[-2000:]
    assert any(names in line for line in lines), done.stderr
    assert "Traceback" not in done.stderr


def _good_parquet(path: Path) -> Path:
    pq.write_table(pa.table({"instruction": [f"Question {i}" for i in range(200)], "output": ["A"] * 200}), path)
    return path


@pytest.mark.parametrize("case", ["truncated", "jsonl_named_parquet", "truncated_in_folder"])
def test_unreadable_parquet_is_exit_3_naming_the_file(case, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    bad = folder / "bad.parquet"
    if case == "jsonl_named_parquet":
        bad.write_text('{"instruction": "Q", "output": "A"}\n')
    else:
        data = _good_parquet(tmp_path / "whole.parquet").read_bytes()
        bad.write_bytes(data[: len(data) * 8 // 10])
    target = folder if case == "truncated_in_folder" else bad
    if case == "truncated_in_folder":
        _good_parquet(folder / "good.parquet")
    for dry in ([], ["--dry-run"]):
        _short_error(_mdaq("run", "-i", str(target), "-o", str(tmp_path / "out"), *dry, timeout=300), 3, str(bad))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["is_a_file", "under_a_file", "not_writable"])
def test_unwritable_output_is_exit_2_before_spark(case, tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"instruction": "Q", "output": "A"}\n')
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = {"is_a_file": blocker, "under_a_file": blocker / "run", "not_writable": Path("/proc/mdaq-run")}[case]
    done = _mdaq("run", "-i", str(corpus), "-o", str(out), timeout=300)
    _short_error(done, 2, str(out))
    assert "SparkSession" not in done.stderr and "spark" not in done.stderr.lower().replace("mdaq_spark", "")


def test_dry_run_exit_codes_in_process(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    assert main(["run", "-i", str(bad), "-o", str(tmp_path / "o"), "--dry-run"]) == 3
    (tmp_path / "f").write_text("x")
    assert main(["run", "-i", str(bad), "-o", str(tmp_path / "f"), "--dry-run"]) == 2
