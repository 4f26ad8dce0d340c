"""The literal test in front of the case-insensitive regex rules never rejects a text the regex matches.

Checked against Java's own regex engine through Spark: character by character over every
cased code point, on constructed texts that mix case the way real corpora do (Turkish
dotted capitals, the long s, the Kelvin sign), and on real MIDB texts, raw and revised.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata

import pytest
from pyspark.sql import functions as F

from mdaq_spark.config import TranslationConfig
from mdaq_spark.stages.tag.prefilter import _safe, cover, folded, literals, may_match, rule_literals
from mdaq_spark.stages.tag.translation import any_pattern
from tests.conftest import require_midb

SHIPPED = TranslationConfig()
RULES = {"note": SHIPPED.note_patterns, "placeholder": SHIPPED.placeholder_patterns}


def test_the_shipped_rules_have_literals():
    notes, placeholders = rule_literals(SHIPPED.note_patterns), rule_literals(SHIPPED.placeholder_patterns)
    assert notes is not None and placeholders is not None
    assert {"(note", "translator's note", "translators note", "역자 주", "n.d.t."} <= notes
    # the bracket stays in front of the words: "[your", not "your", which half the instructions hold
    assert {"{{", "noinput", "[your", "[name]", "__"} <= placeholders and "your" not in placeholders


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"colou?r", {"color", "colour"}),
        (r"(ab|cd)ef", {"abef", "cdef"}),
        (r"\bfoo\b", {"foo"}),
        (r"a{2}b", {"aab"}),
        (r"(?:x|)yz", {"xyz", "yz"}),
        (r"ab(c|d)+e", {"ab"}),
        (r"İstanbul", {"stanbul"}),  # İ has no exact lower case here: the literal is cut there
        (r"ÜBER", {"über"}),
    ],
)
def test_literals_of_a_pattern(pattern, expected):
    assert literals(pattern) == expected


@pytest.mark.parametrize(
    "pattern",
    [
        r"\p{L}+",  # Java only: Python's parser refuses it
        r"\Qa.b\E",
        r"[a[b]]c",  # one class in Java, a class and literals in Python
        r"[a&&b]x",
        r"(?x) a b",  # comments mode reads classes differently in the two engines
        r"\vfoo",  # vertical space in Java, a control character in Python
        r"\b{g}word",
        r"x*",  # matches the empty string: nothing is required
        r"ſ",
        r"\d+\s+\w+",
    ],
)
def test_refuses_what_it_cannot_read_exactly(pattern):
    assert literals(pattern) is None
    assert rule_literals([r"\(note", pattern]) is None  # one unreadable pattern turns the test off for the rule


def _cased_code_points() -> list[int]:
    """Every code point with a case mapping (or a case partner), plus ASCII and Latin-1."""
    out = set(range(0x20, 0x100))
    for cp in range(0x100, 0x20000):
        ch = chr(cp)
        if 0xD800 <= cp <= 0xDFFF:
            continue
        if ch.lower() != ch or ch.upper() != ch or ch.casefold() != ch or unicodedata.category(ch) in ("Lt", "Lm"):
            out.add(cp)
    return sorted(out)


def test_every_java_case_insensitive_match_of_a_safe_character_survives_the_fold(spark):
    """For each character a literal may hold, every character Java's (?iu) matches with it folds to it."""
    probes = [chr(c) for c in range(0x20, 0x7F)]
    probes += [chr(c) for c in range(0xC0, 0x100) if _safe(chr(c))]
    probes += list("역자주漢字ابتשלוםกข।、「」·–—«»¿¡\u3000")
    assert all(_safe(p) for p in probes)
    chars = spark.createDataFrame([(chr(c),) for c in _cased_code_points()], "c string")
    text = folded(F.col("c"))
    checks = [
        F.sum((F.col("c").rlike(f"(?iu)\\x{{{ord(p):X}}}") & ~may_match(text, [re.escape(p)])).cast("int"))
        for p in probes
    ]
    matched = [F.sum(F.col("c").rlike(f"(?iu)\\x{{{ord(p):X}}}").cast("int")) for p in ("s", "k", "i", "é", "ü")]
    row = chars.select(*checks, *matched).first()
    lost = {repr(p): n for p, n in zip(probes, row[: len(probes)], strict=True) if n}
    assert lost == {}, f"characters Java matches case-insensitively that the fold does not map: {lost}"
    # the test is not vacuous: ſ, the Kelvin sign and the Turkish i's do match their Latin letters
    assert list(row[len(probes) :]) == [3, 3, 4, 2, 2]


HOSTILE = [
    "TRANSLATOR'S NOTE: this was hard",
    "Translatİon from English, with a Turkish dotted capital inside",
    "ÇEVİRMENİN NOTU: Türkçe",
    "tranſlated into the original by hand",  # the long s
    "(Anmer\u212aung: the Kelvin sign)",
    "(NOTA : spaces before the colon)",
    "(note:",
    "N. d. T. al final",
    "n.del t. y más",
    "POZNÁMKA PŘEKLADATELE: text",
    "ANMERKUNG DES ÜBERSETZERS",
    "역자 주: 설명",
    "Dear [YOUR NAME], hello",
    "Dear [Name], hello",
    "{{ Customer_Name }} ordered",
    "< NoInput >",
    "</PLACEHOLDER>",
    "__FIRST_NAME__ and __lower__",
    "ΣΗΜΕΊΩΣΗ ΜΕΤΑΦΡΑΣΤΉ and final sigmas: ΟΔΟΣ οδός",
    "no note here at all, (nothing) [anything] {single} <tag>",
    "",
]


def _agree(frame, column: str) -> None:
    """The regex alone and the literal test and the regex give the same answer on every row."""
    for name, patterns in RULES.items():
        hint = may_match(folded(F.col(column)), patterns)
        assert hint is not None, name
        regex = F.col(column).rlike(any_pattern(patterns))
        counts = frame.select(
            F.sum(regex.cast("int")).alias("matched"),
            F.sum((regex & ~hint).cast("int")).alias("lost"),
            F.sum(hint.cast("int")).alias("passed"),
            F.count(F.lit(1)).alias("rows"),
        ).first()
        assert counts["lost"] == 0, f"{name}: the literal test rejected {counts['lost']} matching texts"
        yield name, counts


def test_hostile_texts_keep_every_match(spark):
    frame = spark.createDataFrame([(t,) for t in HOSTILE], "text string")
    results = dict(_agree(frame, "text"))
    assert results["note"]["matched"] >= 11 and results["placeholder"]["matched"] >= 6


def test_midb_texts_keep_every_match_and_few_pass(spark):
    midb = require_midb("German", "Turkish", "Czech", "Korean")
    texts = []
    for lang in ("German", "Turkish", "Czech", "Korean"):
        for record in json.loads((midb / f"{lang}.json").read_text(encoding="utf-8"))[:600]:
            for side in ("Raw", "Revised"):
                parts = [record.get(f"{side} {k}") or "" for k in ("Instruction", "Input", "Response")]
                texts.append(("\n".join(parts),))
    frame = spark.createDataFrame(texts, "text string")
    for name, counts in _agree(frame, "text"):
        print(name, counts.asDict(), file=sys.stderr)
        # the point of the test: most texts never reach the regex
        assert counts["passed"] < 0.2 * counts["rows"], (name, counts)


def test_the_cover_is_smaller_and_every_literal_holds_one_of_it():
    for patterns in RULES.values():
        found = rule_literals(patterns)
        strings = cover(found)
        assert len(strings) < len(found)
        assert all(any(s in lit for s in strings) for lit in found)
    # two phrases share a string of the longest length scanned for; a short literal stands for itself
    two = cover({"translated from english", "translation into english", "{{"})
    assert len(two) == 2 and "{{" in two and len(next(s for s in two if s != "{{")) == 8
