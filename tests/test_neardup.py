"""Near-duplicate removal inside clusters: constructed cases and a plain-loop reference on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mdaq_spark import schema as S
from mdaq_spark.config import NearDupConfig
from mdaq_spark.stages.prune.neardup import near_duplicates

SCHEMA = (
    f"{S.SAMPLE_ID} string, {S.LANG} string, {S.CLUSTER_ID} int, {S.CENTROID_DISTANCE} double, "
    f"{S.QSM_SCORE} double, {S.EMBEDDING} array<float>"
)


def _unit(v) -> list[float]:
    v = np.asarray(v, dtype=np.float64)
    return [float(x) for x in v / np.linalg.norm(v)]


def _frame(spark, rows):
    return spark.createDataFrame(rows, SCHEMA)


def _result(df, cfg):
    return {r[S.SAMPLE_ID]: r.asDict() for r in near_duplicates(df, cfg).collect()}


def test_constructed_cluster(spark):
    base = np.array([1.0, 0.0, 0.0, 0.0])
    rows = [
        # a, its near copy b (cosine ~0.995) scored higher, c close to b too, d unrelated
        ("a", "de", 0, 0.1, 0.50, _unit(base)),
        ("b", "de", 0, 0.1, 0.80, _unit(base + [0.0, 0.1, 0.0, 0.0])),
        ("c", "de", 0, 0.1, 0.20, _unit(base + [0.0, 0.12, 0.02, 0.0])),
        ("d", "de", 0, 0.5, 0.10, _unit([0.0, 0.0, 1.0, 0.0])),
        # the same vector as a, but in another cluster and language: never compared
        ("e", "fr", 0, 0.1, 0.10, _unit(base)),
        ("f", "de", 1, 0.1, 0.10, _unit(base)),
    ]
    out = _result(_frame(spark, rows), NearDupConfig(enabled=True, threshold=0.99))
    assert set(out) == {"a", "b", "c", "d", "e", "f"}  # every row answered once
    assert out["b"][S.DUPLICATE_OF] is None and out["b"][S.NEAR_DUP_COUNT] == 2
    assert out["a"][S.DUPLICATE_OF] == "b" and out["a"][S.DUP_SIMILARITY] > 0.99
    assert out["c"][S.DUPLICATE_OF] == "b"
    for kept in "def":
        assert out[kept][S.DUPLICATE_OF] is None and out[kept][S.NEAR_DUP_COUNT] == 0
    # a stricter threshold keeps them all
    strict = _result(_frame(spark, rows), NearDupConfig(enabled=True, threshold=0.9999))
    assert all(r[S.DUPLICATE_OF] is None for r in strict.values())


def reference(rows, threshold: float) -> dict[str, str | None]:
    """Plain loop over each cluster (no blocks): the first kept sample reaching the best similarity."""
    out = {}
    by_cluster: dict[tuple, list] = {}
    for r in rows:
        by_cluster.setdefault((r[1], r[2]), []).append(r)
    for members in by_cluster.values():
        kept = []
        for r in sorted(members, key=lambda r: (-r[4], r[0])):
            sims = [float(np.dot(np.float32(r[5]), np.float32(k[5]))) for k in kept]
            if sims and max(sims) >= threshold:
                out[r[0]] = kept[int(np.argmax(sims))][0]
            else:
                kept.append(r)
                out[r[0]] = None
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_plain_loop_with_ties(spark, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 8))
    rows = []
    for i in range(90):
        c = int(rng.integers(0, 3))
        v = centres[c] + rng.normal(scale=0.15, size=8)
        score = float(np.round(rng.uniform(0, 1), 1))  # many ties: sample_id decides
        rows.append((f"s{i:03d}", "de" if i % 2 else "fr", c, 0.0, score, _unit(v)))
    out = _result(_frame(spark, rows), NearDupConfig(enabled=True, threshold=0.97, max_block_size=1000))
    expected = reference(rows, 0.97)
    assert {k: v[S.DUPLICATE_OF] for k, v in out.items()} == expected
    assert 0 < sum(v is not None for v in expected.values()) < len(rows)  # the case removes some, not all
    # counts add up: every removed sample is counted by exactly one kept sample
    assert sum(v[S.NEAR_DUP_COUNT] for v in out.values()) == sum(v is not None for v in expected.values())


def test_oversized_cluster_is_split_into_blocks(spark):
    # ten copies of one vector in a cluster of 20, sorted by centroid distance next to each other
    x = np.eye(21)
    rows = [(f"x{i:02d}", "de", 0, float(i), 1.0 - i / 100, _unit(x[20] + x[0] * i / 1e4)) for i in range(10)]
    rows += [(f"y{i:02d}", "de", 0, 10.0 + i, 0.5, _unit(x[i] + 0.01)) for i in range(10)]
    out = _result(_frame(spark, rows), NearDupConfig(enabled=True, threshold=0.99, max_block_size=6))
    kept_x = sorted(k for k, v in out.items() if k.startswith("x") and v[S.DUPLICATE_OF] is None)
    # 20 rows, at most 6 per block -> 4 balanced blocks of 5: the x's span exactly two blocks
    assert len(kept_x) == math.ceil(10 / 5) == 2
    assert kept_x == ["x00", "x05"]
    assert all(out[f"x{i:02d}"][S.DUPLICATE_OF] == ("x00" if i < 5 else "x05") for i in (1, 2, 3, 4, 6, 7, 8, 9))
    assert all(v[S.DUPLICATE_OF] is None for k, v in out.items() if k.startswith("y"))
