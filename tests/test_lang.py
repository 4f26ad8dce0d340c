"""Language identification: ambiguous short texts take their expected language, real mismatches stay."""

from __future__ import annotations

import pandas as pd
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.config import LanguageConfig
from mdaq_spark.langcodes import language_code
from mdaq_spark.stages.language import KNOWN_SCRIPTS, add_languages, detectable, identify_expecting, rank_languages

MANSA = "Who was Mansa Musa?"  # py3langid: Hausa 0.14 before English 0.11
MOROCCO = "ما عاصمة المغرب؟"  # Moroccan Arabic 0.54 before Standard Arabic 0.39
EN_ANSWER = (
    "Mansa Musa was the ruler of the Mali Empire in the fourteenth century, famous for his immense wealth "
    "and for his pilgrimage to Mecca in 1324, during which he gave away so much gold that its price fell."
)
DE_QUESTION = "Was sind die Vorteile von Fahrradfahren in der Stadt?"  # German, near 1.0


def _ids(texts, expected, min_prob=0.05):
    ranked = rank_languages(pd.Series(texts), None, 1000)
    return identify_expecting(ranked, pd.Series(expected, dtype=object), min_prob).tolist()


def test_an_ambiguous_text_takes_its_expected_language():
    assert _ids([MANSA], [None]) == ["ha"]  # the detector alone is wrong
    assert _ids([MANSA], ["en"]) == ["en"]
    assert _ids([MOROCCO], ["ar"]) == ["ar"]
    assert _ids([MOROCCO], ["ar"], min_prob=1.0) == ["ary"]  # 1: plain detection


def test_a_clear_text_keeps_its_own_language():
    assert _ids([DE_QUESTION], ["en"]) == ["de"]  # a German question answered in English stays German
    assert _ids([EN_ANSWER], ["fr"]) == ["en"]  # a long text is never ambiguous
    assert _ids(["", None], ["en", "en"]) == ["und", "und"]


def test_a_detected_expectation_must_also_win_on_both_texts():
    question, answer = "请解释一下地球为什么有四季。", "因为地球转。"  # the demo's answer: Wu 0.50, Chinese 0.48
    probs = rank_languages(pd.Series([question, answer]), None, 1000)
    answer_probs = probs.of(1)
    assert max(answer_probs, key=answer_probs.get) == "wuu" and probs.of(0)["wuu"] >= 0.05
    assert identify_expecting(probs[:1], pd.Series(["wuu"]), 0.05).tolist() == ["wuu"]  # as a hint, it would win
    assert identify_expecting(probs[:1], pd.Series(["wuu"]), 0.05, support=probs[1:]).tolist() == ["zh"]


def test_add_languages_uses_the_response_when_there_is_no_hint(spark):
    rows = [
        ("a", MANSA, "", EN_ANSWER, None),  # no hint: the English answer settles the question's language
        ("b", DE_QUESTION, "", EN_ANSWER, None),  # a real mismatch, kept visible
        ("c", MOROCCO, "", "عاصمة المغرب هي مدينة الرباط، وتقع على ساحل المحيط الأطلسي.", "ar"),
    ]
    df = spark.createDataFrame(rows, [S.SAMPLE_ID, S.INSTRUCTION, S.INPUT, S.RESPONSE, S.LANG_HINT])
    got = {r[S.SAMPLE_ID]: r for r in add_languages(df, LanguageConfig()).collect()}
    assert (got["a"][S.LANG], got["a"][S.LANG_INSTRUCTION], got["a"][S.LANG_MISMATCH]) == ("en", "en", False)
    assert (got["b"][S.LANG], got["b"][S.LANG_INSTRUCTION], got["b"][S.LANG_RESPONSE]) == ("de", "de", "en")
    assert got["b"][S.LANG_MISMATCH]
    assert (got["c"][S.LANG], got["c"][S.LANG_INSTRUCTION]) == ("ar", "ar")
    plain = {r[S.SAMPLE_ID]: r for r in add_languages(df, LanguageConfig(expected_lang_min_prob=1.0)).collect()}
    assert plain["a"][S.LANG] == "ha" and plain["c"][S.LANG_INSTRUCTION] == "ary"


def test_language_code_normalises_names():
    assert language_code("German") == "de" and language_code("pt-BR") == "pt" and language_code("KO") == "ko"


def test_detectable_is_the_letter_rule_spark_regexes_state(spark):
    """Enough letters, at least half in a known script, within max_chars: as Java's regex counts them."""
    cfg = LanguageConfig()
    texts = [
        MANSA, MOROCCO, DE_QUESTION, "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ ᎠᏍᎦᏯ", "ᚠᚢᚦᚨᚱᚲ ᚷᚹ", "12 + 30 = ?", "OK", "Ok!", "abc", "ᏣᎳᎩ abc",
        "ᏣᎳᎩᏣ abc", "𠀀𠀁𠀂 ok", "😀😀😀 abc", "", "x" * 1500 + "ᏣᎳᎩ" * 400, "ᏣᎳᎩ" * 400 + "x" * 1500,
    ]  # fmt: skip
    known = "".join(f"\\p{{Is{name}}}" for name in KNOWN_SCRIPTS)
    head = F.substring("t", 1, cfg.max_chars)
    letters = F.regexp_count(head, F.lit("\\p{L}"))
    in_known = F.regexp_count(head, F.lit(f"[{known}&&\\p{{L}}]"))
    rule = (letters >= cfg.min_letters) & (in_known * 2 >= letters)
    rows = spark.createDataFrame([(t,) for t in texts], "t string").select("t", rule.alias("ok")).collect()
    expected = [r["ok"] for r in rows]
    got = detectable(pd.Series([r["t"] for r in rows], dtype=object), cfg).notna().tolist()
    assert got == expected
    assert expected[:3] == [True, True, True] and expected[3:8] == [False] * 5  # the cases mean what they say
