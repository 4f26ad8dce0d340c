"""The batched detector gives py3langid's own answer: same language, same probabilities to float32 rounding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mdaq_spark.stages.language import identifier
from mdaq_spark.stages.language_scores import BatchScorer

DEMO = Path(__file__).resolve().parents[1] / "mdaq_spark" / "demo" / "corpus" / "alpaca.jsonl"

AWKWARD = [
    "",  # no feature at all: the uniform distribution, as py3langid's normalised scores
    "!!!",
    "ALL CAPS ARE LOWER-CASED FIRST",
    "Cafe\u0301 au lait",  # decomposed accent: NFC first
    "한국어 문장과 English words, 混合",
    "x" * 5000,  # longer than max_chars
]


def _rows() -> list[dict]:
    rows = []
    for line in DEMO.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue  # the demo corpus holds broken lines on purpose
    return [r for r in rows if isinstance(r, dict)]


def _texts() -> list[str]:
    rows = _rows()
    return [r[k] for r in rows for k in ("instruction", "output") if isinstance(r.get(k), str)] + AWKWARD


@pytest.mark.parametrize("languages", [None, ("de", "en", "fr", "sw")])
def test_batched_probabilities_match_py3langid(languages):
    ident = identifier(languages, True)
    texts = _texts()
    ours = BatchScorer(ident).probabilities(texts, 1000)
    classes = list(dict.fromkeys(ident.nb_classes))
    theirs = np.array([[dict(ident.rank(t[:1000]))[c] for c in classes] for t in texts], dtype=np.float32)
    assert ours.shape == theirs.shape == (len(texts), len(classes))
    assert np.abs(ours - theirs).max() < 1e-3  # float32 sums in another order
    assert (ours.argmax(axis=1) == theirs.argmax(axis=1)).all()


def test_a_text_scores_the_same_in_any_batch():
    scorer = BatchScorer(identifier(None, True))
    texts = _texts()
    alone = np.concatenate([scorer.probabilities([t], 1000) for t in texts])
    together = scorer.probabilities(texts, 1000)
    reordered = scorer.probabilities(texts[::-1], 1000)[::-1]
    assert np.array_equal(alone.argmax(axis=1), together.argmax(axis=1))
    assert np.abs(alone - together).max() < 1e-6 and np.abs(reordered - together).max() < 1e-6
    assert scorer.probabilities([], 1000).shape == (0, len(scorer.classes))


def test_long_texts_are_scored_in_chunks_with_the_same_answers(monkeypatch):
    from mdaq_spark.stages import language_scores

    scorer = BatchScorer(identifier(None, True))
    texts = _texts()
    whole = scorer.probabilities(texts, 1000)
    monkeypatch.setattr(language_scores, "_MAX_CELLS", 3000)  # a few texts per chunk, the 5,000-char one alone
    chunked = scorer.probabilities(texts, 1000)
    assert np.array_equal(whole.argmax(axis=1), chunked.argmax(axis=1))
    assert np.abs(whole - chunked).max() < 1e-6
