"""The pure parts of the conversation benchmarks: exchanges, sibling pairs, corruptions, aggregates.

A conversation is a list of turns `{"role": "system"|"user"|"assistant", "content": str}`.
Each assistant turn with the user turn it answers is an exchange, as the pipeline defines it
(mdaq_spark/io/exchanges.py): the instruction side is the context before the answer (earlier
turns from the first question on, cut from the LEFT so that it fits the encoder's length, the
answering user turn kept whole), the response side is the answer. A single-turn conversation
has one exchange whose texts are the sample's own, so a single-turn score here is the
pipeline's score.

Nothing here touches a model or a file: the benchmarks feed these texts to the encoder, and the
tests check the texts themselves.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from mdaq_spark.io import exchanges as ex

SOFTMIN_TEMPERATURE = 0.05  # on the QSM's scale: score gaps between a good and a bad turn are 0.02-0.2
CORRUPTIONS = ("raw_mt", "other_answer", "truncated")
# the scorer combinations tried, fixed before any run: the weight of length's rank beside the QSM's
LENGTH_WEIGHTS = (0.5, 0.25)


@dataclass(frozen=True)
class ExchangeText:
    turn: int  # position among the conversation's exchanges, 0 = the first answer
    instruction: str  # what the bi-encoder reads as the prompt
    response: str
    id: str  # the exchange's content id


def exchange_texts(
    turns: Sequence[dict], count: Callable[[str], int], spans: Callable[[str], list[tuple[int, int]]], limit: int
) -> list[ExchangeText]:
    """The texts the bi-encoder reads for each exchange, by the pipeline's own definition (io/exchanges.py).

    `count(text)`: tokens the encoder reads for `text` as a prompt (prefix and special tokens
    included); `spans(text)`: the (start, end) characters of each token of the text alone.
    """
    out = []
    for e in ex.exchanges(turns):
        prompt = ex.fit_context(ex.encoder_context(e), e.user, limit, count, spans)
        out.append(ExchangeText(e.turn, prompt, e.response, e.id))
    return out


def replace_answer(turns: Sequence[dict], p: int, answer: str) -> list[dict]:
    """The conversation with its p-th assistant turn (1-based) answered by `answer`; other turns untouched."""
    positions = [i for i, t in enumerate(turns) if t["role"] == "assistant"]
    if not 1 <= p <= len(positions):
        raise ValueError(f"position {p} of a conversation with {len(positions)} answers")
    out = [dict(t) for t in turns]
    out[positions[p - 1]]["content"] = answer
    return out


# ------------------------------------------------------------------ aggregates of a sample's turn scores


def softmin(scores: Sequence[float], temperature: float = SOFTMIN_TEMPERATURE) -> float:
    """-t log mean exp(-s / t): the mean for a large t, the minimum for a small one."""
    s = np.asarray(scores, dtype=np.float64)
    m = s.min()
    return float(m - temperature * math.log(np.mean(np.exp(-(s - m) / temperature))))


AGGREGATES: dict[str, Callable[[Sequence[float]], float]] = {
    "first": lambda s: float(s[0]),
    "min": lambda s: float(np.min(s)),
    "mean": lambda s: float(np.mean(s)),
    "softmin": softmin,
}


def rank_normalise(scores: np.ndarray) -> np.ndarray:
    """Percentile ranks in [0, 1] as Spark's percent_rank gives them (ties share the lowest), as a run normalises.

    A scorer's units drop out before scorers are weighted.
    """
    s = np.asarray(scores, dtype=np.float64)
    if len(s) < 2:
        return np.zeros(len(s))
    return (rankdata(s, method="min") - 1) / (len(s) - 1)


def combine_ranked(scores: Sequence[np.ndarray], weights: Sequence[float], groups: np.ndarray) -> np.ndarray:
    """The weighted sum of each scorer's rank-normalised scores, ranked within each group (a language)."""
    groups = np.asarray(groups)
    out = np.zeros(len(groups))
    for g in np.unique(groups):
        m = groups == g
        out[m] = sum(w * rank_normalise(np.asarray(s)[m]) for s, w in zip(scores, weights, strict=True))
    return out


def z_normalise(scores: np.ndarray) -> np.ndarray:
    """(x - mean) / population std, 0 where every score is equal: a run's `normalise: z`."""
    s = np.asarray(scores, dtype=np.float64)
    std = s.std()
    return (s - s.mean()) / std if std > 0 else np.zeros(len(s))


def combine_z(scores: Sequence[np.ndarray], weights: Sequence[float], groups: np.ndarray) -> np.ndarray:
    """The weighted mean of each scorer's z-scores within each group (a language), weights summing to one."""
    groups = np.asarray(groups)
    total = float(sum(weights))
    out = np.zeros(len(groups))
    for g in np.unique(groups):
        m = groups == g
        out[m] = sum(w / total * z_normalise(np.asarray(s)[m]) for s, w in zip(scores, weights, strict=True))
    return out


# ------------------------------------------------------------------ OpenAssistant trees


def _turn(message: dict) -> dict:
    return {"role": "user" if message["role"] == "prompter" else "assistant", "content": message["text"]}


def sibling_pairs(tree: dict) -> list[dict]:
    """Every pair of ranked sibling replies to one prompter message, better-ranked first.

    Each pair carries the conversation up to and including the prompter message (`context`),
    the tree and prompter message ids, and `depth`: 1 for a reply to the tree's first message.
    Replies with no rank, or with equal ranks, form no pair.
    """
    out = []

    def walk(message: dict, path: list[dict]) -> None:
        path = [*path, _turn(message)]
        if message["role"] == "prompter":
            ranked = [
                r for r in message.get("replies") or [] if r["role"] == "assistant" and r.get("rank") is not None
            ]
            ranked.sort(key=lambda r: r["rank"])
            for a in range(len(ranked)):
                for b in range(a + 1, len(ranked)):
                    if ranked[a]["rank"] == ranked[b]["rank"]:
                        continue
                    out.append(
                        {
                            "tree": tree["message_tree_id"],
                            "prompter": message["message_id"],
                            "depth": (len(path) + 1) // 2,
                            "context": path,
                            "better": ranked[a]["text"],
                            "worse": ranked[b]["text"],
                        }
                    )
        for reply in message.get("replies") or []:
            walk(reply, path)

    walk(tree["prompt"], [])
    return out


def split_trees(tree_ids: Sequence[str], seed: int, test_fraction: float = 0.5) -> tuple[set[str], set[str]]:
    """(train, test) tree ids: a seeded hash order, the first `test_fraction` of it held out."""
    order = sorted(set(tree_ids), key=lambda t: hashlib.sha256(f"{seed}\x1f{t}".encode()).hexdigest())
    n_test = int(round(test_fraction * len(order)))
    return set(order[n_test:]), set(order[:n_test])
