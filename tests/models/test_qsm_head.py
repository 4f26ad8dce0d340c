"""The QSM head shipped in the package: found by `auto`, trained on this very encoder setting, and it scores."""

from __future__ import annotations

import numpy as np
import pytest

from mdaq_spark.config import ModelConfig
from mdaq_spark.errors import ModelLoadError
from mdaq_spark.models import registry
from mdaq_spark.models.qsm import QsmHead, normalise_rows, score_and_embed


def _inputs(n: int, layers: int, seed: int, on_topic: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prompt and response embeddings (the response near its prompt when on topic) and layer states."""
    rng = np.random.default_rng(seed)
    p = normalise_rows(rng.normal(size=(n, 384)))
    noise = normalise_rows(rng.normal(size=(n, 384)))
    r = normalise_rows(p + 0.3 * noise) if on_topic else noise
    return p, r, rng.normal(size=(n, layers, 384)).astype(np.float16)


def test_auto_finds_the_shipped_head_for_the_default_encoder(model_dir):
    head_dir = registry.resolve_head("auto", "multilingual-e5-small")
    assert head_dir is not None
    head = QsmHead.load(head_dir)
    assert head.in_dim == 384
    assert head.manifest["kind"] == "mdaq-qsm-layer-head" and head.layers == (2, 4, 6, 8, 10, 12)
    # it was trained on embeddings of exactly the encoder the default config runs
    assert head.manifest["encoder_fingerprint"] == registry.encoder_fingerprint(model_dir, ModelConfig())
    assert head.manifest["metrics"]["eval_seen_languages"]["qsm"]["pairs"] > 0
    assert registry.resolve_head("none", "multilingual-e5-small") is None
    assert registry.resolve_head("auto", "some/other-encoder") is None


def test_head_changes_scores_but_not_sample_embeddings():
    head = QsmHead.load(registry.resolve_head("auto", "multilingual-e5-small"))
    p, r, states = _inputs(8, len(head.layers), seed=0)
    trained, emb_a = score_and_embed(p, r, head, states)
    plain, emb_b = score_and_embed(p, r, None)
    assert not np.allclose(trained, plain)
    assert np.array_equal(emb_a, emb_b)  # clustering uses the frozen embeddings either way
    # the quality term reads the layer states: other states, other scores, same cosine part
    other = score_and_embed(p, r, head, states[::-1].copy())[0]
    assert not np.allclose(trained, other)
    # ... within the gate's bound: at most its scale above the cosine
    gate = head.manifest["quality_gate"]
    cosine = np.einsum("ij,ij->i", *head.project(p, r))
    assert np.all((trained >= cosine - 1e-6) & (trained <= cosine + gate["scale"] + 1e-6))
    # and only for a response on the prompt's topic: an unrelated one gets its cosine alone
    p, r, states = _inputs(8, len(head.layers), seed=1, on_topic=False)
    off = score_and_embed(p, r, head, states)[0]
    assert np.allclose(off, score_and_embed(p, r, head, states[::-1].copy())[0], atol=1e-6)
    assert np.allclose(off, np.einsum("ij,ij->i", *head.project(p, r)), atol=1e-6)
    with pytest.raises(ModelLoadError, match="layer states"):
        score_and_embed(p, r, head)


def test_head_mismatches_name_each_setting_that_differs():
    from mdaq_spark.models.qsm import head_mismatches

    manifest = QsmHead.load(registry.resolve_head("auto", "multilingual-e5-small")).manifest
    assert head_mismatches(manifest, ModelConfig()) == []
    assert head_mismatches(manifest, ModelConfig(device="cpu", dtype="float32")) == []
    lines = head_mismatches(
        manifest, ModelConfig(max_seq_length=512, dtype="float16", response_prefix="", name="other/model")
    )
    assert len(lines) == 4
    assert any("max_seq_length" in x and "256" in x and "512" in x for x in lines)
    assert any(x.startswith("precision") for x in lines) and any(x.startswith("response prefix") for x in lines)
    assert any(x.startswith("encoder") for x in lines)


def test_a_mismatched_head_warns_in_stats_and_report_and_strict_refuses(spark, model_cache, tmp_path):
    import json
    import shutil

    import pytest

    from mdaq_spark.config import load_config
    from mdaq_spark.errors import ConfigError
    from mdaq_spark.pipeline.runner import run_pipeline
    from tests.conftest import DEMO_CORPUS

    head = tmp_path / "head128"
    shutil.copytree(registry.resolve_head("auto", "multilingual-e5-small"), head)
    manifest = json.loads((head / "qsm_head.json").read_text())
    (head / "qsm_head.json").write_text(json.dumps({**manifest, "max_seq_length": 128}))
    overrides = [f"model.cache_dir={model_cache}", f"model.qsm_head={head}", "spark.shuffle_partitions=2"]
    fields = {"input.paths": [str(DEMO_CORPUS / "openai.jsonl")], "output.path": str(tmp_path / "run")}
    with pytest.raises(ConfigError, match="max_seq_length"):
        run_pipeline(spark, load_config(None, [*overrides, "model.qsm_head_strict=true"], **fields))
    assert not (tmp_path / "run" / "normalized").exists()  # refused before any stage ran
    stats = run_pipeline(spark, load_config(None, overrides, **fields))
    warning = stats["stage_info"]["score"]["qsm_head_mismatch"]
    assert warning == ["max_seq_length: head trained at 128, run uses 256"]
    html = (tmp_path / "run" / "report" / "report.html").read_text()
    assert "trained under other encoder settings" in html and "head trained at 128" in html


def test_a_score_is_the_same_bits_in_any_batch():
    """The score stage reads stored encodings without a shuffle, so a row's batch follows the file layout."""
    head = QsmHead.load(registry.resolve_head("auto", "multilingual-e5-small"))
    p, r, states = _inputs(600, len(head.layers), seed=1)
    whole, emb = score_and_embed(p, r, head, states)
    for start, size in ((0, 1), (5, 3), (11, 7), (40, 100), (50, 513)):
        rows = slice(start, start + size)
        part, part_emb = score_and_embed(p[rows], r[rows], head, states[rows])
        assert np.array_equal(part, whole[start : start + size])
        assert np.array_equal(part_emb, emb[start : start + size])
