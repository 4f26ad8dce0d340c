"""The static (token-embedding) e5 model: builds from the packaged files, loads offline, embeds sensibly."""

from __future__ import annotations

import numpy as np
import pytest

from mdaq_spark.config import ModelConfig
from mdaq_spark.models import registry
from mdaq_spark.models.encoder import TextEncoder, max_tokens

NAME = "multilingual-e5-small-static"


@pytest.fixture(scope="module")
def static_encoder():
    registry.ensure_prepared(NAME)
    return TextEncoder(ModelConfig(name=NAME, max_seq_length=16, device="cpu"))


def test_manifest_names_its_sources(static_encoder):
    manifest = registry.manifest(static_encoder.location)
    assert manifest["name"] == NAME
    assert len(manifest["source"]["weights_sha256"]) == 64


def test_paraphrase_is_closer_than_an_unrelated_text(static_encoder):
    texts = [
        "How do I keep fresh basil for a week?",
        "What is the best way to keep basil fresh for several days?",
        "The Eiffel Tower was built for the 1889 World's Fair.",
        "Wie viele Einwohner hat Hamburg?",
        "Wie hoch ist die Einwohnerzahl von Hamburg?",
        "Türkiye'nin en uzun nehri hangisidir?",
    ]
    e = static_encoder.encode(texts, "query: ")
    assert e.shape == (6, 384) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2]
    assert sim[3, 4] > sim[3, 5]


def test_truncates_to_the_configured_tokens(static_encoder):
    assert max_tokens(static_encoder.model) == 16
    head = "alpha beta gamma delta " * 8  # well over 16 tokens
    a, b = static_encoder.encode([head + "one two three", head + "seven eight nine"])
    np.testing.assert_allclose(a, b, atol=1e-6)  # what differs lies past the cut
    c, d = static_encoder.encode(["alpha beta one two three", "alpha beta seven eight nine"])
    assert float(c @ d) < 0.99


def test_encoder_counts_the_cpu_it_spends_in_the_model(static_encoder):
    """The UDF-overhead bench splits a worker's CPU with this counter; an empty call adds nothing."""
    from mdaq_spark.models.encoder import encode_cpu_in_this_process

    before = encode_cpu_in_this_process()
    static_encoder.encode([])
    assert encode_cpu_in_this_process() == before
    static_encoder.encode(["Wie viele Einwohner hat Hamburg?"] * 2000, "query: ")
    assert encode_cpu_in_this_process() > before
