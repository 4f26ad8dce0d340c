"""The layer head: it learns a fluency signal without giving up relevance, repeats exactly, and scores row by row."""

from __future__ import annotations

import numpy as np

from mdaq_spark.config import LayerHeadTrainConfig
from mdaq_spark.models.qsm import score_and_embed
from mdaq_spark.train.layer_head import train_layer_head


def test_layer_head_learns_a_fluency_direction_without_losing_relevance():
    rng = np.random.default_rng(0)
    n, d, layers = 600, 16, 3
    anchor = rng.normal(size=(n, d)).astype(np.float32)
    pos = anchor + 0.3 * rng.normal(size=(n, d)).astype(np.float32)
    neg = pos + 0.05 * rng.normal(size=(n, d)).astype(np.float32)  # nearly the same meaning
    flu = rng.normal(size=d).astype(np.float32)
    pos_layers = rng.normal(size=(n, layers, d)).astype(np.float32) + flu  # revisions share a surface trait
    neg_layers = rng.normal(size=(n, layers, d)).astype(np.float32)
    params = LayerHeadTrainConfig(layers=[0, 1, 2], hidden=32, epochs=8, batch_size=64, train_relevance=False)
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
