"""The whole job on real data with the real packaged model: demo corpus, MIDB languages, determinism."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from mdaq_spark import schema as S
from mdaq_spark.config import load_config
from mdaq_spark.pipeline.runner import run_pipeline
from mdaq_spark.rundir import CANDIDATES, NORMALIZED, QUARANTINE, SCORES, SELECTED
from tests import golden
from tests.conftest import DEMO_CORPUS, write_midb_subset


def _midb_subset(tmp_path: Path, languages: tuple[str, ...], records: int) -> Path:
    return write_midb_subset(tmp_path / "midb", dict.fromkeys(languages, records))


def _run(spark, model_cache, inputs, out: Path, *overrides: str) -> dict:
    cfg = load_config(
        None,
        ["spark.shuffle_partitions=4", f"model.cache_dir={model_cache}", *overrides],
        **{"input.paths": [str(p) for p in inputs], "output.path": str(out)},
    )
    return run_pipeline(spark, cfg)


def _table(spark, out: Path, name: str) -> pd.DataFrame:
    return spark.read.parquet(str(out / name)).toPandas()


def _scores(spark, out: Path, stats: dict) -> pd.Series:
    """The score store holds every head's scores: the run's own are those of its fingerprint."""
    scores = _table(spark, out, SCORES)
    mine = scores[scores[S.MODEL_FINGERPRINT] == stats["stage_info"]["score"]["model_fingerprint"]]
    return mine.set_index(S.SAMPLE_ID)[S.QSM_SCORE]


def test_midb_two_languages_end_to_end(spark, model_cache, tmp_path):
    corpus = _midb_subset(tmp_path, ("German", "Korean"), records=120)
    out = tmp_path / "run"
    stats = _run(spark, model_cache, [corpus], out, "selection.budget_fraction=0.1")
    golden.check("midb_german_korean", spark.read.parquet(str(out / SELECTED)), stats)

    counts = stats["counts"]
    assert counts["identity_holds"]
    assert counts["records_read"] == 2 * 2 * 120  # raw + revised of every record
    normalized = _table(spark, out, NORMALIZED)
    quarantine = _table(spark, out, QUARANTINE)
    assert len(normalized) + len(quarantine) == counts["records_read"]
    assert normalized[S.SAMPLE_ID].is_unique
    assert set(normalized[S.LANG]) == {"de", "ko"}
    # identical raw and revised samples collapse: the copy is quarantined as a duplicate
    assert set(quarantine[S.QUARANTINE_REASON]) <= {S.DUPLICATE_REASON} | {
        r for r in quarantine[S.QUARANTINE_REASON] if r.endswith(("_raw", "_revised"))
    }

    scores = _table(spark, out, SCORES)
    # the shipped gated layer head: a cosine in [-1, 1] plus a fluency term of at most its scale (0.2)
    assert len(scores) == len(normalized) and scores[S.QSM_SCORE].between(-1 - 1e-6, 1.2 + 1e-6).all()
    assert scores[S.QSM_SCORE].nunique() > 0.9 * len(scores)
    assert {len(e) for e in scores[S.EMBEDDING]} == {384}

    selected = _table(spark, out, SELECTED)
    for lang, n in normalized.groupby(S.LANG).size().items():
        chosen = selected[selected[S.LANG] == lang]
        budget = max(1, int(0.1 * n + 0.5))
        assert len(chosen) == budget
        assert (chosen[S.SELECTION_REASON] == S.REASON_QUALITY).sum() == (budget * 12 + 7) // 14
    assert selected[S.SAMPLE_ID].is_unique
    assert {S.INSTRUCTION, S.RESPONSE, S.CLUSTER_ID, S.QSM_SCORE, S.VARIANT} <= set(selected.columns)
    assert stats["per_language"]["de"]["clusters"] == stats["stage_info"]["cluster"]["k_per_lang"]["de"]
    assert set(selected[S.VARIANT]) <= {"raw", "revised"}
    # single-turn samples: one exchange each, whose score is the sample's (the golden pins it unchanged)
    assert all(list(t) == [q] for t, q in zip(selected[S.TURN_SCORES], selected[S.QSM_SCORE], strict=True))
    assert (selected[S.WEAKEST_TURN] == 0).all()
    assert all(dict(m) == {"qsm": q} for m, q in zip(selected[S.SCORER_SCORES], selected[S.QSM_SCORE], strict=True))


def test_demo_corpus_end_to_end_and_deterministic(spark, model_cache, tmp_path):
    if not DEMO_CORPUS.is_dir():
        pytest.fail("demo corpus missing from the repository")
    # determinism: the golden digest pins this run against the recorded one (rows, ranks,
    # clusters, reasons, texts), and test_gpu_cluster compares runs of different sizes bit for bit
    first = _run(spark, model_cache, [DEMO_CORPUS], tmp_path / "a")
    assert first["counts"]["identity_holds"] and first["counts"]["quarantined"] > 0
    assert len(first["per_language"]) >= 5
    golden.check("demo", spark.read.parquet(str(tmp_path / "a" / SELECTED)), first)
    _check_report_commands(tmp_path / "a", first)
    _check_report(tmp_path / "a", first)  # the page `mdaq report` rebuilt, checked in full

    # the corpus has responses that copy their instruction and responses cut off mid-word: flagged, and
    # (filters.action: demote) ranked after every clean sample, so a 20% budget never reaches them; a
    # flagged sample is selected only where its language has no clean one (a language of one sample
    # still gets a budget of one)
    flags = {f for e in first["per_language"].values() for f in e.get("flags", {})}
    assert {"response_copies_instruction", "truncated_response"} <= flags
    selected = _table(spark, tmp_path / "a", SELECTED)
    candidates = _table(spark, tmp_path / "a", CANDIDATES)
    clean_langs = set(candidates[candidates["flags"].map(len) == 0][S.LANG])
    assert not set(selected[selected["flags"].map(len) > 0][S.LANG]) & clean_langs
    assert selected["flags"].map(len).sum() < candidates["flags"].map(len).sum()
    dropped = _run(spark, model_cache, [DEMO_CORPUS], tmp_path / "a", "filters.action=drop")
    assert dropped["stages_skipped"] == ["ingest", "encode", "score", "cluster"]
    assert dropped["counts"]["selected"] < first["counts"]["selected"]  # budgets count only unflagged samples


def _check_report_commands(run: Path, stats: dict) -> None:
    """`mdaq report` rebuilds the page from stats.json alone; `mdaq inspect` prints the same numbers."""
    import contextlib
    import io

    from mdaq_spark.cli import main

    page = run / "report" / "report.html"
    page.unlink()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", str(run)]) == 0
    assert out.getvalue().strip() == str(page) and page.is_file()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["inspect", str(run)]) == 0
    text = out.getvalue()
    c = stats["counts"]
    assert f"read {c['records_read']} = kept {c['kept']} + quarantined {c['quarantined']}" in text
    assert "identity holds" in text
    for lang, entry in stats["per_language"].items():
        assert re.search(rf"\b{lang}\b.*\b{entry['samples']}\b", text), lang
    assert main(["inspect", str(run / "no-such-run")]) == 3


def _check_report(run: Path, stats: dict) -> None:
    """report.html shows stats.json's own numbers, and headless Chromium really draws it."""
    import os
    import struct

    from scripts.screenshot_report import chromium, screenshot

    html = (run / "report" / "report.html").read_text(encoding="utf-8")
    c = stats["counts"]
    assert f"{c['records_read']} = {c['kept']} + {c['quarantined']} + {c['exact_duplicates']}" in html
    for lang, entry in stats["per_language"].items():
        assert f"<td class='l'>{lang}</td><td>{entry['samples']}</td>" in html
    assert html.count("<svg") >= 2 * len(stats["per_language"]) + 1  # histograms, cluster sizes, the map
    assert "http://" not in html and "https://" not in html and "<script" not in html  # self-contained
    if chromium() is None:
        if os.environ.get("MDAQ_REQUIRE_CHROMIUM") == "1":
            pytest.fail("chromium is required for the report screenshot check (MDAQ_REQUIRE_CHROMIUM=1)")
        return
    png = screenshot(run / "report" / "report.html", run / "report.png")
    header = png.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1280, 2400)
    assert png.stat().st_size > 50_000  # a blank page compresses to a few kB


def test_rerun_skips_finished_stages(spark, model_cache, tmp_path):
    corpus = _midb_subset(tmp_path, ("Spanish",), records=40)
    out = tmp_path / "run"
    _run(spark, model_cache, [corpus], out)
    again = _run(spark, model_cache, [corpus], out)
    assert again["stages_skipped"] == ["ingest", "encode", "score", "cluster", "select"]
    # the same samples in touched (or copied, re-exported) files: ingest reads them again, nothing else runs
    import os

    for f in corpus.iterdir():
        os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    touched = _run(spark, model_cache, [corpus], out)
    assert touched["stages_skipped"] == ["encode", "score", "cluster", "select"]
    # killed after its last encode batch was committed but before the stage's marker was written:
    # the stage runs again, finds every sample stored, computes nothing and succeeds
    (out / "_stages" / "encode.json").unlink()
    resumed = _run(spark, model_cache, [corpus], out, "spark.rows_per_commit=10")
    assert resumed["stage_info"]["encode"]["computed"] == 0
    assert resumed["stage_info"]["encode"]["rows_through_model_udf"] == 0
    assert resumed["stages_skipped"] == ["ingest", "score", "cluster", "select"]
    changed = _run(spark, model_cache, [corpus], out, "selection.strategy=cluster_top_k")
    assert changed["stages_skipped"] == ["ingest", "encode", "score", "cluster"]
    selected = _table(spark, out, SELECTED)
    assert set(selected[S.SELECTION_REASON]) == {S.REASON_CLUSTER_TOP_K}


def test_new_qsm_head_rescores_without_reencoding(spark, model_cache, tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    corpus = _midb_subset(tmp_path, ("Italian",), records=30)
    out = tmp_path / "run"
    first = _run(spark, model_cache, [corpus], out, "model.qsm_head=none")
    before = _scores(spark, out, first)

    head = tmp_path / "head"
    head.mkdir()
    rng = np.random.default_rng(1)
    eye = np.eye(384, dtype=np.float32)
    save_file(
        {
            "prompt.weight": eye,
            "prompt.bias": np.zeros(384, np.float32),
            "response.weight": eye + 0.05 * rng.normal(size=(384, 384)).astype(np.float32),
            "response.bias": np.zeros(384, np.float32),
        },
        str(head / "qsm_head.safetensors"),
    )
    stats = _run(spark, model_cache, [corpus], out, f"model.qsm_head={head}")
    assert stats["stages_skipped"] == ["ingest", "encode"]  # stored encodings are reused
    assert stats["stage_info"]["score"]["rows_through_model_udf"] == len(before)
    # stats count this head's scores only, though the store now holds both heads' scores
    assert sum(e["scored"] for e in stats["per_language"].values()) == len(before)
    after = _scores(spark, out, stats)
    assert set(after.index) == set(before.index)
    assert not np.allclose(after.loc[before.index].to_numpy(), before.to_numpy())

    # the shipped layer head reads response layer states, which those encodings lack: the corpus is
    # encoded once more (with the states), and the plain encodings stay stored beside it
    layered = _run(spark, model_cache, [corpus], out, "model.qsm_head=auto")
    assert "encode" not in layered["stages_skipped"]
    assert layered["stage_info"]["encode"]["computed"] == len(before)
    assert set(_scores(spark, out, layered).index) == set(before.index)
