"""Every command has help with an example; errors map to their exit codes; --dry-run starts no Spark."""

from __future__ import annotations

import json

import pytest

from mdaq_spark.cli import build_parser, main

COMMANDS = ["run", "demo", "models", "train-qsm", "eval-qsm", "report", "inspect", "export", "diff"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert "example:" in capsys.readouterr().out


def test_dry_run_checks_inputs_and_prints_the_plan_without_spark(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "c.jsonl").write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a"}\nnot json\n')
    (corpus / "d.json").write_text(
        '[{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "r"}]}]'
    )
    out = tmp_path / "out"
    assert main(["run", "-i", str(corpus), "-o", str(out), "--dry-run", "--set", "seed=7"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["config"]["seed"] == 7 and plan["config"]["input"]["paths"] == [str(corpus)]
    by_type = {entry["file_type"]: entry for entry in plan["inputs"]}
    assert set(by_type) == {"json", "jsonl"}
    peek = by_type["jsonl"]["first_20_records_per_file"]
    assert peek == {"record_formats": {"alpaca": 1}, "rejected": {"missing_response": 1, "unparsable_json": 1}}
    assert by_type["json"]["first_20_records_per_file"]["record_formats"] == {"sharegpt": 1}
    assert plan["stages"]["ingest"] == "runs" and "embed" not in plan["stages"]
    assert plan["model"]["encoder"] == "multilingual-e5-small"
    assert plan["scoring"]["scorers"] == [
        {"name": "qsm", "kind": "qsm", "from": "mdaq_spark.scoring.qsm", "model": None, "weight": 1.0}
    ]
    assert not out.exists()  # nothing written, no Spark started
    two = ["--set", "scoring.scorers=[{kind: qsm}, {kind: length, weight: 0.5}]", "--set", "scoring.normalise=z"]
    assert main(["run", "-i", str(corpus), "-o", str(out), "--dry-run", *two]) == 0
    scoring = json.loads(capsys.readouterr().out)["scoring"]
    assert [(x["name"], x["weight"]) for x in scoring["scorers"]] == [("qsm", 1.0), ("length", 0.5)]
    assert scoring["normalise"] == "z" and scoring["aggregate"] == "mean" and scoring["turns"] == "all"
    unknown = ["--set", "scoring.scorers=[{kind: no_such_scorer}]"]
    assert main(["run", "-i", str(corpus), "-o", str(out), "--dry-run", *unknown]) == 2


def test_demo_exports_every_format_into_its_run_directory(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--dry-run"]) == 0
    exports = json.loads(capsys.readouterr().out)["output"]["exports"]
    assert exports == {f: f"{out}/export/{f}" for f in ("alpaca", "sharegpt", "openai", "parquet")}
    assert main(["demo", "-o", str(out), "--dry-run", "--set", "output.export=[]"]) == 0
    assert json.loads(capsys.readouterr().out)["output"]["exports"] == {}


def test_exit_codes(tmp_path):
    assert main(["run", "-i", str(tmp_path / "missing"), "-o", str(tmp_path / "o"), "--dry-run"]) == 2
    assert main(["run", "-i", str(tmp_path), "-o", str(tmp_path / "o"), "--set", "selection.strategy=best"]) == 2
    assert main(["models", "prepare", "no-such-model"]) == 1
    assert main(["train-qsm", "--data", str(tmp_path / "none.json"), "--output", str(tmp_path / "q")]) == 3
