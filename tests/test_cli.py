"""Every command has help with an example; errors map to their exit codes; --dry-run starts no Spark."""

from __future__ import annotations

import json

import pytest

from mdaq_spark.cli import build_parser, main

COMMANDS = ["run", "demo", "models", "train-qsm", "eval-qsm", "report", "inspect"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert "example:" in capsys.readouterr().out


def test_dry_run_prints_the_config_without_spark(tmp_path, capsys):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"instruction": "a", "output": "b"}\n')
    assert main(["run", "-i", str(corpus), "-o", str(tmp_path / "out"), "--dry-run", "--set", "seed=7"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["seed"] == 7 and printed["input"]["paths"] == [str(corpus)]
    assert not (tmp_path / "out").exists()


def test_exit_codes(tmp_path):
    assert main(["run", "-i", str(tmp_path / "missing"), "-o", str(tmp_path / "o"), "--dry-run"]) == 2
    assert main(["run", "-i", str(tmp_path), "-o", str(tmp_path / "o"), "--set", "selection.strategy=best"]) == 2
    assert main(["models", "prepare", "no-such-model"]) == 1
    assert main(["train-qsm", "--data", str(tmp_path / "none.json"), "--output", str(tmp_path / "q")]) == 3
