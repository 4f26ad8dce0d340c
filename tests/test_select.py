"""DAS and per-cluster top-k against a plain pandas reference, on random data with ties."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mdaq_spark import schema as S
from mdaq_spark.config import SelectionConfig
from mdaq_spark.stages.select import select


def _budget(n: int, lang: str, cfg: SelectionConfig) -> int:
    if lang in cfg.budget_per_lang:
        return min(cfg.budget_per_lang[lang], n)
    if cfg.budget_count is not None:
        return min(cfg.budget_count, n)
    return min(n, max(1, math.floor(cfg.budget_fraction * n + 0.5)))


def reference_das(df: pd.DataFrame, cfg: SelectionConfig) -> dict[str, str]:
    """The M-DaQ walk written as a loop: top n_quality, then best sample of each uncovered cluster."""
    out: dict[str, str] = {}
    q, d = cfg.quality_parts, cfg.diversity_parts
    for lang, group in df.groupby(S.LANG):
        ranked = group.sort_values([S.QSM_SCORE, S.SAMPLE_ID], ascending=[False, True]).to_dict("records")
        budget = _budget(len(ranked), lang, cfg)
        n_quality = (budget * 2 * q + (q + d)) // (2 * (q + d))
        covered = set()
        for row in ranked[:n_quality]:
            out[row[S.SAMPLE_ID]] = S.REASON_QUALITY
            covered.add(row[S.CLUSTER_ID])
        rest = ranked[n_quality:]
        need = budget - n_quality
        taken: set[str] = set()
        round_covered = set(covered)
        while need > 0 and len(taken) < len(rest):
            # one pass down the ranking: the best not-yet-taken sample of each cluster not yet seen this round
            seen = set(round_covered)
            for row in rest:
                if need == 0:
                    break
                if row[S.SAMPLE_ID] in taken or row[S.CLUSTER_ID] in seen:
                    continue
                seen.add(row[S.CLUSTER_ID])
                taken.add(row[S.SAMPLE_ID])
                out[row[S.SAMPLE_ID]] = S.REASON_DIVERSITY
                need -= 1
            round_covered = set()
    return out


def reference_top_k(df: pd.DataFrame, cfg: SelectionConfig) -> dict[str, str]:
    out: dict[str, str] = {}
    for lang, group in df.groupby(S.LANG):
        n = len(group)
        budget = _budget(n, lang, cfg)
        sizes = group.groupby(S.CLUSTER_ID).size().to_dict()
        if cfg.top_k_per_cluster is not None:
            quota = {c: cfg.top_k_per_cluster for c in sizes}
        else:
            floors = {c: budget * s // n for c, s in sizes.items()}
            left = budget - sum(floors.values())
            order = sorted(sizes, key=lambda c: (-(budget * sizes[c] % n), c))
            quota = {c: floors[c] + (1 if i < left else 0) for i, c in enumerate(order)}
        for cluster, members in group.groupby(S.CLUSTER_ID):
            best = members.sort_values([S.QSM_SCORE, S.SAMPLE_ID], ascending=[False, True]).head(quota[cluster])
            out.update(dict.fromkeys(best[S.SAMPLE_ID], S.REASON_CLUSTER_TOP_K))
    return out


def _random_frame(seed: int, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    langs = rng.choice(["de", "fr", "sw", "zh"], size=n, p=[0.4, 0.3, 0.2, 0.1])
    # a coarse score grid makes ties common; the tie-break by sample_id must decide them
    scores = np.round(rng.uniform(0.7, 0.9, size=n), 2)
    clusters = rng.integers(0, rng.integers(2, 12), size=n)
    ids = [f"{rng.integers(0, 16**8):08x}{i:04d}" for i in range(n)]
    return pd.DataFrame({S.SAMPLE_ID: ids, S.LANG: langs, S.QSM_SCORE: scores, S.CLUSTER_ID: clusters.astype("int32")})


CONFIGS = [
    SelectionConfig(),
    SelectionConfig(budget_fraction=None, budget_count=13),
    SelectionConfig(budget_fraction=0.5, quality_parts=1, diversity_parts=1),
    SelectionConfig(budget_fraction=0.9, quality_parts=6, diversity_parts=1),  # uncovered clusters run out
    SelectionConfig(budget_fraction=0.3, budget_per_lang={"sw": 4, "zh": 1000}),
    SelectionConfig(budget_fraction=1.0, quality_parts=0, diversity_parts=1),
    SelectionConfig(strategy="cluster_top_k"),
    SelectionConfig(strategy="cluster_top_k", budget_fraction=None, budget_count=17),
    SelectionConfig(strategy="cluster_top_k", top_k_per_cluster=2),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "cfg",
    CONFIGS,
    ids=lambda c: f"{c.strategy}-{c.budget_fraction}-{c.budget_count}-{c.quality_parts}:{c.diversity_parts}",
)
def test_selection_matches_reference(spark, seed, cfg):
    frame = _random_frame(seed)
    got_rows = select(spark.createDataFrame(frame), cfg).collect()
    got = {r[S.SAMPLE_ID]: r[S.SELECTION_REASON] for r in got_rows}
    assert len(got) == len(got_rows), "a sample was selected twice"
    reference = reference_das if cfg.strategy == "das" else reference_top_k
    assert got == reference(frame, cfg)


def test_das_budget_split_and_rank(spark):
    frame = _random_frame(7, n=700)
    cfg = SelectionConfig(budget_fraction=None, budget_count=35)
    assert frame.groupby(S.LANG).size().min() > 35
    rows = select(spark.createDataFrame(frame), cfg).toPandas()
    assert sorted(rows[S.LANG].unique()) == sorted(frame[S.LANG].unique())
    for _lang, group in rows.groupby(S.LANG):
        assert (group[S.SELECTION_REASON] == S.REASON_QUALITY).sum() == 30
        assert (group[S.SELECTION_REASON] == S.REASON_DIVERSITY).sum() == 5
        quality = group[group[S.SELECTION_REASON] == S.REASON_QUALITY]
        assert sorted(quality[S.QUALITY_RANK]) == list(range(1, 31))


def test_selection_is_independent_of_partitioning(spark):
    frame = _random_frame(3)
    cfg = SelectionConfig(budget_fraction=0.25)
    one = select(spark.createDataFrame(frame).repartition(1), cfg).toPandas()
    many = select(spark.createDataFrame(frame.sample(frac=1, random_state=5)).repartition(7), cfg).toPandas()
    key = [S.SAMPLE_ID]
    assert one.sort_values(key).reset_index(drop=True).equals(many.sort_values(key).reset_index(drop=True))


def reference_mmr(df: pd.DataFrame, cfg: SelectionConfig) -> set[str]:
    """MMR as a plain loop over python lists: candidates = the capped pool of best-scored rows."""
    out: set[str] = set()
    for lang, group in df.groupby(S.LANG):
        ranked = group.sort_values([S.QSM_SCORE, S.SAMPLE_ID], ascending=[False, True]).to_dict("records")
        budget = _budget(len(ranked), lang, cfg)
        pool = ranked[: min(max(budget, math.ceil(budget * cfg.mmr_pool_factor)), cfg.mmr_max_pool)]
        picked: list[dict] = []
        for _ in range(budget):
            best, best_value = None, -math.inf
            for row in pool:
                if any(row is p for p in picked):
                    continue
                sims = [float(np.dot(np.float32(row[S.EMBEDDING]), np.float32(p[S.EMBEDDING]))) for p in picked]
                value = cfg.mmr_lambda * row[S.QSM_SCORE] - (1 - cfg.mmr_lambda) * max([0.0, *sims])
                if value > best_value:  # strict: the first (best-ranked) row wins a tie
                    best, best_value = row, value
            picked.append(best)
        out.update(p[S.SAMPLE_ID] for p in picked)
    return out


def _with_embeddings(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, 6))
    vectors = centres[frame[S.CLUSTER_ID].to_numpy()] + rng.normal(scale=0.3, size=(len(frame), 6))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return frame.assign(**{S.EMBEDDING: [list(map(float, v)) for v in vectors]})


@pytest.mark.parametrize(
    "cfg",
    [
        SelectionConfig(strategy="mmr"),
        SelectionConfig(strategy="mmr", mmr_lambda=0.3, budget_fraction=None, budget_count=9, mmr_pool_factor=2),
        SelectionConfig(strategy="mmr", mmr_lambda=0.5, budget_fraction=0.3, mmr_max_pool=20),
    ],
    ids=["default", "low-lambda-count", "capped-pool"],
)
def test_mmr_matches_reference(spark, cfg):
    frame = _with_embeddings(_random_frame(4, n=160), 4)
    rows = select(spark.createDataFrame(frame), cfg).toPandas()
    assert rows[S.SAMPLE_ID].is_unique and set(rows[S.SELECTION_REASON]) == {S.REASON_MMR}
    assert set(rows[S.SAMPLE_ID]) == reference_mmr(frame, cfg)
    for lang, group in frame.groupby(S.LANG):
        expected = min(_budget(len(group), lang, cfg), cfg.mmr_max_pool)
        assert (rows[S.LANG] == lang).sum() == expected


def test_mmr_trades_quality_for_diversity(spark):
    # two near-identical top samples and a slightly worse, different one: lambda decides
    rows = [
        ("a", "de", 0.90, 0, [1.0, 0.0]),
        ("b", "de", 0.89, 0, [0.999, 0.0447]),
        ("c", "de", 0.80, 1, [0.0, 1.0]),
    ]
    df = spark.createDataFrame(
        rows,
        f"{S.SAMPLE_ID} string, {S.LANG} string, {S.QSM_SCORE} double, {S.CLUSTER_ID} int, "
        f"{S.EMBEDDING} array<double>",
    )

    def pick(lam: float) -> set[str]:
        cfg = SelectionConfig(strategy="mmr", budget_fraction=None, budget_count=2, mmr_lambda=lam)
        return {r[S.SAMPLE_ID] for r in select(df, cfg).collect()}

    assert pick(1.0) == {"a", "b"}  # pure quality
    assert pick(0.5) == {"a", "c"}  # the duplicate of a is worth less than a different sample
