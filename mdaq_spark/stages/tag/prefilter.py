"""A cheap test in front of a case-insensitive regex rule: texts that hold none of its literals cannot match.

Java's regex engine finds no literal to scan for in an alternation, a case-insensitive
pattern or one that opens with `\\b`, so a rule such as the translator-note patterns tries
every alternative at every character of every text, and nearly every text matches none.
Every match of those patterns contains one of a few literal strings ("(not", "traduct",
"{{"), and a substring search for them is a byte scan. So the rule becomes "holds one of
the literals, and matches": the regex runs only on the few texts that pass, and the
flags are the same, because the literals are derived from the patterns themselves.

Soundness is the whole point, so the derivation refuses rather than guesses:
- A pattern is parsed with Python's own regex parser. A construct that parser does not
  know (`\\p{L}`, `\\Q...\\E`) makes the pattern unanalysable, and so do the few that both
  engines accept with different meanings (`\\v`, a class nested in a class, comments mode).
  One unanalysable pattern turns the test off for its whole rule.
- Case: the text is compared lower-cased (Spark's `lower`). Three characters lower-case
  to something other than the Latin letter Java's case-insensitive match equates them
  with (`ſ` for s; `ı`, and `İ`, which becomes i and a combining dot, for i): a text
  holding one of them goes on to the regex when a scanned string holds that letter. A
  literal keeps only characters whose lower case is then exact: ASCII, the Latin-1
  letters, caseless letters (Han, Hangul, Arabic...), punctuation and spaces; any other
  character splits it.
- Each literal string is a scan of the text, so the literals are first reduced to a few
  shorter strings that each literal contains (`cover`).
- The test may pass texts the regex then rejects (that only costs time); it never rejects
  one the regex would match. tests/test_prefilter.py checks this on hostile texts.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable, Sequence

from pyspark.sql import Column
from pyspark.sql import functions as F

try:  # Python 3.11+
    from re import _constants as _c
    from re import _parser as _sre
except ImportError:  # Python 3.10
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _sre  # type: ignore[no-redef]

# the most strings one literal set may hold: more would make the test cost what it saves
MAX_LITERALS = 64
# the shortest string the literal test scans for (a literal shorter than this is scanned whole)
MIN_COVER_CHARS = 4
# Java case-insensitively equates these with a Latin letter, but Spark's lower() keeps them
# apart (ſ, ı) or expands them (İ becomes i and a combining dot): a text holding one always
# goes on to the regex when a scanned string holds that letter
_UNFOLDED = {"i": "ı\u0307", "s": "ſ"}
# accepted by both engines with different meanings, or changing how the rest is read
_JAVA_DIFFERS = re.compile(r"\\v|\\0|\\b\{|\(\?[a-zA-Z]*x")


def _safe(ch: str) -> bool:
    """A character whose lower case equals, in every text, what Java's case-insensitive match equates with it."""
    if ch.isascii():
        return True
    if "\u00c0" <= ch <= "\u00ff":
        return ch not in "×÷ß"  # ß upper-cases to SS; the others are letters with plain one-to-one cases
    category = unicodedata.category(ch)
    return category == "Lo" or category.startswith("P") or category == "Zs"


def _norm(ch: str) -> str:
    return ch.lower() if ch.isascii() or "\u00c0" <= ch <= "\u00ff" else ch


def _product(left: set[str], right: set[str]) -> set[str] | None:
    if len(left) * len(right) > MAX_LITERALS:
        return None
    return {a + b for a, b in itertools.product(left, right)}


def _best(factors: Iterable[set[str]]) -> set[str] | None:
    """Of several sets every match needs one string of, the most selective: longest shortest string, fewest."""
    usable = [f for f in factors if f and "" not in f]
    if not usable:
        return None
    return max(usable, key=lambda f: (min(map(len, f)), -len(f)))


class _Unanalysable(Exception):
    pass


def _node(op, av) -> tuple[set[str] | None, set[str] | None, set[str] | None]:
    """(exact, required, prefix) of one parsed node.

    exact: every string the node can match, lower-cased, when that set is small and known;
    required: a set of strings one of which every match of the node contains;
    prefix: a set of strings one of which every match of the node starts with.
    """
    if op is _c.LITERAL:
        ch = chr(av)
        if _safe(ch):
            return {_norm(ch)}, {_norm(ch)}, {_norm(ch)}
        return None, None, None
    if op in (_c.AT, _c.ASSERT, _c.ASSERT_NOT):
        return {""}, None, None  # zero width; a lookaround's own condition is not used
    if op is _c.SUBPATTERN:
        return _sequence(av[-1])
    if op is getattr(_c, "ATOMIC_GROUP", None):
        return _sequence(av)
    if op is _c.BRANCH:
        # Python's parser moves a prefix all alternatives share in front of the branch
        results = [_sequence(branch) for branch in av[1]]
        return tuple(_union([r[i] for r in results]) for i in range(3))  # type: ignore[return-value]
    if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", _c.MAX_REPEAT)):
        low, high, body = av
        exact, required, prefix = _sequence(body)
        if low == 0:
            return (exact | {""} if high == 1 and exact is not None else None), None, None
        if exact is not None and low == high and low <= 4:
            repeated: set[str] | None = {""}
            for _ in range(low):
                repeated = _product(repeated, exact) if repeated is not None else None
            return repeated, required, prefix
        return None, required, prefix
    if op in (_c.GROUPREF, _c.GROUPREF_EXISTS, _c.IN, _c.ANY, _c.NOT_LITERAL, _c.CATEGORY, _c.RANGE):
        return None, None, None
    raise _Unanalysable(str(op))


def _union(sets: list[set[str] | None]) -> set[str] | None:
    """What every alternative has, as one set: None when one alternative has none or the union is too large."""
    if any(s is None for s in sets):
        return None
    out = set().union(*sets)  # type: ignore[arg-type]
    return out if len(out) <= MAX_LITERALS else None


def _sequence(items) -> tuple[set[str] | None, set[str] | None, set[str] | None]:
    """(exact, required, prefix) of a concatenation: adjacent literals join into runs, the best run is required.

    A run also joins the prefixes of the node that ends it ("[" and then "insert|your|...").
    """
    run: set[str] = {""}
    factors: list[set[str]] = []
    prefix: set[str] | None = None
    whole = True  # every item so far had an exact set
    for op, av in items:
        exact, required, head = _node(op, av)
        joined = _product(run, exact) if exact is not None else None
        if joined is not None:
            run = joined
            continue
        # the run joined with the node's prefixes: longer strings than the run alone, so more selective
        ended = (_product(run, head) if head is not None else None) or run
        if whole:
            prefix = ended
        whole = False
        factors.append(ended)
        if required is not None:
            factors.append(required)
        run = exact if exact is not None and len(exact) <= MAX_LITERALS else {""}
    factors.append(run)
    if whole:
        prefix = run
    if prefix is not None and "" in prefix:
        prefix = None
    return (run if whole else None), _best(factors), prefix


def _nested_class(pattern: str) -> bool:
    """Java reads `[a[b]]` as one class, Python as a class and then literals: refuse such patterns."""
    in_class, i = False, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class and ch == "[":
            return True
        if ch == "[" and not in_class:
            in_class = True
            i += 1
            if pattern[i : i + 1] == "^":
                i += 1
            if pattern[i : i + 1] == "]":
                i += 1
            continue
        if ch == "]" and in_class:
            in_class = False
        i += 1
    return False


def literals(pattern: str) -> frozenset[str] | None:
    """Lower-cased strings one of which every case-insensitive match of `pattern` contains; None if unknown."""
    if _JAVA_DIFFERS.search(pattern) or "&&" in pattern or _nested_class(pattern):
        return None
    try:
        _, required, _ = _sequence(_sre.parse(pattern))
    except (re.error, _Unanalysable, OverflowError, RecursionError):
        return None
    if required is None or not all(required):
        return None
    return frozenset(required)


def rule_literals(patterns: Sequence[str]) -> frozenset[str] | None:
    """The literals of an alternation of `patterns`: the union of theirs, None if any pattern has none."""
    out: set[str] = set()
    for pattern in patterns:
        found = literals(pattern)
        if found is None:
            return None
        out |= found
    return frozenset(out) if len(out) <= MAX_LITERALS else None


def cover(found: Iterable[str], min_chars: int = MIN_COVER_CHARS) -> list[str]:
    """Fewer, shorter strings such that every literal contains one of them.

    Each string is one scan of every text, so twelve "translated ... into ..." phrases are
    tested as one "translat". Greedy set cover over the literals' substrings of `min_chars` to
    2 * `min_chars` characters (a literal shorter than that stands for itself): the string
    that covers the most literals not yet covered, then one without an "i", the longer, the first.
    """
    todo = sorted(set(found))
    chosen: list[str] = []
    while todo:
        subs = {lit for lit in todo if len(lit) <= min_chars} | {
            lit[i : i + n]
            for lit in todo
            for n in range(min_chars, 2 * min_chars + 1)
            for i in range(len(lit) - n + 1)
        }
        covers = {sub: sum(sub in lit for lit in todo) for sub in subs}
        # an "i" in a scanned string sends every Turkish text (ı) on to the regex: avoided where possible
        best = max(sorted(covers), key=lambda sub: (covers[sub], "i" not in sub, len(sub)))
        chosen.append(best)
        todo = [lit for lit in todo if best not in lit]
    return sorted(chosen)


def folded(text: Column) -> Column:
    """The text as the literals are compared with it."""
    return F.lower(text)


def may_match(folded_text: Column, patterns: Sequence[str]) -> Column | None:
    """True where the text (through `folded`) holds one of the rule's literals, as every match does.

    None when the patterns give no literals: the rule then runs its regex on every text.
    """
    found = rule_literals(patterns)
    if not found:
        return None
    strings = cover(found)
    unfolded = sorted({c for letter, chars in _UNFOLDED.items() if any(letter in s for s in strings) for c in chars})
    tests = [F.contains(folded_text, F.lit(s)) for s in [*strings, *unfolded]]
    out = tests[0]
    for test in tests[1:]:
        out = out | test
    return out
