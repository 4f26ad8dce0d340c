"""Each reader and record shape on small fixtures; quarantine reasons; count identity."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mdaq_spark import schema as S
from mdaq_spark.config import InputConfig
from mdaq_spark.io.readers import detect_file_types, read_corpus
from tests.conftest import require_midb


def _read(spark, *paths, **kw) -> pd.DataFrame:
    cfg = InputConfig(paths=[str(p) for p in paths], **kw)
    return read_corpus(spark, cfg).toPandas()


def _write_lines(path, lines):
    path.write_bytes(b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines) + b"\n")
    return path


def test_alpaca_jsonl_and_quarantine_reasons(spark, tmp_path):
    good = {"instruction": "Nenne drei Flüsse in Deutschland.", "input": "", "output": "Rhein, Elbe und Donau."}
    lines = [
        json.dumps(good, ensure_ascii=False),
        json.dumps({"instruction": "Translate", "input": "Hallo", "output": "Hello", "lang": "German"}),
        "",  # blank lines are not records
        '{"instruction": "abc", "out',
        "[1, 2, 3]",
        json.dumps({"instruction": "", "output": "x"}),
        json.dumps({"instruction": "Q", "output": "   "}),
        json.dumps({"instruction": "Q"}),
        json.dumps({"instruction": "Q", "output": None}),
        json.dumps({"instruction": 42, "output": "x"}),
        json.dumps({"instruction": "Q", "output": ["a", "b"]}),
        json.dumps({"instruction": "Q", "input": 7, "output": "x"}),
        json.dumps({"question": "Q", "answer": "x"}),
        b'{"instruction": "broken \xff bytes", "output": "x"}',
        json.dumps({"instruction": "Q", "output": "\ud800 lone surrogate"}),
        json.dumps({"instruction": "Q", "output": "x" * 50}),
    ]
    df = _read(spark, _write_lines(tmp_path / "a.jsonl", lines), max_field_chars=40)
    assert len(df) == len(lines) - 1  # every non-blank line is one row, kept or quarantined
    ok = df[df[S.QUARANTINE_REASON].isna()]
    assert len(ok) == 2
    first = ok[ok[S.INSTRUCTION] == good["instruction"]].iloc[0]
    assert first[S.RESPONSE] == good["output"] and first[S.INPUT] == "" and first[S.HISTORY] == "[]"
    assert first[S.RECORD_FORMAT] == "alpaca" and first[S.SOURCE].endswith("a.jsonl")
    assert ok[ok[S.INSTRUCTION] == "Translate"].iloc[0][S.LANG_HINT] == "de"
    reasons = sorted(df[S.QUARANTINE_REASON].dropna())
    assert reasons == sorted(
        [
            "unparsable_json",
            "not_an_object",
            "empty_instruction",
            "empty_response",
            "missing_response",
            "missing_response",
            "wrong_type_instruction",
            "wrong_type_response",
            "wrong_type_input",
            "unknown_record_format",
            "invalid_utf8_record",
            "invalid_utf8_response",
            "too_long_response",
        ]
    )
    bad = df[df[S.QUARANTINE_REASON] == "unparsable_json"].iloc[0]
    assert bad[S.RAW_RECORD] == '{"instruction": "abc", "out' and pd.isna(bad[S.SAMPLE_ID])


def test_sharegpt_json_array_multi_turn(spark, tmp_path):
    records = [
        {
            "id": "a",
            "conversations": [
                {"from": "system", "value": "Sois bref."},
                {"from": "human", "value": "Quelle est la capitale du Kenya ?"},
                {"from": "gpt", "value": "Nairobi."},
                {"from": "human", "value": "Et de la Tanzanie ?"},
                {"from": "gpt", "value": "Dodoma."},
            ],
        },
        {"id": "b", "conversations": [{"from": "human", "value": "Hi"}]},
        {"id": "c", "conversations": []},
        {"id": "d", "conversations": "not a list"},
    ]
    path = tmp_path / "chats.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    df = _read(spark, path, passthrough=["id"])
    assert len(df) == 4
    ok = df[df[S.QUARANTINE_REASON].isna()].iloc[0]
    assert (ok[S.INSTRUCTION], ok[S.RESPONSE], ok["id"]) == ("Quelle est la capitale du Kenya ?", "Nairobi.", "a")
    history = json.loads(ok[S.HISTORY])
    assert [h["role"] for h in history] == ["system", "human", "gpt"]
    assert history[2]["content"] == "Dodoma."
    assert sorted(df[S.QUARANTINE_REASON].dropna()) == [
        "no_assistant_turn",
        "no_user_turn",
        "wrong_type_conversations",
    ]


def test_openai_messages_and_custom_columns(spark, tmp_path):
    lines = [
        json.dumps(
            {
                "chat": [
                    {"role": "system", "content": "You are helpful."},
                    {"role": "user", "content": "¿Cuánto es 2+2?"},
                    {"role": "assistant", "content": "Son 4."},
                ],
                "origin": {"site": "x"},
            },
            ensure_ascii=False,
        ),
        json.dumps({"chat": [{"role": "system", "content": "only system"}]}),
        json.dumps({"chat": [{"role": "assistant", "content": "no question"}]}),
        json.dumps("a bare string"),
    ]
    df = _read(
        spark,
        _write_lines(tmp_path / "o.jsonl", lines),
        columns={"messages": "chat"},
        record_format="openai",
        passthrough=["origin"],
    )
    ok = df[df[S.QUARANTINE_REASON].isna()]
    assert len(ok) == 1 and ok.iloc[0][S.RESPONSE] == "Son 4." and ok.iloc[0][S.RECORD_FORMAT] == "openai"
    assert json.loads(ok.iloc[0]["origin"]) == {"site": "x"}
    assert sorted(df[S.QUARANTINE_REASON].dropna()) == ["no_user_turn", "no_user_turn", "not_an_object"]


def test_parquet_roundtrip_same_ids_as_jsonl(spark, tmp_path):
    rows = [
        {
            "instruction": "Eleza maana ya methali hii.",
            "input": "Haba na haba hujaza kibaba.",
            "output": "Kidogo kidogo huleta kingi.",
        },
        {"instruction": "写一句关于春天的诗。", "input": "", "output": "春风又绿江南岸。"},
    ]
    jsonl = _write_lines(tmp_path / "x.jsonl", [json.dumps(r, ensure_ascii=False) for r in rows])
    parquet = tmp_path / "x.parquet"
    pd.DataFrame(rows).to_parquet(parquet)
    a = _read(spark, jsonl).sort_values(S.SAMPLE_ID)
    b = _read(spark, parquet).sort_values(S.SAMPLE_ID)
    assert list(a[S.SAMPLE_ID]) == list(b[S.SAMPLE_ID])
    assert b[S.QUARANTINE_REASON].isna().all()


def test_sample_id_ignores_whitespace_and_composition():
    a = S.compute_sample_id("Caf\u00e9  au lait?", "", "Oui.", "[]")
    b = S.compute_sample_id(" Cafe\u0301 au\tlait? ", "", "Oui.\n", "[]")
    assert a == b and len(a) == 32
    assert a != S.compute_sample_id("Café au lait?", "", "Non.", "[]")


def test_midb_records_give_raw_and_revised(spark):
    path = require_midb("Italian") / "Italian.json"
    records = json.loads(path.read_text(encoding="utf-8"))
    df = _read(spark, path)
    # two samples per record, the malformed (translated-keys) record is one quarantine row
    well_formed = sum(1 for r in records if "Raw Instruction" in r)
    assert len(df) == 2 * well_formed + (len(records) - well_formed)
    assert set(df[S.VARIANT].dropna()) == {"raw", "revised"}
    assert set(df[S.LANG_HINT].dropna()) == {"it"}
    reasons = df[S.QUARANTINE_REASON].value_counts().to_dict()
    assert reasons.pop("unknown_record_format") == len(records) - well_formed
    assert all(reason.endswith(("_raw", "_revised")) for reason in reasons)


def test_detect_file_types(tmp_path):
    from mdaq_spark.errors import InputError

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "part-0.parquet").write_bytes(b"")
    (tmp_path / "a.ndjson").write_text("{}\n")
    (tmp_path / "a.csv").write_text("x\n")
    assert detect_file_types(str(tmp_path / "d")) == ["parquet"]
    assert detect_file_types(str(tmp_path / "a.ndjson")) == ["jsonl"]
    with pytest.raises(InputError, match="unknown file type"):
        detect_file_types(str(tmp_path / "a.csv"))
    with pytest.raises(InputError, match="does not exist"):
        detect_file_types(str(tmp_path / "missing.jsonl"))


def test_mixed_folder_reads_each_type_with_its_reader(spark, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    _write_lines(folder / "a.jsonl", [json.dumps({"instruction": "Nenne eine Farbe.", "output": "Blau."})])
    (folder / "b.json").write_text(
        json.dumps([{"conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi!"}]}])
    )
    (folder / "notes.txt").write_text("not a corpus file")
    df = _read(spark, folder)
    assert len(df) == 2 and df[S.QUARANTINE_REASON].isna().all()
    assert sorted(df[S.RESPONSE]) == ["Blau.", "Hi!"]


def test_delta_table_input_reads_the_current_snapshot(spark, tmp_path):
    deltalake = pytest.importorskip("deltalake")
    import pyarrow as pa

    table = tmp_path / "delta"
    first = pa.table({"instruction": ["Nenne eine Farbe.", "Say hi."], "output": ["Blau.", "Hi!"]})
    deltalake.write_deltalake(str(table), first)
    deltalake.write_deltalake(
        str(table), pa.table({"instruction": ["Count to 3."], "output": ["1, 2, 3."]}), mode="overwrite"
    )
    df = _read(spark, table)
    assert sorted(df[S.RESPONSE]) == ["1, 2, 3."]  # the overwritten version's files are not read
