"""Domain tags (math / code / general) on constructed samples and the per-language caps."""

from __future__ import annotations

import pytest

from mdaq_spark import schema as S
from mdaq_spark.config import DomainCapConfig
from mdaq_spark.stages.tag.domains import domain_tag, over_cap

CODE, MATH, GENERAL = S.CODE, S.MATH, S.GENERAL

CASES = [
    # (name, instruction, response, expected domain)
    ("fenced_code", "Wie gebe ich Text aus?", "So geht es:\n```python\nprint('hallo')\n```", CODE),
    ("code_lines", "Schreibe eine Funktion.", "def quadrat(x):\n    return x * x", CODE),
    ("sql", "Query all users.", "SELECT name FROM users WHERE age > 30;", CODE),
    ("arithmetic", "Berechne die Fläche.", "Fläche = 3 * 4 = 12 Quadratmeter, Umfang = 2 * (3 + 4) = 14 Meter.", MATH),
    ("latex", "Löse die Gleichung.", "Die Lösung ist $x = \\frac{1}{2}$.", MATH),
    ("one_date_range_is_not_math", "Wann war der Krieg?", "Er dauerte von 1939-1945 und veränderte Europa.", GENERAL),
    ("prose", "Erzähle vom Herbst.", "Im Herbst fallen die Blätter, und die Tage werden kürzer.", GENERAL),
    ("numbers_without_operators", "Nenne drei Zahlen.", "Sieben, 12 und 40.", GENERAL),
]  # fmt: skip


@pytest.fixture(scope="module")
def tagged(spark):
    rows = [(name, ins, "", resp) for name, ins, resp, _ in CASES]
    df = spark.createDataFrame(
        rows, f"{S.SAMPLE_ID} string, {S.INSTRUCTION} string, {S.INPUT} string, {S.RESPONSE} string"
    )
    return {
        r[S.SAMPLE_ID]: r[S.DOMAIN]
        for r in df.select(S.SAMPLE_ID, domain_tag(DomainCapConfig()).alias(S.DOMAIN)).collect()
    }


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_domain_tag(tagged, case):
    assert tagged[case[0]] == case[3]


def test_caps_keep_the_best_per_language_and_domain(spark):
    rows = []
    for lang in ("de", "fr", "en"):
        for i in range(5):
            rows.append((f"{lang}-m{i}", lang, S.MATH, 0.1 * i))
            rows.append((f"{lang}-c{i}", lang, S.CODE, 0.5))  # all tied: sample_id decides
            rows.append((f"{lang}-g{i}", lang, S.GENERAL, 0.1 * i))
    df = spark.createDataFrame(rows, f"{S.SAMPLE_ID} string, {S.LANG} string, {S.DOMAIN} string, {S.QSM_SCORE} double")
    cfg = DomainCapConfig(enabled=True, max_per_lang={"math": 2, "code": 3})
    out = {r[S.SAMPLE_ID]: r["_over"] for r in df.select(S.SAMPLE_ID, over_cap(df, cfg).alias("_over")).collect()}
    for lang in ("de", "fr"):
        assert [i for i in range(5) if not out[f"{lang}-m{i}"]] == [3, 4]  # the two best-scored math samples
        assert [i for i in range(5) if not out[f"{lang}-c{i}"]] == [0, 1, 2]  # ties: lowest sample_id first
        assert not any(out[f"{lang}-g{i}"] for i in range(5))  # general is never capped
    assert not any(v for k, v in out.items() if k.startswith("en-"))  # the exempt source language
