"""Contrasts any quality scorer must get right, built from real instruction data.

MIDB pairs test one contrast (an expert revision against a literal machine translation). A
scorer can win there and still be useless for selection, for example by preferring any
response that echoes its instruction. So the true response is also set against responses
that are wrong in other ways:

- `other_instruction`: the response of another instruction of the same language;
- `truncated`: the first 30% of the response, cut at a word boundary;
- `instruction_copy`: the instruction itself, given as the response;
- `shuffled`: the response's sentences (or, for one sentence, its words) in a seeded shuffle;
- `other_language`: the same response translated into another language, for a prompt that
  did not ask for one.

Each builder is a pure function of the text (seeded by its hash), so the encode pass and the
evaluation rebuild exactly the same negatives.
"""

from __future__ import annotations

import hashlib
import random
import re

import pandas as pd

CONTRASTS = ("other_instruction", "truncated", "instruction_copy", "shuffled", "other_language")
TRUNCATE_FRACTION = 0.3
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n+")


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def truncated(text: str) -> str:
    cut = max(1, int(len(text) * TRUNCATE_FRACTION))
    head = text[:cut]
    space = head.rfind(" ")
    return head[:space] if space > len(head) // 2 else head


def shuffled(text: str) -> str:
    """Sentences in another order; words when there is one sentence. Never the text itself."""
    parts = [p for p in _SENTENCE_END.split(text.strip()) if p.strip()]
    sep = " "
    if len(parts) < 2:
        parts = text.split()
    if len(set(parts)) < 2:
        return text[::-1]
    rng = random.Random(_seed(text))
    order = parts[:]
    while order == parts:
        rng.shuffle(order)
    return sep.join(order)


def sanity_order(records: pd.DataFrame, seed: int = 7) -> list[int]:
    """Every source record in a seeded order; its head is the sanity set."""
    sources = sorted({int(s) for s in records["source"].dropna()})
    return sorted(sources, key=lambda s: _seed(f"{seed}:{s}"))


def sanity_sources(records: pd.DataFrame, per_language: int = 200, seed: int = 7) -> set[int]:
    """A fixed set of source records (the same in every language), chosen by a seeded hash."""
    return set(sanity_order(records, seed)[:per_language])


def sanity_texts(records: pd.DataFrame, instruction_prefix: str, response_prefix: str) -> list[tuple[str, str]]:
    """(prefix, text) of every negative that is not already a MIDB text: what the encode pass adds."""
    chosen = sanity_sources(records)
    out = []
    for r in records[records["source"].isin(chosen)].itertuples():
        out.append((response_prefix, truncated(r.revised_response)))
        out.append((response_prefix, r.revised_prompt))
        out.append((response_prefix, shuffled(r.revised_response)))
    return out
