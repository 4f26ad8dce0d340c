"""Language identification: ambiguous short texts take their expected language, real mismatches stay."""

from __future__ import annotations

import pandas as pd

from mdaq_spark import schema as S
from mdaq_spark.config import LanguageConfig
from mdaq_spark.langcodes import language_code
from mdaq_spark.stages.language import add_languages, identify_expecting, rank_languages

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
