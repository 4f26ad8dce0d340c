"""Cross-validation folds and intervals, on constructed data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mdaq_spark.train import crossval as cv


def _records(langs=("de", "es", "fr", "ko", "tr"), sources=60) -> pd.DataFrame:
    rows = [{"lang": lang, "source": s} for lang in langs for s in range(sources)]
    rows.append({"lang": "de", "source": None})  # inside an alignment gap
    df = pd.DataFrame(rows)
    df["source"] = df["source"].astype("Int64")
    return df


def test_folds_hold_out_languages_and_sources_together():
    records = _records()
    folds = cv.make_folds(records, 3, seed=1)
    assert sorted(x for f in folds for x in f.test_langs) == sorted(records["lang"].unique())
    assert set().union(*(f.test_sources for f in folds)) == set(range(60))
    for fold in folds:
        train, test = cv.fold_split(records, fold)
        assert len(test) > 0 and len(train) > 0
        assert not set(train["lang"]) & set(fold.test_langs)
        assert not set(train["source"]) & set(test["source"])
        assert train["source"].notna().all() and test["source"].notna().all()
    assert cv.make_folds(records, 3, seed=1) == folds and cv.make_folds(records, 3, seed=2) != folds


def test_accuracy_counts_ties_half_and_the_interval_brackets_it():
    assert cv.accuracy(np.array([1.0, -1.0, 0.0, 1.0])) == 0.625
    rng = np.random.default_rng(0)
    gap = rng.normal(0.3, 1.0, 2000)
    clusters = np.repeat(np.arange(500), 4)
    lo, hi = cv.bootstrap_interval(gap, clusters, cv.accuracy, n=300)
    assert lo < cv.accuracy(gap) < hi and hi - lo < 0.1


def test_top_fraction_revised_per_language():
    scores = np.array([5, 4, 3, 2, 1, 0, 9, 8, 7, 6], dtype=float)
    revised = np.array([1, 1, 0, 0, 0, 0, 0, 1, 1, 1], dtype=bool)
    langs = np.array(["a"] * 5 + ["b"] * 5)
    out = cv.top_fraction_revised(scores, revised, langs)
    assert out["a"] == {"samples": 5, "top": 1, "revised_share": 1.0}
    assert out["b"]["revised_share"] == 0.0  # the top "b" sample (score 9) is a raw one


def test_relevance_negatives_come_from_other_prompts_of_the_same_language():
    from mdaq_spark.train.triplets import with_relevance_negatives

    t = pd.DataFrame(
        {
            "lang": ["de"] * 5 + ["es"] * 3,
            "prompt": [f"p{i}" for i in range(8)],
            "chosen": [f"c{i}" for i in range(8)],
            "rejected": [f"r{i}" for i in range(8)],
            "distance": [1.0] * 8,
            "source": ["f"] * 8,
            "group": [f"g{i}" for i in range(8)],
        }
    )
    out = with_relevance_negatives(t, 2, seed=3)
    assert len(out) == 8 * 3 and out.iloc[:8].equals(t)
    extra = out.iloc[8:]
    lang_of = dict(zip(t["chosen"], t["lang"], strict=True))
    assert (extra["rejected"].map(lang_of) == extra["lang"]).all()
    assert (extra["rejected"] != extra["chosen"]).all()
    assert out.equals(with_relevance_negatives(t, 2, seed=3))
    assert with_relevance_negatives(t, 0, seed=3) is t
