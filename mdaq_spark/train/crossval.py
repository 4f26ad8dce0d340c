"""Leave-languages-out, source-disjoint cross-validation of QSM designs, with baselines and intervals.

What a user needs to know is whether the QSM ranks samples better than length does on data it
has never seen, in languages it has never seen. So each fold holds out a set of languages AND
a set of source records: training sees neither, evaluation sees only their intersection (the
held-out languages' translations of the held-out records). Every scorer, the baselines
included, is judged on the same pairs of the same fold. Intervals come from a bootstrap over
source records (a record's translations are not independent samples).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mdaq_spark.train.evaluate import LENGTH_MATCH

TOP_FRACTION = 0.2  # the selection-level check: the top 20% of a language by score


def _rank(key: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()[:8], "big")


@dataclass(frozen=True)
class Fold:
    index: int
    test_langs: tuple[str, ...]
    test_sources: frozenset[int]


def make_folds(records: pd.DataFrame, n_folds: int, seed: int) -> list[Fold]:
    """Languages dealt round-robin in a seeded order, source records by a seeded hash."""
    langs = sorted(records["lang"].unique(), key=lambda x: _rank(x, seed))
    sources = sorted({int(s) for s in records["source"].dropna()})
    by_fold: dict[int, set[int]] = {i: set() for i in range(n_folds)}
    for s in sources:
        by_fold[_rank(str(s), seed + 1) % n_folds].add(s)
    return [
        Fold(i, tuple(sorted(langs[i::n_folds])), frozenset(by_fold[i])) for i in range(n_folds) if langs[i::n_folds]
    ]


def fold_split(records: pd.DataFrame, fold: Fold) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) records: test = held-out languages x held-out sources; train shares neither."""
    known = records["source"].notna()
    in_langs = records["lang"].isin(fold.test_langs)
    in_sources = records["source"].isin(fold.test_sources) & known
    train = records[known & ~in_langs & ~in_sources]
    test = records[in_langs & in_sources]
    return train.reset_index(drop=True), test.reset_index(drop=True)


def length_matched(a: pd.Series, b: pd.Series) -> np.ndarray:
    la, lb = a.str.len().to_numpy(), b.str.len().to_numpy()
    return np.abs(la - lb) <= LENGTH_MATCH * np.maximum(la, lb)


def accuracy(gap: np.ndarray) -> float:
    """Ties count half: a scorer that cannot tell two responses apart earns a coin's worth."""
    return float(((gap > 0).sum() + 0.5 * (gap == 0).sum()) / len(gap)) if len(gap) else float("nan")


def bootstrap_interval(
    values: np.ndarray, clusters: np.ndarray, stat: Callable[[np.ndarray], float], n: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of `stat`, resampling whole clusters (source records) with replacement."""
    if len(values) == 0:
        return float("nan"), float("nan")
    ids, inverse = np.unique(clusters, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(ids))]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pick = rng.integers(0, len(ids), len(ids))
        out.append(stat(values[np.concatenate([members[i] for i in pick])]))
    lo, hi = np.percentile(out, [2.5, 97.5])
    return float(lo), float(hi)


def summarise(gap: np.ndarray, clusters: np.ndarray, mask: np.ndarray | None = None, seed: int = 0) -> dict:
    g, c = (gap, clusters) if mask is None else (gap[mask], clusters[mask])
    lo, hi = bootstrap_interval(g, c, accuracy, seed=seed)
    return {"pairs": int(len(g)), "accuracy": accuracy(g), "ci95": [lo, hi]}


def top_fraction_revised(scores: np.ndarray, is_revised: np.ndarray, langs: np.ndarray) -> dict:
    """Per language: the share of expert revisions among the top TOP_FRACTION of samples by score."""
    out = {}
    for lang in sorted(set(langs)):
        m = langs == lang
        s, r = scores[m], is_revised[m]
        k = max(1, int(round(TOP_FRACTION * len(s))))
        # ties broken by position: a constant scorer keeps the input order, which alternates raw/revised
        top = np.lexsort((np.arange(len(s)), -s))[:k]
        out[lang] = {"samples": int(len(s)), "top": k, "revised_share": float(r[top].mean())}
    return out
