"""Language identification of instruction and response, in an Arrow-batched pandas UDF.

py3langid ships its own model inside the wheel (no download); `language_scores` applies it
to a whole Arrow batch at once, about 50 microseconds a text on one core (py3langid's own
loop takes about 300), which matters at two texts per sample over millions of samples.
Instruction and response are identified separately: a mismatch is either a translation defect (MIDB) or a
deliberate cross-lingual sample (XL-Instruct), and later stages decide which.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mdaq_spark import schema as S
from mdaq_spark.config import LanguageConfig
from mdaq_spark.langcodes import UNKNOWN
from mdaq_spark.stages.language_scores import BatchScorer

# most of a text's letters must be in a script the detector was trained on: Cherokee or Runic
# text would otherwise come out as whichever language's byte n-grams it happens to share
KNOWN_SCRIPTS = (
    "Latin", "Greek", "Cyrillic", "Armenian", "Hebrew", "Arabic", "Syriac", "Thaana", "Devanagari", "Bengali",
    "Gurmukhi", "Gujarati", "Oriya", "Tamil", "Telugu", "Kannada", "Malayalam", "Sinhala", "Thai", "Lao",
    "Tibetan", "Myanmar", "Georgian", "Hangul", "Ethiopic", "Khmer", "Mongolian", "Han", "Hiragana", "Katakana",
)  # fmt: skip
# code points covered by the letter tables: the BMP and planes 1-3 (every letter Unicode assigns)
_TABLE_SIZE = 0x40000


@functools.lru_cache(maxsize=1)
def _letter_tables() -> tuple[np.ndarray, np.ndarray]:
    """(is a letter, is a letter of a known script) per code point, built once per worker (~0.2 s)."""
    import regex

    chars = "".join(" " if 0xD800 <= c < 0xE000 else chr(c) for c in range(_TABLE_SIZE))
    letter = np.zeros(_TABLE_SIZE, dtype=bool)
    known = np.zeros(_TABLE_SIZE, dtype=bool)
    for m in regex.finditer(r"\p{L}", chars):
        letter[m.start()] = True
    for m in regex.finditer("[" + "".join(f"\\p{{Script={n}}}" for n in KNOWN_SCRIPTS) + "]", chars):
        known[m.start()] = True
    return letter, known & letter


def detectable(texts: pd.Series, cfg: LanguageConfig) -> pd.Series:
    """The texts with enough letters in scripts the detector knows; the others become None (-> 'und').

    Counted over each text's first `max_chars` code points with a lookup table, one numpy
    pass per text: the same rule as two regex counts per text, at a fraction of their cost.
    """
    letter, known = _letter_tables()
    need = max(cfg.min_letters, 1)
    out = []
    for t in texts:
        if not isinstance(t, str):
            out.append(None)
            continue
        points = np.frombuffer(t[: cfg.max_chars].encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        points = points[points < _TABLE_SIZE]
        n_letters = int(np.count_nonzero(letter[points]))
        n_known = int(np.count_nonzero(known[points]))
        out.append(t if n_letters >= need and n_known * 2 >= n_letters else None)
    return pd.Series(out, index=texts.index, dtype=object)


@functools.lru_cache(maxsize=4)
def identifier(languages: tuple[str, ...] | None, probabilities: bool = False):
    """One identifier per Python worker (worker reuse keeps it across tasks)."""
    from py3langid import langid

    ident = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=probabilities)
    if languages:
        ident.set_languages(list(languages))
    return ident


@functools.lru_cache(maxsize=4)
def scorer(languages: tuple[str, ...] | None) -> BatchScorer:
    return BatchScorer(identifier(languages, True))


@dataclass(frozen=True)
class Ranked:
    """Each text's probability per language: row i of `probs` is text i, `present` false for an empty text."""

    probs: np.ndarray
    classes: tuple[str, ...]
    present: np.ndarray

    def __len__(self) -> int:
        return len(self.present)

    def __getitem__(self, rows: slice) -> Ranked:
        return Ranked(self.probs[rows], self.classes, self.present[rows])

    def of(self, i: int) -> dict[str, float] | None:
        """Text i's probabilities as a dict (None for an empty text): for reading, not for the job's loop."""
        return dict(zip(self.classes, self.probs[i].tolist(), strict=True)) if self.present[i] else None


def rank_languages(texts: pd.Series, languages: tuple[str, ...] | None, max_chars: int) -> Ranked:
    """Each text's probability per language, for a whole batch in one pass of the detector's model."""
    batch = scorer(languages)
    present = np.array([isinstance(t, str) and bool(t.strip()) for t in texts], dtype=bool)
    probs = np.zeros((len(present), len(batch.classes)), dtype=np.float32)
    if present.any():
        probs[present] = batch.probabilities([t for t, keep in zip(texts, present, strict=True) if keep], max_chars)
    return Ranked(probs, tuple(batch.classes), present)


def identify_expecting(
    ranked: Ranked,
    expected: pd.Series,
    min_prob: float,
    support: Ranked | None = None,
    min_confidence: float = 0.0,
    use_support: np.ndarray | None = None,
) -> pd.Series:
    """Each text's language, where the expected one wins whenever the detector finds it plausible.

    A short text is often ambiguous: "Who was Mansa Musa?" comes out Hausa (0.14) before
    English (0.11), "ما عاصمة المغرب؟" Moroccan before Standard Arabic. The expected language
    (the record's own hint, or for a prompt without one, its response's language) settles
    it when the detector gives it at least `min_prob` for this text. A text in a language the
    expectation does not resemble keeps its own: a German question answered in English is still
    a German question, and a long text is never ambiguous (its probabilities are near 0 or 1),
    so real defects stay visible. When the expectation is itself a detection (`support`: the
    response's probabilities, for the rows `use_support` marks, all by default), it must also
    win on the evidence of both texts together: a Chinese question whose answer came out Wu
    (0.55) before Chinese (0.45) stays Chinese. A language that wins with less than
    `min_confidence` is a guess among near-equal scores (the detector's answer for "Hola" or a
    formula): the text's language is then unknown.
    """
    probs, rows = ranked.probs, np.arange(len(ranked))
    column = {c: j for j, c in enumerate(ranked.classes)}
    best = probs.argmax(axis=1) if len(ranked) else np.zeros(0, dtype=np.int64)
    hoped = np.array([column.get(h, -1) if isinstance(h, str) else -1 for h in expected], dtype=np.int64)
    known = hoped >= 0
    p_hoped = np.where(known, probs[rows, np.maximum(hoped, 0)], 0.0)
    switch = known & (hoped != best) & (p_hoped >= min_prob)
    if support is not None:
        check = support.present & (use_support if use_support is not None else True)
        s = support.probs
        both_hoped = p_hoped * s[rows, np.maximum(hoped, 0)]
        both_best = probs[rows, best] * s[rows, best]
        switch &= ~check | (both_hoped > both_best)
    chosen = np.where(switch, hoped, best)
    confident = ranked.present & (probs[rows, chosen] >= min_confidence)
    classes = np.array(ranked.classes, dtype=object)
    out = np.where(confident, classes[chosen] if len(ranked) else classes[:0], UNKNOWN)
    return pd.Series(out, index=expected.index, dtype=object)


def identify(texts: pd.Series, languages: tuple[str, ...] | None, max_chars: int) -> pd.Series:
    ident = identifier(languages)
    return pd.Series(
        [ident.classify(t[:max_chars])[0] if isinstance(t, str) and t.strip() else UNKNOWN for t in texts],
        index=texts.index,
        dtype=object,
    )


_PAIR_TYPE = T.StructType(
    [T.StructField(S.LANG_INSTRUCTION, T.StringType()), T.StructField(S.LANG_RESPONSE, T.StringType())]
)


def _language_pair_udf(cfg: LanguageConfig):
    languages = tuple(cfg.languages) if cfg.languages else None

    min_prob, min_confidence = cfg.expected_lang_min_prob, cfg.min_confidence

    @F.pandas_udf(_PAIR_TYPE)
    def language_pair(batches: Iterator[tuple[pd.Series, pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        for prompts, responses, hints in batches:
            prompts, responses = detectable(prompts, cfg), detectable(responses, cfg)
            hints = hints if cfg.use_hint else pd.Series([None] * len(hints), index=hints.index, dtype=object)
            response_probs = rank_languages(responses, languages, cfg.max_chars)
            response_langs = identify_expecting(response_probs, hints, min_prob, min_confidence=min_confidence)
            expected = hints.where(hints.notna(), response_langs)  # no hint: the response's language
            # a detected expectation must also win on both texts' evidence; a hint needs no support
            from_response = hints.isna().to_numpy()
            yield pd.DataFrame(
                {
                    S.LANG_INSTRUCTION: identify_expecting(
                        rank_languages(prompts, languages, cfg.max_chars),
                        expected,
                        min_prob,
                        response_probs,
                        min_confidence,
                        use_support=from_response,
                    ),
                    S.LANG_RESPONSE: response_langs,
                }
            )

    return language_pair


def add_languages(df: DataFrame, cfg: LanguageConfig) -> DataFrame:
    """Adds lang_instruction, lang_response, lang_mismatch and lang (the partition key).

    `lang` is the record's own language hint when it has one (and use_hint is on), else the
    instruction's detected language: the instruction says which language the sample is for.
    """
    pair = _language_pair_udf(cfg)(S.prompt_text(), F.col(S.RESPONSE), F.col(S.LANG_HINT))
    df = df.select("*", pair.alias("_lang_pair")).select("*", "_lang_pair.*").drop("_lang_pair")
    detected = F.col(S.LANG_INSTRUCTION)
    lang = F.coalesce(F.col(S.LANG_HINT), detected) if cfg.use_hint else detected
    return df.withColumn(S.LANG_MISMATCH, F.col(S.LANG_INSTRUCTION) != F.col(S.LANG_RESPONSE)).withColumn(S.LANG, lang)
