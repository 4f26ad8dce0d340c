"""Rule-based flags on constructed samples (each rule: a case that trips it and one that must not)."""

from __future__ import annotations

import pytest

from mdaq_spark import schema as S
from mdaq_spark.config import FiltersConfig
from mdaq_spark.stages.tag.heuristics import add_flags

LONG_OK = "Mehl, Wasser, Hefe und Salz mischen, zehn Minuten kneten und eine Stunde gehen lassen. Dann backen."
CASES = [
    # (name, instruction, response, lang_mismatch, expected flags)
    ("clean", "Wie backe ich Brot?", LONG_OK, False, []),
    (
        "copy",
        "Schreibe ein kurzes Gedicht über den Herbst.",
        "Schreibe ein kurzes Gedicht über den Herbst.",
        False,
        ["response_copies_instruction"],
    ),
    (
        "copy_with_case_and_punct",
        "Write a haiku about rain",
        "write a haiku about rain!",
        False,
        ["response_copies_instruction"],
    ),
    ("answer_quoting_question", "What is 2+2?", "What is 2+2? It is 4, because two plus two makes four.", False, []),
    (
        "truncated",
        "Erkläre die Mülltrennung.",
        "In den meisten Haushalten gibt es mehrere Tonnen: die gelbe Tonne für Verpackungen und die graue Tonne f",
        False,
        ["truncated_response"],
    ),
    ("short_no_period_is_fine", "Nenne eine Farbe.", "Blau", False, []),
    (
        "list_ends_without_period",
        "Nenne Fähigkeiten.",
        "Wichtige Fähigkeiten sind:\n1. Kommunikation\n2. Teamarbeit\n3. Organisation\n4. Zeitmanagement und Planung",
        False,
        [],
    ),
    (
        "hashtags",
        "Write a tweet about recycling.",
        "Recycling one can saves enough energy to run a TV for three hours. Start today! #Recycling #ZeroWaste",
        False,
        [],
    ),
    (
        "ends_with_code",
        "Print hello in Python.",
        "Use the print function like this:\n```python\nprint('hello')\n```",
        False,
        [],
    ),
    (
        "chinese_full_stop",
        "介绍一下长城。",
        "长城是中国古代的军事防御工程，全长两万多公里，是世界上最著名的建筑之一，每年吸引大量游客前来参观游览和拍照留念。",
        False,
        [],
    ),
    ("too_short", "Say something.", "k", False, ["response_too_short"]),
    ("repetitive", "List fruits.", "apple\napple\napple\napple\napple\nbanana", False, ["repetitive_response"]),
    ("list_not_repetitive", "List fruits.", "apple\nbanana\ncherry\ndate\nelderberry", False, []),
    ("mismatch_not_flagged_by_default", "Wie heißt du?", "My name is Ada.", True, []),
]


@pytest.fixture(scope="module")
def flagged(spark):
    rows = [(name, ins, "", resp, mismatch) for name, ins, resp, mismatch, _ in CASES]
    df = spark.createDataFrame(
        rows,
        f"{S.SAMPLE_ID} string, {S.INSTRUCTION} string, {S.INPUT} string, "
        f"{S.RESPONSE} string, {S.LANG_MISMATCH} boolean",
    )
    return df


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_rule(flagged, case):
    out = {r[S.SAMPLE_ID]: r[S.FLAGS] for r in add_flags(flagged, FiltersConfig()).collect()}
    assert out[case[0]] == case[4]


def test_lang_mismatch_and_rule_selection(flagged):
    cfg = FiltersConfig(lang_mismatch=True, rules=["response_too_short"])
    out = {r[S.SAMPLE_ID]: r[S.FLAGS] for r in add_flags(flagged, cfg).collect()}
    assert out["mismatch_not_flagged_by_default"] == ["lang_mismatch"]
    assert out["copy"] == [] and out["too_short"] == ["response_too_short"]
