"""Translation-defect flags on constructed samples: each rule has a case that trips it and one that must not.

Languages come from the real py3langid UDF of the ingest stage (lang.add_languages), not typed in.
"""

from __future__ import annotations

import pytest

from mdaq_spark import schema as S
from mdaq_spark.config import CrossLingualConfig, FiltersConfig, LanguageConfig, TranslationConfig
from mdaq_spark.stages.language import add_languages
from mdaq_spark.stages.tag.heuristics import add_flags
from mdaq_spark.stages.tag.translation import longest_source_run

DE_ANSWER = (
    "Ein guter Plan für den Morgen beginnt mit einem Glas Wasser. Danach hilft eine kurze Runde Bewegung, "
    "bevor man frühstückt und den Tag in Ruhe plant."
)
EN_PARAGRAPH = (
    "The most important thing is to stay hydrated throughout the whole day. "
    "You should also take regular breaks and go for a short walk after lunch. "
    "Finally, make sure you get enough sleep every single night."
)
TRANSLATION_RULES = {
    "response_language_differs",
    "instruction_language_differs",
    "untranslated_span",
    "leftover_placeholder",
    "translation_note",
}
CASES = [
    # (name, lang hint, instruction, response, expected translation flags, cross-lingual)
    ("clean_de", "de", "Wie beginne ich den Tag gut?", DE_ANSWER, set(), False),
    ("english_answer", "de", "Wie beginne ich den Tag gut?", EN_PARAGRAPH,
     {"response_language_differs", "untranslated_span"}, False),
    ("asked_for_english", "de", "Übersetze den folgenden Text ins Englische: " + DE_ANSWER,
     "A good plan for the morning begins with a glass of water. After that, a short round of exercise helps "
     "before you have breakfast and plan the day calmly.", set(), True),
    ("english_in_the_middle", "de", "Wie bleibe ich gesund?",
     DE_ANSWER + " Hier sind meine weiteren Tipps für jeden Tag. " + EN_PARAGRAPH + " " + DE_ANSWER,
     {"untranslated_span"}, False),
    ("one_english_name_is_fine", "de", "Welches Buch empfiehlst du?",
     "Ich empfehle das Buch „The Old Man and the Sea“ von Ernest Hemingway, weil es kurz und sehr bewegend ist.",
     set(), False),
    ("code_block_is_not_untranslated", "de", "Wie gebe ich in Python etwas aus?",
     "Mit der Funktion print gibt man in Python einen Text auf dem Bildschirm aus:\n```python\n"
     "# print the greeting to the console and then print the farewell message as well\n"
     "print('Hello world, this is the first line of the program that we are writing today')\n```", set(), False),
    ("english_instruction", "de", "Write a short story about a young orphan who discovers a hidden power.",
     "Es war einmal ein Waisenkind, das in einem kleinen Dorf lebte und eines Tages eine verborgene Kraft "
     "entdeckte.", {"instruction_language_differs"}, False),
    ("short_number_answer", "de", "Wie viel ist sechs plus zwölf?", "18", set(), False),
    ("malay_in_indonesian_is_fine", "id", "Apakah ibu kota Malaysia dan bagaimana keadaannya?",
     "Ibu negara Malaysia ialah Kuala Lumpur, sebuah bandar raya yang sibuk dan moden dengan banyak bangunan "
     "tinggi.", set(), False),
    ("template_slot", "de", "Schreibe eine Einladung.", "Liebe {{ name }}, wir laden dich herzlich zu unserer "
     "Feier am Samstag ein.", {"leftover_placeholder"}, False),
    ("english_slot", "de", "Schreibe eine Einladung.", "Liebe Freunde, wir laden euch ein. Mit Grüßen, [Your Name]",
     {"leftover_placeholder"}, False),
    ("translated_slot_is_fine", "de", "Schreibe eine Werbung.", "Entdecken Sie [Firmennamen], die neue Marke "
     "für Kleidung, die Qualität und Stil vereint.", set(), False),
    ("translated_slot_and_bold_are_fine", "de", "Schreibe eine Absage.", "Es tut uns __sehr__ leid, aber wir "
     "müssen absagen. Mit freundlichen Grüßen, [Name des Herausgebers]", set(), False),
    ("translator_note", "de", "Nenne ein Sprichwort.", "Morgenstund hat Gold im Mund. (Anmerkung des Übersetzers: "
     "ein deutsches Sprichwort.)", {"translation_note"}, False),
    ("noinput_tag", "fr", "Donne un conseil pour dormir. <noinput>",
     "Il faut se coucher tous les soirs à la même heure.", {"leftover_placeholder"}, False),
]  # fmt: skip


@pytest.fixture(scope="module")
def languages(spark):
    rows = [(name, hint, ins, "", resp) for name, hint, ins, resp, _, _ in CASES]
    df = spark.createDataFrame(
        rows,
        f"{S.SAMPLE_ID} string, {S.LANG_HINT} string, {S.INSTRUCTION} string, {S.INPUT} string, {S.RESPONSE} string",
    )
    return add_languages(df, LanguageConfig()).cache()


@pytest.fixture(scope="module")
def flagged(languages):
    out = add_flags(languages, FiltersConfig(rules=[]), TranslationConfig(), CrossLingualConfig())
    return {r[S.SAMPLE_ID]: r for r in out.collect()}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_translation_rule(flagged, case):
    name, _, _, _, expected, crosslingual = case
    row = flagged[name]
    assert set(row[S.FLAGS]) & TRANSLATION_RULES == expected
    assert row[S.CROSSLINGUAL] is crosslingual


def test_sections_switch_rules_off(languages):
    cfg = TranslationConfig(rules=["leftover_placeholder"])
    out = {r[S.SAMPLE_ID]: r[S.FLAGS] for r in add_flags(languages, FiltersConfig(rules=[]), cfg).collect()}
    assert out["english_answer"] == [] and out["template_slot"] == ["leftover_placeholder"]
    # without the cross-lingual section the English translation is a wrong-language answer
    off = add_flags(languages, FiltersConfig(rules=[]), TranslationConfig(), CrossLingualConfig(enabled=False))
    row = {r[S.SAMPLE_ID]: r for r in off.collect()}["asked_for_english"]
    assert row[S.CROSSLINGUAL] is False and "response_language_differs" in row[S.FLAGS]
    nothing = add_flags(languages, FiltersConfig(rules=[]), TranslationConfig(enabled=False)).collect()
    assert all(r[S.FLAGS] == [] for r in nothing)


def test_longest_source_run_counts_only_consecutive_segments():
    assert longest_source_run(EN_PARAGRAPH, "de", "en", 25) >= len(EN_PARAGRAPH) - 5
    mixed = "Das ist ein deutscher Satz über das Wetter. The weather is lovely in the spring today. Heute regnet es."
    assert 0 < longest_source_run(mixed, "de", "en", 25) < 70
    assert longest_source_run(EN_PARAGRAPH, "en", "en", 25) == 0  # the source language itself
