"""Translation-defect flags for machine-translated corpora (MIDB): columns, not decisions.

Four defects a QSM similarity score cannot see, because a wrong-language or half-translated
answer still sits close to its instruction in a multilingual embedding space:
- the response (or the instruction) is in another language than the sample's, unless the
  prompt asked for that language (a cross-lingual sample, see crosslingual.py) or the two
  languages are ones the detector confuses (`translation.allowed_langs`);
- an untranslated span: a long run of consecutive sentences in the source language (English)
  inside a sample of another language; code blocks and URLs are removed first;
- a leftover template slot (`{{name}}`, `<noinput>`, `[Your Name]`) or a translator's note.

They join the `flags` array of heuristics.py, so `filters.action` decides whether flagged
samples are dropped, demoted or only marked.
"""

from __future__ import annotations

import functools
import re

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mdaq_spark import schema as S
from mdaq_spark.config import TranslationConfig
from mdaq_spark.stages.language import identifier, identify
from mdaq_spark.stages.tag.crosslingual import identified_other_language, is_neighbour
from mdaq_spark.stages.tag.prefilter import folded, may_match

_CODE_BLOCK = re.compile(r"```.*?(```|$)", re.S)
_URL = re.compile(r"(https?://|www\.)\S+")
# a sentence or line: up to and including its terminal punctuation, or up to a line break
_SEGMENT = re.compile(r"[^\n.!?。！？;]+[.!?。！？;]*")
# a source-language run of any length holds several of its commonest words: texts without
# them are skipped before the (costlier) sentence-by-sentence check
_COMMON_WORDS = {"en": re.compile(r"\b(the|and|of|to|is|are|that|with|for|you|this|it)\b", re.I)}
_MIN_COMMON_HITS = 3


@functools.lru_cache(maxsize=256)
def _pair_identifier(lang: str, source: str):
    """A detector restricted to {lang, source}: a two-way decision, far more reliable on a sentence.

    Built over the arrays of the worker's one loaded model: reading the model file again
    (an LZMA archive, about a second) for each of a corpus's languages would cost more than
    the checks themselves.
    """
    from py3langid.langid import LanguageIdentifier

    full = identifier(None)  # never restricted: its arrays are the whole model
    ident = LanguageIdentifier(
        full.nb_ptc, full.nb_pc, full.nb_classes, full.tk_nextmove, full.tk_output, tk_row=full.tk_row
    )
    ident.set_languages([lang, source])
    return ident


def longest_source_run(text: str | None, lang: str | None, source: str, min_segment: int) -> int:
    """Characters in the longest run of consecutive segments that read as `source` rather than `lang`.

    Each long-enough segment is a two-way decision (source vs the sample's language), far
    more reliable on a short sentence than an open-set guess. Short segments (names,
    numbers, list markers) neither extend nor break a run. A text with fewer than
    `min_hits` of the source language's commonest words is skipped without segmenting.
    """
    if not text or not lang or lang == source:
        return 0
    if lang not in identifier(None).nb_classes or source not in identifier(None).nb_classes:
        return 0
    text = strip_code(text)
    common = _COMMON_WORDS.get(source)
    if common is not None and len(common.findall(text)) < _MIN_COMMON_HITS:
        return 0
    ident = _pair_identifier(lang, source)
    best = run = 0
    for match in _SEGMENT.finditer(text):
        segment = match.group(0).strip()
        if len(segment) < min_segment:
            continue
        if ident.classify(segment)[0] == source:
            run += len(segment)
            best = max(best, run)
        else:
            run = 0
    return best


def strip_code(text: str) -> str:
    """Without fenced code blocks and URLs: they are English in every language and say nothing."""
    return _URL.sub(" ", _CODE_BLOCK.sub("\n", text))


def _response_language_udf(cfg: TranslationConfig):
    """The response's language again, with code and URLs removed, for the samples where it differed."""
    max_chars = cfg.max_chars

    @F.pandas_udf(T.StringType())
    def response_language(texts: pd.Series, needed: pd.Series) -> pd.Series:
        # Spark evaluates a Python UDF on every row of the batch, whatever `when` surrounds it
        out = pd.Series([None] * len(texts), index=texts.index, dtype=object)
        todo = needed.fillna(False).astype(bool)
        if todo.any():
            out[todo] = identify(texts[todo].map(strip_code), None, max_chars)
        return out

    return response_language


def _untranslated_udf(cfg: TranslationConfig):
    source, min_segment = cfg.source_lang, cfg.untranslated_min_segment_chars

    @F.pandas_udf(T.IntegerType())
    def untranslated(texts: pd.Series, langs: pd.Series) -> pd.Series:
        return pd.Series(
            [longest_source_run(t, lang, source, min_segment) for t, lang in zip(texts, langs, strict=True)],
            dtype="int32",
        )

    return untranslated


# the texts the placeholder and note patterns read, as columns of their own (with_texts): every
# literal test reads the folded text, and computing it once per row instead of once per literal
# is what makes the test cheaper than the regex it guards
NOTES_TEXT = "_notes_text"
NOTES_FOLDED = "_notes_text_folded"


def with_texts(df: DataFrame) -> DataFrame:
    """`df` with the two text columns `rules` reads (drop them after use)."""
    text = F.concat_ws("\n", S.prompt_text(), F.col(S.RESPONSE))
    return df.withColumn(NOTES_TEXT, text).withColumn(NOTES_FOLDED, folded(F.col(NOTES_TEXT)))


def any_pattern(patterns: list[str]) -> str:
    """One case-insensitive Java regex that matches where any of `patterns` does."""
    return "(?iu)(" + "|".join(f"(?:{p})" for p in patterns) + ")"


def _any(patterns: list[str]) -> Column:
    """Any of the case-insensitive `patterns` matches; the regex runs only on texts holding one of their literals."""
    if not patterns:
        return F.lit(False)
    regex = F.col(NOTES_TEXT).rlike(any_pattern(patterns))
    hint = may_match(F.col(NOTES_FOLDED), patterns)
    return regex if hint is None else hint & regex


def rules(cfg: TranslationConfig) -> dict[str, Column]:
    """Flag name -> boolean column; needs lang, lang_instruction, lang_response, the texts (and `with_texts`'s)
    and `crosslingual`."""
    if not cfg.enabled:
        return {}
    prompt = S.prompt_text()
    instruction_letters = F.length(F.regexp_replace(prompt, r"[^\p{L}]", ""))
    untranslated = _untranslated_udf(cfg)
    asked_for = F.coalesce(F.col(S.CROSSLINGUAL), F.lit(False))  # the prompt asked for the other language
    # only samples whose response was identified as another language at ingest are looked at again
    recheck = _response_language_udf(cfg)(F.col(S.RESPONSE), identified_other_language(cfg, cfg.min_letters))
    out = {
        "response_language_differs": identified_other_language(cfg, cfg.min_letters, recheck) & ~asked_for,
        "instruction_language_differs": F.col(S.LANG_INSTRUCTION).isNotNull()
        & (F.col(S.LANG_INSTRUCTION) != F.col(S.LANG))
        & ~F.col(S.LANG_INSTRUCTION).isin(*cfg.ignore_langs)
        & ~is_neighbour(cfg, F.col(S.LANG_INSTRUCTION))
        & (instruction_letters >= cfg.min_letters),
        "untranslated_span": (
            F.greatest(untranslated(prompt, F.col(S.LANG)), untranslated(F.col(S.RESPONSE), F.col(S.LANG)))
            >= cfg.untranslated_min_chars
        )
        & ~asked_for,
        "leftover_placeholder": _any(cfg.placeholder_patterns),
        "translation_note": _any(cfg.note_patterns),
    }
    return {name: expr for name, expr in out.items() if name in cfg.rules}
