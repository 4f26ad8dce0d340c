"""Cheap rule-based checks of a sample (UltraLink's quality checks and common SFT filters).

Each rule is a Spark SQL expression (no Python UDF, no model): a flag column named for the
defect. Flags are only flags; `filters.action` decides whether flagged samples leave the
selection (`drop`) or merely rank after every clean sample of their language (`demote`),
or nothing happens (`flag`). Flagged samples are never deleted from `normalized/`, and
stats.json counts each flag per language.

Why these: a bi-encoder QSM scores a response that repeats its instruction as a perfect
fit, cannot see that a response was cut off, and likes text that repeats the prompt's
words; these rules catch exactly what the similarity score gets wrong.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.config import CrossLingualConfig, FiltersConfig, TranslationConfig
from mdaq_spark.stages.tag.crosslingual import is_crosslingual
from mdaq_spark.stages.tag.translation import NOTES_FOLDED, NOTES_TEXT, with_texts
from mdaq_spark.stages.tag.translation import rules as translation_rules

RULES_VERSION = "3"  # part of the select stage's key: changing a rule redoes the selection

# sentence-final characters of the scripts in the corpora we see, closing quotes/brackets,
# and code/markdown endings: a response ending in anything else was probably cut off
_TERMINAL = r"""[.!?;:…。！？；：」』”’"'\)\]\}>`*|~\-_=+0-9\p{So}\p{Sk}\p{Pe}\p{Pf}\p{Po}]"""


def _normalised(col: str) -> Column:
    return F.lower(F.trim(F.regexp_replace(F.col(col), r"[\s\p{P}]+", " ")))


def rules(cfg: FiltersConfig) -> dict[str, Column]:
    response = F.col(S.RESPONSE)
    length = F.length(response)
    tail = F.substring(F.rtrim(response), -1, 1)
    last_line = F.trim(F.element_at(F.split(F.rtrim(response), r"\n"), -1))
    head = F.substring(response, 1, cfg.repetition_window_chars)
    lines = F.filter(F.split(head, r"\n"), lambda x: F.length(F.trim(x)) > 0)
    out = {
        # the response is the instruction again (or the instruction with a few characters added)
        "response_copies_instruction": (_normalised(S.RESPONSE) == _normalised(S.INSTRUCTION))
        | (
            F.startswith(_normalised(S.RESPONSE), _normalised(S.INSTRUCTION))
            & (length <= F.lit(cfg.copy_max_extra_ratio) * F.greatest(F.length(S.INSTRUCTION), F.lit(1)))
        ),
        # long enough to be a real answer, yet its last line is running prose that stops mid-word:
        # list items, headings and hashtag lines legitimately end without punctuation (seen on MIDB)
        "truncated_response": (length >= cfg.truncation_min_chars)
        & ~tail.rlike(_TERMINAL)
        & (F.size(F.split(last_line, r"\s+")) >= cfg.truncation_min_last_line_words)
        & ~last_line.rlike(r"^([-*•·]|\d+[.)]|#)")
        & ~last_line.rlike(r"#\S+$"),
        "response_too_short": length < cfg.min_response_chars,
        "response_too_long": length > cfg.max_response_chars,
        # the same non-empty line again and again (a degenerate generation)
        "repetitive_response": (F.size(lines) >= cfg.repetition_min_lines)
        & (F.size(F.array_distinct(lines)) <= F.lit(1 - cfg.repetition_max_duplicate_share) * F.size(lines)),
    }
    return {name: expr for name, expr in out.items() if name in cfg.rules}


def add_flags(
    df: DataFrame,
    cfg: FiltersConfig,
    translation: TranslationConfig | None = None,
    crosslingual: CrossLingualConfig | None = None,
) -> DataFrame:
    """Adds `flags`: the names of the rules each sample breaks (language mismatch included when enabled).

    With a translation config, the translation-defect rules join in; they need to know which
    samples are cross-lingual on purpose, so `crosslingual` is added first (False when that
    section is off).
    """
    checks = rules(cfg)
    if translation is not None:
        xl_cfg = crosslingual or CrossLingualConfig(enabled=False)
        df = with_texts(df.withColumn(S.CROSSLINGUAL, is_crosslingual(xl_cfg, translation)))
        checks.update(translation_rules(translation))
    if cfg.lang_mismatch and S.LANG_MISMATCH in df.columns:
        checks["lang_mismatch"] = F.coalesce(F.col(S.LANG_MISMATCH), F.lit(False))
    if not checks:
        return df.withColumn(S.FLAGS, F.array().cast("array<string>")).drop(NOTES_TEXT, NOTES_FOLDED)
    flagged = [F.when(expr, F.lit(name)) for name, expr in checks.items()]
    out = df.withColumn(S.FLAGS, F.filter(F.array(*flagged), lambda x: x.isNotNull()))
    return out.drop(NOTES_TEXT, NOTES_FOLDED)
