"""The QSM head shipped in the package: found by `auto`, trained on this very encoder setting, and it scores."""

from __future__ import annotations

import numpy as np

from mdaq_spark.config import ModelConfig
from mdaq_spark.models import registry
from mdaq_spark.models.qsm import QsmHead, score_and_embed


def test_auto_finds_the_shipped_head_for_the_default_encoder(model_dir):
    head_dir = registry.resolve_head("auto", "multilingual-e5-small")
    assert head_dir is not None
    head = QsmHead.load(head_dir)
    assert head.in_dim == 384
    # it was trained on embeddings of exactly the encoder the default config runs
    assert head.manifest["encoder_fingerprint"] == registry.encoder_fingerprint(model_dir, ModelConfig())
    assert head.manifest["metrics"]["eval_seen_languages"]["qsm"]["pairs"] > 0
    assert registry.resolve_head("none", "multilingual-e5-small") is None
    assert registry.resolve_head("auto", "some/other-encoder") is None


def test_head_changes_scores_but_not_sample_embeddings():
    head = QsmHead.load(registry.resolve_head("auto", "multilingual-e5-small"))
    rng = np.random.default_rng(0)
    p, r = rng.normal(size=(8, 384)).astype(np.float32), rng.normal(size=(8, 384)).astype(np.float32)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    trained, emb_a = score_and_embed(p, r, head)
    plain, emb_b = score_and_embed(p, r, None)
    assert not np.allclose(trained, plain)
    assert np.array_equal(emb_a, emb_b)  # clustering uses the frozen embeddings either way
    assert np.all(np.abs(trained) <= 1 + 1e-6)
