"""The benchmark corpus generator: exact counts, bad rows of every kind, same seed -> same bytes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import MIDB_DIR, REPO, require_midb


def _generator():
    spec = importlib.util.spec_from_file_location("make_corpus", REPO / "bench" / "make_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen():
    require_midb()
    return _generator()


def _lines(folder: Path) -> list[bytes]:
    return [line for p in sorted(folder.glob("part-*.jsonl")) for line in p.read_bytes().splitlines()]


def test_counts_bad_rows_and_determinism(gen, tmp_path):
    rows = 3000
    m = gen.generate(rows, tmp_path / "a", seed=3, shard_rows=1000, midb_dir=MIDB_DIR)
    lines = _lines(tmp_path / "a")
    assert len(lines) == rows and m["shards"] == 3
    assert m["good"] + m["duplicates"] + sum(m["bad"].values()) == rows
    assert set(m["bad"]) >= {"invalid_json", "invalid_utf8", "empty_response", "wrong_type", "unknown_shape"}
    assert len(m["good_by_lang"]) == 10 and set(m["good_by_shape"]) == {"alpaca", "sharegpt", "openai"}

    def parses(line: bytes) -> bool:
        try:
            json.loads(line.decode("utf-8"))
            return True
        except (UnicodeDecodeError, json.JSONDecodeError):
            return False

    assert sum(not parses(x) for x in lines) == m["bad"]["invalid_json"] + m["bad"]["invalid_utf8"]
    # good rows are unique; the only repeats are the planted duplicates
    assert len(lines) - len(set(lines)) == m["duplicates"]

    again = gen.generate(rows, tmp_path / "b", seed=3, shard_rows=1000, midb_dir=MIDB_DIR)
    assert again == m and _lines(tmp_path / "b") == lines
    other = gen.generate(rows, tmp_path / "c", seed=4, shard_rows=1000, midb_dir=MIDB_DIR)
    assert _lines(tmp_path / "c") != lines and other["rows"] == rows


def test_length_distribution_follows_midb(gen, tmp_path):
    gen.generate(2000, tmp_path, seed=1, shard_rows=2000, midb_dir=MIDB_DIR)
    records = []
    for line in _lines(tmp_path):
        try:
            records.append(json.loads(line.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
    made = sorted(
        len(r["output"]) for r in records if isinstance(r.get("output"), str) and 0 < len(r["output"]) < 100_000
    )
    pool = sorted(len(out) for samples in gen.load_pool(MIDB_DIR).values() for _, _, out in samples)
    for q in (0.25, 0.5, 0.75):
        a, b = made[int(q * len(made))], pool[int(q * len(pool))]
        assert abs(a - b) / b < 0.25, (q, a, b)


def test_turns_make_every_good_row_a_conversation(gen, tmp_path):
    m = gen.generate(600, tmp_path, seed=2, shard_rows=600, midb_dir=MIDB_DIR, turns=3)
    assert m["turns"] == 3 and set(m["good_by_shape"]) == {"sharegpt", "openai"}
    conversations = 0
    for line in _lines(tmp_path):
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        turns = record.get("conversations") or record.get("messages")
        if turns:
            conversations += 1
            assert len(turns) == 6 and len({json.dumps(t) for t in turns}) == 6
    assert conversations == m["good"] + m["duplicates"]
