"""The k-means stage benchmark's comparison: each variant's fastest round against faiss's fastest."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import REPO


def _bench():
    spec = importlib.util.spec_from_file_location("kmeans_bench", REPO / "bench" / "kmeans.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(backend, partitions, wall, inertia, round_no):
    return {"round": round_no, "backend": backend, "solver": "block" if backend == "spark" else None,
            "init_mode": "k-means||" if backend == "spark" else None,
            "parallel_fits": 4 if backend == "spark" else None, "fit_partitions": partitions,
            "wall_seconds": wall, "inertia": inertia}  # fmt: skip


def test_the_first_rounds_warm_up_does_not_count_and_each_variant_keeps_its_own_row():
    runs = [
        _run("faiss", None, 18.0, 100.0, 1),
        _run("spark", 8, 91.0, 101.0, 1),
        _run("spark", 2, 60.0, 100.5, 1),
        _run("faiss", None, 8.0, 100.0, 2),
        _run("spark", 8, 77.0, 101.0, 2),
        _run("spark", 2, 62.0, 100.5, 2),  # slower than its first round: the first counts
    ]
    rows = {row["fit_partitions"]: row for row in _bench().compare_to_faiss(runs)}
    assert set(rows) == {8, 2}
    assert rows[8]["wall_seconds"] == 77.0 and rows[8]["faiss_wall_seconds"] == 8.0
    assert rows[8]["time_ratio_to_faiss"] == pytest.approx(9.62)
    assert rows[2]["wall_seconds"] == 60.0 and rows[2]["time_ratio_to_faiss"] == pytest.approx(7.5)
    assert rows[8]["inertia_diff_vs_faiss_percent"] == pytest.approx(1.0)


def test_without_a_faiss_run_there_is_nothing_to_compare():
    assert _bench().compare_to_faiss([_run("spark", 8, 77.0, 101.0, 1)]) == []
