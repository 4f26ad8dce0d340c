"""Cross-lingual samples (XL-Instruct): the instruction asks for an answer in another language.

A response in a language other than the sample's own is usually a translation defect
(MIDB), but "Übersetze ins Englische: ..." answered in English is exactly right, and such
samples teach a skill monolingual ones cannot. The rule is cheap and conservative: the
response is identified (enough letters, not a confusable neighbour of the sample's
language) as language X, and the prompt names X. Those samples form their own group with
their own budget instead of being flagged.
"""

from __future__ import annotations

import re

from pyspark.sql import Column
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.config import CrossLingualConfig, TranslationConfig

# lower-case stems by which a prompt names a language, in English, the language itself and
# the MIDB languages (a stem matches its inflections: "anglick" -> "anglickém"). Country
# names are left out on purpose ("Italien" is the country in German, the language in French).
LANGUAGE_NAMES: dict[str, tuple[str, ...]] = {
    "en": ("english", "englisch", "anglais", "inglés", "ingles", "inglese", "inglês", "inggeris", "inggris",
           "angličtin", "anglick", "영어", "ngilizce", "英语", "英文", "英語"),
    "de": ("german", "deutsch", "allemand", "alemán", "tedesco", "alemão", "jerman", "němčin", "německ",
           "독일어", "almanca", "德语"),
    "fr": ("french", "französisch", "français", "francais", "francés", "francese", "francês", "perancis",
           "francouzšt", "francouzsk", "프랑스어", "fransızca", "法语"),
    "es": ("spanish", "spanisch", "espagnol", "español", "espanol", "spagnolo", "espanhol", "spanyol",
           "sepanyol", "španělšt", "španělsk", "스페인어", "ispanyolca", "西班牙语"),
    "it": ("italian", "italienisch", "italiano", "bahasa italia", "italštin", "italsk", "이탈리아어",
           "italyanca", "意大利语"),
    "pt": ("portuguese", "portugiesisch", "portugais", "portugués", "portoghese", "português", "portugis",
           "portugalšt", "포르투갈어", "portekizce", "葡萄牙语"),
    "cs": ("czech", "tschechisch", "tchèque", "checo", "ceco", "tcheco", "ceko", "češtin", "česk",
           "체코어", "çekçe"),
    "id": ("indonesian", "indonesisch", "indonésien", "indonesio", "indonesiano", "bahasa indonesia",
           "indonéštin", "인도네시아어", "endonezce"),
    "ms": ("malay", "malaiisch", "malais", "malayo", "malese", "bahasa melayu", "malajštin", "말레이어",
           "malayca"),
    "ko": ("korean", "koreanisch", "coréen", "coreano", "korejšt", "한국어", "korece", "韩语"),
    "tr": ("turkish", "türkisch", "turc", "turco", "turki", "turečtin", "터키어", "türkçe", "土耳其语"),
    "zh": ("chinese", "chinesisch", "chinois", "chino", "cinese", "chinês", "mandarin", "tionghoa",
           "čínšt", "중국어", "çince", "中文", "汉语"),
    "ja": ("japanese", "japanisch", "japonais", "japonés", "giapponese", "japonês", "jepang", "japonsk",
           "일본어", "japonca", "日语"),
    "ru": ("russian", "russisch", "russe", "ruso", "russo", "rusia", "ruštin", "러시아어", "rusça", "俄语"),
}  # fmt: skip


def names(cfg: CrossLingualConfig) -> dict[str, tuple[str, ...]]:
    out = {lang: tuple(stems) for lang, stems in LANGUAGE_NAMES.items()}
    for lang, extra in cfg.language_names.items():
        out[lang] = out.get(lang, ()) + tuple(s.lower() for s in extra)
    return out


def is_neighbour(tcfg: TranslationConfig, detected: Column) -> Column:
    """The detected language is one the detector confuses with the sample's (`translation.allowed_langs`)."""
    if not tcfg.allowed_langs:
        return F.lit(False)
    pairs = sorted(tcfg.allowed_langs.items())
    allowed = F.create_map(*[x for lang, others in pairs for x in (F.lit(lang), F.array(*map(F.lit, others)))])
    return F.coalesce(F.array_contains(F.try_element_at(allowed, F.col(S.LANG)), detected), F.lit(False))


def identified_other_language(
    tcfg: TranslationConfig, min_letters: int, response_lang: Column | None = None
) -> Column:
    """The response was identified as a language other than the sample's (and not a confusable neighbour).

    `response_lang` replaces the ingest stage's lang_response (e.g. identified again without code).
    """
    response_lang = F.col(S.LANG_RESPONSE) if response_lang is None else response_lang
    letters = F.length(F.regexp_replace(F.col(S.RESPONSE), r"[^\p{L}]", ""))
    return (
        response_lang.isNotNull()
        & (response_lang != F.col(S.LANG))
        & ~response_lang.isin(*tcfg.ignore_langs)
        & ~is_neighbour(tcfg, response_lang)
        & (letters >= min_letters)
    )


def is_crosslingual(cfg: CrossLingualConfig, tcfg: TranslationConfig) -> Column:
    """The response is in language X (identified) and the prompt names X."""
    if not cfg.enabled:
        return F.lit(False)
    prompt = F.lower(S.prompt_text())
    named = F.lit(False)
    for lang, stems in sorted(names(cfg).items()):
        pattern = "|".join(re.escape(stem) for stem in stems)
        named = named | ((F.col(S.LANG_RESPONSE) == F.lit(lang)) & prompt.rlike(pattern))
    return identified_other_language(tcfg, cfg.min_letters) & named
