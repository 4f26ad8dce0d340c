"""UltraLink pruning: language-agnostic domains (math, code) capped per language.

A maths problem or a code task translated into ten languages teaches the same skill ten
times; UltraLink keeps the language-specific data (chat, culture) whole and caps the
language-agnostic part per language. The tag is a cheap rule (no model): code when the
response has a fenced block or lines that read as code; math when the prompt and response
hold several arithmetic expressions or LaTeX. The cap keeps the best-scored samples of each
(language, domain); everything else is "general" and never capped.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.config import DomainCapConfig

# a line that starts like code in the languages instruction sets are full of
_CODE_LINE = (
    r"(?m)^\s*(def \w+\(|class \w+[:(]|import \w+|from [\w.]+ import |#include\s*<|public (static )?\w+|"
    r"function\s+\w*\s*\(|(const|let|var) \w+ *=|SELECT .+ FROM |console\.log\(|System\.out\.|print\(|"
    r"for \(.*;.*;|<(html|div|body|script)\b)"
)
# "3 * 4 = 12", "x^2", "7/8", "2 + 2": a digit, an operator, a digit or an opening bracket
_ARITHMETIC = r"\d\s*[-+*/×÷^=]\s*[\d(]"
_LATEX = r"\\(frac|sqrt|sum|int|cdot|times)\b|\$[^$\n]+\$"


def domain_tag(cfg: DomainCapConfig) -> Column:
    response = F.col(S.RESPONSE)
    text = F.concat_ws("\n", S.prompt_text(), response)
    code = F.contains(response, F.lit("```")) | response.rlike(_CODE_LINE)
    expressions = F.regexp_count(text, F.lit(_ARITHMETIC))
    math = (expressions >= cfg.math_min_expressions) | text.rlike(_LATEX)
    return F.when(code, F.lit(S.CODE)).when(math, F.lit(S.MATH)).otherwise(F.lit(S.GENERAL))


def over_cap(df: DataFrame, cfg: DomainCapConfig) -> Column:
    """True for the rows beyond their (language, domain) cap, best first (S.best_first).

    Needs `lang`, `domain`, `qsm_score` and `sample_id`; rank only the rows you mean to cap.
    """
    caps = F.create_map(*[x for d, n in sorted(cfg.max_per_lang.items()) for x in (F.lit(d), F.lit(n))])
    cap = F.try_element_at(caps, F.col(S.DOMAIN))
    rank = F.row_number().over(Window.partitionBy(S.LANG, S.DOMAIN).orderBy(*S.best_first(df.columns)))
    exempt = F.col(S.LANG).isin(*cfg.exempt_langs) if cfg.exempt_langs else F.lit(False)
    return cap.isNotNull() & ~exempt & (rank > cap)
