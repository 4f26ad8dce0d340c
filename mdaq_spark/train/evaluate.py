"""QSM evaluation: does a scorer rank the expert-revised response above the raw translation?

Every scorer is judged on the same pairs: pairwise accuracy per language and overall, the
same on length-matched pairs (chosen and rejected within 10% of each other's length, where
"longer is better" cannot help), and the Spearman correlation between the score gap
(chosen - rejected) and the pair's edit distance (a bigger revision should be a clearer
win). Baselines: response length, a seeded coin, and the untrained encoder cosine.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LENGTH_MATCH = 0.10  # relative length difference under which a pair counts as length-matched


def length_matched(triplets: pd.DataFrame) -> pd.Series:
    lc, lr = triplets["chosen"].str.len(), triplets["rejected"].str.len()
    return (lc - lr).abs() <= LENGTH_MATCH * np.maximum(lc, lr)


def _accuracy(gap: np.ndarray) -> float | None:
    """Ties count half: a scorer that cannot tell the two apart earns a coin's worth."""
    if len(gap) == 0:
        return None
    return float(((gap > 0).sum() + 0.5 * (gap == 0).sum()) / len(gap))


def _spearman(gap: np.ndarray, distance: pd.Series) -> float | None:
    ok = distance.notna().to_numpy()
    if ok.sum() < 3:
        return None
    value = pd.Series(gap[ok]).corr(pd.Series(distance.to_numpy()[ok], dtype=float), method="spearman")
    return None if pd.isna(value) else float(value)


def baseline_gaps(triplets: pd.DataFrame, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "length": (triplets["chosen"].str.len() - triplets["rejected"].str.len()).to_numpy(dtype=float),
        "random": rng.uniform(-1, 1, len(triplets)),
    }


def evaluate(triplets: pd.DataFrame, gaps: dict[str, np.ndarray]) -> dict:
    """{scorer: {"overall": metrics, "per_language": {lang: metrics}}}; gap = score(chosen) - score(rejected)."""
    matched = length_matched(triplets).to_numpy()
    langs = triplets["lang"].to_numpy()
    out: dict = {}
    for name, gap in gaps.items():

        def metrics(mask: np.ndarray, gap=gap) -> dict:
            return {
                "pairs": int(mask.sum()),
                "accuracy": _accuracy(gap[mask]),
                "length_matched_pairs": int((mask & matched).sum()),
                "accuracy_length_matched": _accuracy(gap[mask & matched]),
                "spearman_gap_vs_edit_distance": _spearman(gap[mask], triplets["distance"][mask]),
            }

        out[name] = {
            "overall": metrics(np.ones(len(triplets), dtype=bool)),
            "per_language": {lang: metrics(langs == lang) for lang in sorted(set(langs))},
        }
    return out


def table_rows(results: dict, split_name: str) -> list[list[str]]:
    """Rows for a terminal/markdown table: split, language, then accuracy (matched) per scorer."""
    scorers = list(results)
    langs = list(next(iter(results.values()))["per_language"]) + ["overall"]

    def fmt(m: dict) -> str:
        acc, lm = m["accuracy"], m["accuracy_length_matched"]
        return f"{acc:.3f} ({lm:.3f})" if lm is not None else f"{acc:.3f} (-)"

    rows = []
    for lang in langs:
        cells = [results[s]["overall"] if lang == "overall" else results[s]["per_language"][lang] for s in scorers]
        rows.append([split_name, lang, str(cells[0]["pairs"]), *[fmt(c) for c in cells]])
    return rows
