"""A corpus of every kind of bad input, shuffled among good rows: the whole job finishes and accounts for each row.

The expected outcome of every row is decided when the row is generated, so the test checks the exact
quarantine reason of each kind, that no good row is lost, and that count in = out + quarantined.
"""

from __future__ import annotations

import json
import random
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from mdaq_spark import schema as S
from mdaq_spark.rundir import NORMALIZED, QUARANTINE, SELECTED
from tests.test_pipeline import _run, _table

WORDS = "river mountain bread window summer letter garden engine market winter story answer".split()
BIG = 1_000_000  # characters: over the default input.max_field_chars (200,000)


def _good(i: int, rng: random.Random) -> dict:
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))
    return {"instruction": f"Question {i}: describe the {rng.choice(WORDS)}.", "input": "", "output": f"{words}."}


def _bad(kind: str, i: int, rng: random.Random) -> tuple[bytes, str]:
    """One JSON line of the given kind and the quarantine reason it must get."""
    g = _good(i, rng)
    cases = {
        "truncated_json": (json.dumps(g)[:25].encode(), "unparsable_json"),
        "not_an_object": (b'["instruction", "output"]', "not_an_object"),
        "null_instruction": (json.dumps({**g, "instruction": None}).encode(), "missing_instruction"),
        "missing_output": (json.dumps({"instruction": g["instruction"]}).encode(), "missing_response"),
        "int_output": (json.dumps({**g, "output": 12345}).encode(), "wrong_type_response"),
        "dict_input": (json.dumps({**g, "input": {"a": 1}}).encode(), "wrong_type_input"),
        "empty_instruction": (json.dumps({**g, "instruction": ""}).encode(), "empty_instruction"),
        "blank_output": (json.dumps({**g, "output": " \n\t "}).encode(), "empty_response"),
        "huge_output": (json.dumps({**g, "output": "a " * (BIG // 2)}).encode(), "too_long_response"),
        "invalid_utf8": (json.dumps(g).encode().replace(b"describe", b"descr\xff\xfeibe"), "invalid_utf8_record"),
        "lone_surrogate": (json.dumps({**g, "output": "ok \ud83d broken"}).encode(), "invalid_utf8_response"),
        "unknown_schema": (json.dumps({"prompt": g["instruction"], "completion": g["output"]}).encode(),
                           "unknown_record_format"),
        "sharegpt_no_reply": (json.dumps({"conversations": [{"from": "human", "value": "hi"}]}).encode(),
                              "no_assistant_turn"),
    }  # fmt: skip
    return cases[kind]


def test_fuzzed_corpus_every_row_accounted_for(spark, model_cache, tmp_path):
    rng = random.Random(20261125)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines: list[bytes] = []
    expected = Counter()
    good_rows = 0
    kinds = sorted([
        "truncated_json", "not_an_object", "null_instruction", "missing_output", "int_output", "dict_input",
        "empty_instruction", "blank_output", "huge_output", "invalid_utf8", "lone_surrogate", "unknown_schema",
        "sharegpt_no_reply",
    ])  # fmt: skip
    goods = []
    for i in range(24):
        record = _good(i, rng)
        goods.append(record)
        lines.append(json.dumps(record).encode())
        good_rows += 1
    for i, kind in enumerate(kinds * 2):
        line, reason = _bad(kind, 100 + i, rng)
        lines.append(line)
        expected[reason] += 1
    # mixed schemas in one file: ShareGPT and OpenAI records among Alpaca ones are good rows too
    lines.append(json.dumps({"conversations": [{"from": "human", "value": "Name a fruit."},
                                               {"from": "gpt", "value": "An apple."}]}).encode())  # fmt: skip
    lines.append(json.dumps({"messages": [{"role": "user", "content": "Name a colour."},
                                          {"role": "assistant", "content": "Blue."}]}).encode())  # fmt: skip
    good_rows += 2
    # exact duplicates (the same record under another id field) collapse to one sample
    for record in goods[:3]:
        lines.append(json.dumps({**record, "id": "dup"}).encode())
        expected[S.DUPLICATE_REASON] += 1
    rng.shuffle(lines)
    (corpus / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    # a second file type: Parquet with a null response and an empty file beside it
    pq.write_table(
        pa.table({"instruction": ["Count to three.", "Say hello."], "output": ["One, two, three.", None]}),
        corpus / "part.parquet",
    )
    good_rows += 1
    expected["missing_response"] += 1
    (corpus / "empty.jsonl").write_bytes(b"")  # holds no record: adds no row and breaks nothing

    stats = _run(spark, model_cache, [corpus], tmp_path / "run", "selection.budget_fraction=0.5")
    counts = stats["counts"]
    assert counts["identity_holds"]
    quarantine = _table(spark, tmp_path / "run", QUARANTINE)
    assert Counter(quarantine[S.QUARANTINE_REASON]) == expected
    normalized = _table(spark, tmp_path / "run", NORMALIZED)
    assert len(normalized) == good_rows and normalized[S.SAMPLE_ID].is_unique
    assert counts["records_read"] == good_rows + sum(expected.values())
    # the 1 MB rows kept their (cut) raw record for debugging, not the whole megabyte
    huge = quarantine[quarantine[S.QUARANTINE_REASON] == "too_long_response"]
    assert len(huge) == 2 and huge[S.RAW_RECORD].str.len().max() <= 2000
    selected = _table(spark, tmp_path / "run", SELECTED)
    assert 0 < len(selected) <= good_rows
