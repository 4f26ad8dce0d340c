"""Translated copies across languages: constructed groups, the LSH against brute force, keep modes."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mdaq_spark import schema as S
from mdaq_spark.config import CopyGroupConfig
from mdaq_spark.stages.prune.copies import band_keys, project, translated_copies

SCHEMA = f"{S.SAMPLE_ID} string, {S.LANG} string, {S.QSM_SCORE} double, {S.EMBEDDING} array<float>, {S.DOMAIN} string"
DIM = 32
LANGS = ("de", "fr", "it", "es", "pt")
# two sign bits per band, sixteen bands: a pair at 60 degrees (after centring) is missed with
# probability 0.56^16 < 1e-4, so constructed cases do not depend on luck of the hyperplanes
WIDE = dict(enabled=True, threshold=0.9, bits=32, bands=16, domains=[])


def _unit(v) -> list[float]:
    v = np.asarray(v, dtype=np.float64)
    return [float(x) for x in v / np.linalg.norm(v)]


def _near(base, rng, noise=0.02):
    """A copy of unit(base) with Gaussian noise per coordinate: two copies sit at cosine ~1 / (1 + noise^2 dim)."""
    base = np.asarray(base, dtype=np.float64)
    return _unit(base / np.linalg.norm(base) + rng.normal(scale=noise, size=len(base)))


def _run(spark, rows, seed=42, **cfg):
    df = spark.createDataFrame(rows, SCHEMA)
    out = translated_copies(df, CopyGroupConfig(**{**WIDE, **cfg}), seed)
    return {r[S.SAMPLE_ID]: r.asDict() for r in out.collect()}


def _background(rng, n, langs=LANGS, domain="math"):
    """Unrelated samples (random directions in 32-d: cosines around 0 +- 0.2)."""
    return [(f"z{i:03d}", langs[i % len(langs)], 0.5, _unit(rng.normal(size=DIM)), domain) for i in range(n)]


def test_one_source_in_four_languages(spark):
    rng = np.random.default_rng(0)
    base = rng.normal(size=DIM)
    scores = {"de": 0.9, "fr": 0.3, "it": 0.8, "es": 0.2}
    rows = [(f"s_{lang}", lang, score, _near(base, rng), "math") for lang, score in scores.items()]
    rows += _background(rng, 20)
    out = _run(spark, rows, max_langs_per_group=2, keep="best_score")
    assert set(out) == {"s_de", "s_fr", "s_it", "s_es"}  # the background has no copies
    assert {r[S.COPY_GROUP] for r in out.values()} == {"s_de"}  # smallest sample_id of the group
    assert {k for k, r in out.items() if r[S.TRANSLATED_COPY]} == {"s_fr", "s_es"}  # the two best languages stay
    assert out["s_de"][S.COPY_COUNT] == out["s_it"][S.COPY_COUNT] == 2
    assert out["s_fr"][S.COPY_COUNT] == out["s_es"][S.COPY_COUNT] == 0


def test_same_language_and_unrelated_samples_are_not_grouped(spark):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=DIM), rng.normal(size=DIM)
    rows = [
        ("de1", "de", 0.5, _unit(a), "math"),
        ("de2", "de", 0.4, _near(a, rng, 0.001), "math"),  # cosine ~1, same language
        ("fr1", "fr", 0.5, _unit(b), "math"),
        ("fr2", "fr", 0.4, _near(b, rng, 0.001), "math"),
    ]
    rows += _background(rng, 12)
    assert _run(spark, rows) == {}


def test_threshold_is_the_boundary(spark):
    rng = np.random.default_rng(2)
    e0, e1 = np.eye(DIM)[0], np.eye(DIM)[1]
    rows = _background(rng, 12)
    for name, cosine in (("in", 0.95), ("out", 0.85)):
        angle = np.arccos(cosine)
        rows.append((f"{name}_de", "de", 0.5, _unit(e0 if name == "in" else -e0), "math"))
        other = np.cos(angle) * (e0 if name == "in" else -e0) + np.sin(angle) * (e1 if name == "in" else -e1)
        rows.append((f"{name}_fr", "fr", 0.4, _unit(other), "math"))
    out = _run(spark, rows, threshold=0.9)
    assert set(out) == {"in_de", "in_fr"}


def test_domain_filter(spark):
    rng = np.random.default_rng(3)
    rows = _background(rng, 12, domain="general")
    for domain in ("math", "general"):
        base = rng.normal(size=DIM)
        rows += [(f"{domain}_{lang}", lang, 0.5, _near(base, rng), domain) for lang in ("de", "fr", "it")]
    only_math = _run(spark, rows, domains=["math"], max_langs_per_group=1)
    assert set(only_math) == {"math_de", "math_fr", "math_it"}
    assert sum(r[S.TRANSLATED_COPY] for r in only_math.values()) == 2
    everything = _run(spark, rows, domains=[], max_langs_per_group=1)
    assert set(everything) == {f"{d}_{lang}" for d in ("math", "general") for lang in ("de", "fr", "it")}


def test_chain_is_one_component_and_iterations_are_bounded(spark, caplog):
    # nine samples on an arc, 20 degrees apart: neighbours at cosine 0.94, two apart at 0.77;
    # the smallest id sits at one end, so the label must travel the whole chain
    rng = np.random.default_rng(4)
    angles = np.radians(20) * np.arange(9)
    e0, e1 = np.eye(DIM)[0], np.eye(DIM)[1]
    rows = [
        (f"n{8 - k}", ("de", "fr")[k % 2], 0.5, _unit(np.cos(t) * e0 + np.sin(t) * e1), "math")
        for k, t in enumerate(angles)
    ]
    rows += _background(rng, 12)
    out = _run(spark, rows, max_langs_per_group=2)
    assert set(out) == {f"n{k}" for k in range(9)}
    assert {r[S.COPY_GROUP] for r in out.values()} == {"n0"}
    assert not any(r[S.TRANSLATED_COPY] for r in out.values())  # two languages, both kept
    with caplog.at_level(logging.WARNING, logger="mdaq_spark.stages.prune.copies"):
        cut = _run(spark, rows, max_iterations=1)
    assert len({r[S.COPY_GROUP] for r in cut.values()}) > 1
    assert "stopped after 1 rounds" in caplog.text


def _groups(n_groups, langs, rng, noise=0.02):
    rows = []
    for g in range(n_groups):
        base = rng.normal(size=DIM)
        rows += [
            (f"g{g:02d}_{lang}", lang, 0.9 if lang == "de" else 0.5, _near(base, rng, noise), "math") for lang in langs
        ]
    return rows


def test_spread_shares_the_loss_between_languages(spark):
    rng = np.random.default_rng(5)
    langs = ("de", "fr", "it", "es")
    rows = _groups(40, langs, rng)
    spread = _run(spark, rows, max_langs_per_group=2, keep="spread")
    assert len({r[S.COPY_GROUP] for r in spread.values()}) == 40
    kept = {lang: sum(not r[S.TRANSLATED_COPY] for k, r in spread.items() if k.endswith(lang)) for lang in langs}
    assert sum(kept.values()) == 80  # two languages in every group
    assert all(10 <= n <= 30 for n in kept.values()), kept  # about half of each language, not all of one
    best = _run(spark, rows, max_langs_per_group=2, keep="best_score")
    assert all(not r[S.TRANSLATED_COPY] for k, r in best.items() if k.endswith("de"))  # de always scores best
    reseeded = _run(spark, rows, seed=7, max_langs_per_group=2, keep="spread")
    assert {k: r[S.TRANSLATED_COPY] for k, r in reseeded.items()} != {
        k: r[S.TRANSLATED_COPY] for k, r in spread.items()
    }


def test_deterministic_across_partitionings(spark):
    rng = np.random.default_rng(6)
    rows = _groups(15, ("de", "fr", "it"), rng, noise=0.05) + _background(rng, 30)
    cfg = CopyGroupConfig(enabled=True, threshold=0.9, domains=[])
    df = spark.createDataFrame(rows, SCHEMA)
    first = sorted(tuple(r) for r in translated_copies(df.coalesce(1), cfg, 42).collect())
    second = sorted(tuple(r) for r in translated_copies(df.repartition(5), cfg, 42).collect())
    assert first == second and len(first) > 0


def test_band_keys_pack_sign_bits():
    proj = np.array([[1.0, -1.0, 1.0, 1.0], [-1.0, -1.0, -1.0, 1.0]])
    assert band_keys(proj, 2).tolist() == [[1, 3], [0, 2]]  # bits little-endian inside each band
    x = np.random.default_rng(0).normal(size=(130, 8))
    planes = np.random.default_rng(1).normal(size=(5, 8))
    np.testing.assert_allclose(project(x, planes), x @ planes.T, rtol=1e-12, atol=1e-12)
    # a row's projection does not depend on the rows around it
    assert np.array_equal(project(x[70:71], planes)[0], project(x, planes)[70])


def _clustered(rng, dim=64, sources=90):
    """A few hundred vectors: sources copied into 1-5 languages with noise from tight to loose."""
    rows = []
    for g in range(sources):
        base = rng.normal(size=dim)
        langs = rng.choice(LANGS, size=int(rng.integers(1, 6)), replace=False)
        noise = float(rng.choice([0.01, 0.03, 0.04, 0.05]))
        rows += [(f"v{g:02d}_{lang}", str(lang), 0.5, _near(base, rng, noise), "math") for lang in langs]
    return rows


def _reference_pairs(rows, cfg):
    """All-pairs numpy version of the rule: k nearest per language, cosine, ratio margin."""
    x = np.asarray([r[3] for r in rows], dtype=np.float32).astype(np.float64)
    ids = [r[0] for r in rows]
    lang = np.asarray([r[1] for r in rows])
    sims = x @ x.T
    near, knn = {}, {}
    for i in range(len(rows)):
        for target in set(lang) - {lang[i]}:
            cols = np.flatnonzero(lang == target)
            top = cols[np.argsort(-sims[i, cols])[: cfg.neighbours]]
            near[i, target] = set(top.tolist())
            knn[i, target] = float(np.sum(sims[i, top]) / cfg.neighbours)  # missing neighbours count as 0
    out = {}
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            if lang[i] == lang[j] or sims[i, j] < cfg.threshold:
                continue
            if j not in near[i, lang[j]] and i not in near[j, lang[i]]:
                continue
            margin = sims[i, j] / ((knn[i, lang[j]] + knn[j, lang[i]]) / 2)
            if margin >= cfg.margin:
                out[tuple(sorted((ids[i], ids[j])))] = (float(sims[i, j]), float(margin))
    return out


def _share_a_bucket(df, rows, cfg, seed):
    """Pairs of rows that agree on every bit of at least one band, with the job's own hyperplanes and centre."""
    from mdaq_spark.stages.prune.copies import hyperplanes, pool_mean

    x = np.asarray([r[3] for r in rows], dtype=np.float32).astype(np.float64)
    centre = pool_mean(df, cfg, seed)
    keys = band_keys(project(x - centre, hyperplanes(seed, cfg.bits + 1, x.shape[1]))[:, : cfg.bits], cfg.bands)
    shared = (keys[:, None, :] == keys[None, :, :]).any(axis=2)
    return {tuple(sorted((rows[i][0], rows[j][0]))) for i, j in zip(*np.nonzero(np.triu(shared, 1)), strict=False)}


def _union_find(nodes, pairs):
    parent = {n: n for n in nodes}

    def root(n):
        while parent[n] != n:
            n = parent[n]
        return n

    for a, b in pairs:
        ra, rb = sorted((root(a), root(b)))
        parent[rb] = ra
    return {n: root(n) for n in nodes}


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force(spark, seed):
    from mdaq_spark.stages.prune.copies import candidate_pairs, pool_mean

    rng = np.random.default_rng(seed)
    rows = _clustered(rng)
    assert 200 <= len(rows) <= 400
    df = spark.createDataFrame(rows, SCHEMA).select(S.SAMPLE_ID, S.LANG, S.QSM_SCORE, S.EMBEDDING)

    def found(cfg):
        pairs = candidate_pairs(df, cfg, 42, pool_mean(df, cfg, 42))
        return {(r["a"], r["b"]): (r["cosine"], r["margin"]) for r in pairs.collect()}

    # one bit per band, 48 bands: every pair shares a bucket somewhere (checked), so the
    # neighbours are exact and the job must give exactly the all-pairs answer
    exact_cfg = CopyGroupConfig(**{**WIDE, "bits": 48, "bands": 48, "neighbours": 3})
    reference = _reference_pairs(rows, exact_cfg)
    n = len(rows)
    assert len(_share_a_bucket(df, rows, exact_cfg, 42)) == n * (n - 1) // 2
    assert len(reference) > 50 and min(c for c, _ in reference.values()) < 0.97  # pairs near the threshold too
    exact = found(exact_cfg)
    assert set(exact) == set(reference)
    assert all(abs(exact[p][0] - reference[p][0]) < 1e-9 and abs(exact[p][1] - reference[p][1]) < 1e-9 for p in exact)

    # the default banding leaves pairs uncompared: every reference pair whose samples share a
    # bucket is still found (a neighbour missed elsewhere can only raise a margin), and
    # nothing is reported below the cosine threshold
    default_cfg = CopyGroupConfig(threshold=0.9, domains=[], neighbours=3)
    reference = _reference_pairs(rows, default_cfg)
    lsh = found(default_cfg)
    shared = _share_a_bucket(df, rows, default_cfg, 42)
    assert len(shared) < n * (n - 1) // 2
    assert {p for p in reference if p in shared} <= set(lsh)
    assert len(lsh.keys() & reference.keys()) >= 0.9 * len(reference)
    assert all(c >= default_cfg.threshold for c, _ in lsh.values())

    # the groups are exactly the union-find components of the exact pairs
    out = _run(spark, rows, seed=42, **{**WIDE, "bits": 48, "bands": 48, "neighbours": 3, "max_langs_per_group": 5})
    roots = _union_find({r[0] for r in rows}, _reference_pairs(rows, exact_cfg))
    grouped = {n: r for n, r in roots.items() if sum(1 for m in roots.values() if m == r) > 1}
    assert {k: r[S.COPY_GROUP] for k, r in out.items()} == grouped


def test_margin_rejects_a_dense_region(spark):
    """Eight samples in two languages at cosine 0.92 to each other: every cross pair passes a
    0.9 threshold but none stands out from its neighbours (margin exactly 1); one pair at
    0.95 in an empty region stands out."""
    rng = np.random.default_rng(8)
    basis = np.linalg.qr(rng.normal(size=(DIM, DIM)))[0]
    u, spokes = basis[0], basis[1:9]
    rows = [
        (f"dense_{i}", ("de", "fr")[i % 2], 0.5, _unit(np.sqrt(0.92) * u + np.sqrt(0.08) * spokes[i]), "math")
        for i in range(8)
    ]
    v = basis[10]
    rows += [
        ("pair_de", "de", 0.5, _unit(v), "math"),
        ("pair_fr", "fr", 0.5, _unit(0.95 * v + np.sqrt(1 - 0.95**2) * basis[11]), "math"),
    ]
    rows += _background(rng, 12)
    with_margin = _run(spark, rows, threshold=0.9, margin=1.02)
    assert set(with_margin) == {"pair_de", "pair_fr"}
    without = _run(spark, rows, threshold=0.9, margin=0.0)
    assert {k for k in without if k.startswith("dense")} == {f"dense_{i}" for i in range(8)}
    assert len({without[f"dense_{i}"][S.COPY_GROUP] for i in range(8)}) == 1


def test_config_change_reruns_select():
    from mdaq_spark.config import load_config
    from mdaq_spark.stages.select import select_key

    base = load_config(None, [])
    for override in ("copies.enabled=true", "copies.threshold=0.95", "copies.keep=best_score"):
        assert select_key(load_config(None, [override]), "c", "s") != select_key(base, "c", "s"), override


def test_bits_must_split_into_bands():
    from mdaq_spark.config import load_config
    from mdaq_spark.errors import ConfigError

    with pytest.raises(ConfigError, match="multiple of copies.bands"):
        load_config(None, ["copies.bits=30", "copies.bands=4"])
    with pytest.raises(ConfigError, match="bits per band"):
        load_config(None, ["copies.bits=64", "copies.bands=1"])
