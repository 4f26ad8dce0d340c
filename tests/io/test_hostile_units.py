"""The rules behind hostile-input handling, in plain Python: language values, blank text, record cutting."""

from __future__ import annotations

import json

import pytest

from mdaq_spark import schema as S
from mdaq_spark.config import ColumnsConfig, InputConfig
from mdaq_spark.io import inputs, readers, records
from mdaq_spark.io import validate as v
from mdaq_spark.langcodes import file_language, language_code

EN = "The river runs past the old mill and the children watch the boats go by."


@pytest.mark.parametrize(
    ("value", "code"),
    [("German", "de"), ("de", "de"), ("DE", "de"), ("pt-BR", "pt"), ("zh_Hans", "zh"), ("fil", "fil"),
     ("-", "und"), ("_x", "und"), ("", "und"), ("\ud800", "und"), ("x" * 300, "und"), ("24", "und"),
     ("klingon", "und"), (None, "und"), (7, "und")],
)  # fmt: skip
def test_language_code_is_a_code_or_und(value, code):
    assert language_code(value) == code


@pytest.mark.parametrize(
    ("stem", "code"),
    [("German", "de"), ("de", "de"), ("pt-BR", "pt"), ("24_mixed", None), ("24", None), ("my_data", None),
     ("no_labels", None), ("all", None)],
)  # fmt: skip
def test_file_language_only_from_a_whole_language_name(stem, code):
    assert file_language(stem) == code


def test_blank_means_no_visible_character():
    assert v.is_blank("\u200b\u200f\u2060 \t\ufeff") and v.is_blank("")
    assert not v.is_blank("\u200ba") and not v.is_blank("。")
    with pytest.raises(v.RecordRejected, match="empty_instruction"):
        v.required_text({"i": "\u200b\u2060"}, "i", "instruction", 100)


def _openai(messages):
    return records.openai({"messages": messages}, records.AdapterSettings(ColumnsConfig(), 10_000))[0]


def test_openai_content_parts_and_tool_calls():
    parts = [{"type": "text", "text": "Part one."}, {"type": "image_url", "image_url": {"url": "x"}},
             {"type": "text", "text": "Part two."}]  # fmt: skip
    sample = _openai([{"role": "user", "content": parts}, {"role": "assistant", "content": "Yes."}])
    assert sample.instruction == "Part one.\nPart two." and sample.response == "Yes."
    assert json.loads(sample.prompt_fields) == {"content_parts": [parts[1]]}  # the image is kept with its turn
    sample = _openai(
        [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}, {"role": "user", "content": parts}]
    )
    assert json.loads(sample.history) == [
        {"role": "user", "content": "Part one.\nPart two.", "content_parts": [parts[1]]}
    ]
    call = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    sample = _openai([
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": call},
        {"role": "tool", "tool_call_id": "c1", "content": "rain"},
        {"role": "assistant", "content": "It rains."},
    ])  # fmt: skip
    assert sample.response == "It rains."
    history = json.loads(sample.history)
    assert history[0]["tool_calls"] == call and history[1] == {"role": "tool", "tool_call_id": "c1", "content": "rain"}
    with pytest.raises(v.RecordRejected, match="malformed_content_part_messages"):
        _openai([{"role": "user", "content": ["text"]}, {"role": "assistant", "content": "Yes."}])
    with pytest.raises(v.RecordRejected, match="malformed_content_part_messages"):
        _openai([{"role": "user", "content": [{"type": "text", "text": 5}]}, {"role": "assistant", "content": "Y"}])
    with pytest.raises(v.RecordRejected, match="no_user_turn"):
        _openai([{"role": "user", "content": [{"type": "image_url"}]}, {"role": "assistant", "content": "Yes."}])
    with pytest.raises(v.RecordRejected, match="wrong_type_messages"):
        _openai([{"role": "user", "content": 42}, {"role": "assistant", "content": "Yes."}])


def test_a_turn_may_repeat_its_role_and_text_under_the_other_shapes_names_never_contradict_them():
    settings = records.AdapterSettings(ColumnsConfig(), 10_000)

    def sharegpt(*turns):
        return records.sharegpt({"conversations": list(turns)}, settings)[0]

    same = sharegpt(
        {"from": "human", "value": "Hi?", "role": "user", "content": "Hi?"}, {"from": "gpt", "value": "Hi."}
    )
    assert (same.instruction, same.prompt_fields) == ("Hi?", None)  # a repeat, nothing lost
    for bad in ({"role": "assistant"}, {"content": "Bye?"}, {"role": 3}):
        with pytest.raises(v.RecordRejected, match="conflicting_turn_keys_conversations"):
            sharegpt({"from": "human", "value": "Hi?", **bad}, {"from": "gpt", "value": "Hi."})
    with pytest.raises(v.RecordRejected, match="conflicting_turn_keys_messages"):
        _openai([{"role": "user", "content": "Hi?", "from": "gpt"}, {"role": "assistant", "content": "Hi."}])
    # a key that is neither stays with its turn
    kept = _openai([{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hi.", "weight": 0}])
    assert json.loads(kept.response_fields) == {"weight": 0}


def _preview(tmp_path, name: str, data: bytes) -> list[dict]:
    path = tmp_path / name
    path.write_bytes(data)
    return readers.preview(str(path), inputs.file_type_of(name), InputConfig(), 100)


def _good(i: int) -> dict:
    return {"instruction": f"Question {i}: {EN}", "output": EN}


def test_truncated_array_keeps_its_complete_records(tmp_path):
    text = json.dumps([_good(i) for i in range(5)], indent=2)
    rows = _preview(tmp_path, "cut.json", text[: text.index("Question 4") + 3].encode())
    assert [r[S.QUARANTINE_REASON] for r in rows] == [None] * 4 + ["truncated_json_document"]
    assert [r[S.INSTRUCTION][:10] for r in rows[:4]] == [f"Question {i}" for i in range(4)]
    assert rows[4][S.RAW_RECORD].startswith('{\n    "instruction": "Que')
    # a broken element in the middle: the elements before it, then one row for the rest
    rows = _preview(tmp_path, "mid.json", b'[{"instruction": "a", "output": "b"}, {"instruction": , 1, 2]')
    assert [r[S.QUARANTINE_REASON] for r in rows] == [None, "truncated_json_document"]


def test_json_lines_in_a_json_file_split_on_newline_only(tmp_path):
    lines = [
        json.dumps({"instruction": f"Q{i} \u2028 x \u0085 y", "output": "A"}, ensure_ascii=False) for i in range(3)
    ]
    rows = _preview(tmp_path, "lines.json", ("\n".join(lines) + "\n\t\n\f\n").encode())
    assert [r[S.QUARANTINE_REASON] for r in rows] == [None] * 3


def test_blank_lines_bom_deep_nesting_huge_integers(tmp_path):
    data = b"\n".join([
        b"\xef\xbb\xbf" + json.dumps(_good(0)).encode(),
        b"\t\t", b"\x0c", b" \x0b ",
        b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        json.dumps(_good(1)).encode()[:-1] + b', "n": ' + b"9" * 5000 + b"}",
        b'{"instruction": "a", "instruction": "last", "output": "b"}\r',
    ])  # fmt: skip
    rows = _preview(tmp_path, "a.jsonl", data)
    assert [r[S.QUARANTINE_REASON] for r in rows] == [None, "too_deeply_nested_json", None, None]
    assert rows[3][S.INSTRUCTION] == "last"


def test_parquet_binary_and_nan_as_the_job_renders_them(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(
        pa.table(
            {
                "instruction": pa.array([b"Hello there", b"\xff\xfe", b"Hi"], pa.binary()),
                "output": pa.array([1.0, 2.0, float("nan")]),
            }
        ),  # fmt: skip
        path,
    )
    rows = readers.preview(str(path), "parquet", InputConfig(), 10)
    # the instruction is checked first: bytes that are no UTF-8 are the wrong type before any float is
    assert [r[S.QUARANTINE_REASON] for r in rows] == ["wrong_type_response", "wrong_type_instruction"] + [
        "wrong_type_response"
    ]
    pq.write_table(pa.table({"instruction": pa.array([b"Hello", b"\xff"], pa.binary()), "output": ["A", "B"]}), path)
    rows = readers.preview(str(path), "parquet", InputConfig(), 10)
    assert [r[S.QUARANTINE_REASON] for r in rows] == [None, "wrong_type_instruction"]
    assert rows[0][S.INSTRUCTION] == "Hello"


def test_discovery_reads_any_case_and_names_what_it_skips(tmp_path):
    for name in ("a.JSONL", "b.Json", "c.parquet", ".h.jsonl", "_m.jsonl", "x.txt", "_d/y.jsonl", "s/z.NDJSON"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    found = inputs.discover(str(tmp_path))
    rel = {k: sorted(str(p).removeprefix(f"{tmp_path}/") for p in files) for k, files in found.files.items()}
    assert rel == {"json": ["b.Json"], "jsonl": ["a.JSONL", "s/z.NDJSON"], "parquet": ["c.parquet"]}
    skipped = {x.path.removeprefix(f"{tmp_path}/"): x.reason for x in found.skipped}
    assert skipped == {".h.jsonl": inputs.HIDDEN, "_m.jsonl": inputs.HIDDEN, "_d/y.jsonl": inputs.HIDDEN,
                       "x.txt": inputs.OTHER_TYPE}  # fmt: skip
