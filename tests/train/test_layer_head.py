"""The layer head: it learns a fluency signal without giving up relevance, repeats exactly, and scores row by row."""

from __future__ import annotations

import numpy as np
import pytest

from mdaq_spark.config import LayerHeadTrainConfig
from mdaq_spark.models.qsm import score_and_embed
from mdaq_spark.train.layer_head import train_layer_head


@pytest.mark.parametrize("gate_scale", [None, 0.0], ids=["default-gated", "ungated"])
def test_layer_head_learns_a_fluency_direction_without_losing_relevance(gate_scale):
    rng = np.random.default_rng(0)
    n, d, layers = 600, 16, 3
    anchor = rng.normal(size=(n, d)).astype(np.float32)
    pos = anchor + 0.3 * rng.normal(size=(n, d)).astype(np.float32)
    neg = pos + 0.05 * rng.normal(size=(n, d)).astype(np.float32)  # nearly the same meaning
    flu = rng.normal(size=d).astype(np.float32)
    pos_layers = rng.normal(size=(n, layers, d)).astype(np.float32) + flu  # revisions share a surface trait
    neg_layers = rng.normal(size=(n, layers, d)).astype(np.float32)
    params = LayerHeadTrainConfig(layers=[0, 1, 2], hidden=32, epochs=8, batch_size=64, train_relevance=False)
    if gate_scale is not None:
        params = params.model_copy(update={"gate_scale": gate_scale})
    trained = train_layer_head(anchor, pos, neg, pos_layers, neg_layers, params, seed=0)
    again = train_layer_head(anchor, pos, neg, pos_layers, neg_layers, params, seed=0)
    assert all(np.array_equal(trained.tensors[k], again.tensors[k]) for k in trained.tensors)
    head = trained.head()

    def score(p, states):
        return score_and_embed(anchor, p, head, states)[0]

    s_pos = score(pos, pos_layers)
    assert (s_pos > score(neg, neg_layers)).mean() > 0.9
    other = np.roll(np.arange(n), 1)
    assert (s_pos > score(pos[other], pos_layers[other])).mean() > 0.9


def test_gated_layer_head_gives_an_off_topic_response_its_cosine_alone():
    rng = np.random.default_rng(1)
    n, d, layers = 600, 16, 2
    anchor = rng.normal(size=(n, d)).astype(np.float32)
    pos = anchor + 0.3 * rng.normal(size=(n, d)).astype(np.float32)
    neg = pos + 0.05 * rng.normal(size=(n, d)).astype(np.float32)
    flu = rng.normal(size=d).astype(np.float32)
    pos_layers = rng.normal(size=(n, layers, d)).astype(np.float32) + flu
    neg_layers = rng.normal(size=(n, layers, d)).astype(np.float32)
    params = LayerHeadTrainConfig(layers=[0, 1], hidden=32, epochs=8, batch_size=64, gate_scale=0.1)
    trained = train_layer_head(anchor, pos, neg, pos_layers, neg_layers, params, seed=0)
    head = trained.head()
    gate = head.manifest["quality_gate"]
    assert gate["scale"] == 0.1 and gate["temperature"] == params.gate_temperature
    s_pos = score_and_embed(anchor, pos, head, pos_layers)[0]
    assert (s_pos > score_and_embed(anchor, neg, head, neg_layers)[0]).mean() > 0.9
    # the fluency term is bounded by the scale and shut below the threshold
    p, r = head.project(anchor, pos)
    cosine = np.einsum("ij,ij->i", p, r)
    assert np.all((s_pos >= cosine - 1e-6) & (s_pos <= cosine + 0.1 + 1e-6))
    other = np.roll(np.arange(n), 1)
    p, r = head.project(anchor, pos[other])
    off_cos = np.einsum("ij,ij->i", p, r)
    off = score_and_embed(anchor, pos[other], head, pos_layers[other])[0]
    below = off_cos < gate["threshold"] - 5 * gate["temperature"]
    assert below.mean() > 0.5  # mismatched pairs lie below the threshold ...
    np.testing.assert_allclose(off[below], off_cos[below], atol=0.1 * 0.01)  # ... and keep their cosine
