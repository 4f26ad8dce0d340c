"""Frozen-encoder embeddings of triplet texts (cached on disk) and the pairwise evaluation of a head on them.

Shared by head training and full fine-tuning, which evaluate the same way. A layer head
also needs the responses' pooled states of several layers: those come from a feature store
(`train.features`) that keeps every layer of one encoder pass, and in that mode every
embedding is read from it too, computed exactly as the pipeline's encode stage computes
them for a layer head.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mdaq_spark.config import ModelConfig
from mdaq_spark.errors import ConfigError
from mdaq_spark.models import registry
from mdaq_spark.models.qsm import QsmHead, score_and_embed
from mdaq_spark.train import evaluate as ev
from mdaq_spark.train.encodings import EncodingCache, encode_texts, seed_from_run, text_key
from mdaq_spark.train.features import FeatureStore
from mdaq_spark.train.triplets import with_relevance_negatives

FEATURE_FINGERPRINT = "encoder_fingerprint.txt"


class Embedder:
    """Frozen-encoder embeddings of triplet texts through the on-disk cache; loads the model only if needed."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        cache_root: str | None,
        reuse_run: str | None,
        layers: tuple[int, ...] = (),
        feature_store: str | None = None,
    ) -> None:
        self.cfg = model_cfg
        self.location = registry.ensure_prepared(model_cfg.name, model_cfg.cache_dir)
        self.fingerprint = registry.encoder_fingerprint(self.location, model_cfg)
        root = Path(cache_root) if cache_root else registry.cache_dir(model_cfg.cache_dir).parent / "qsm_encodings"
        self.cache = EncodingCache(root, self.fingerprint)
        self.layers = tuple(layers)
        self.features = self._feature_store(Path(feature_store) if feature_store else self.cache.dir / "layers")
        if reuse_run:
            if self.layers:
                raise ConfigError("--reuse-run gives last-layer encodings only; a layer head needs all layers' states")
            seed_from_run(self.cache, Path(reuse_run), model_cfg.instruction_prefix, model_cfg.response_prefix)
        self._encoder = None

    def _feature_store(self, path: Path) -> FeatureStore | None:
        """The layer-state store of this encoder; one of another encoder is an error, not a silent mix."""
        if not self.layers:
            return None
        store = FeatureStore(path)
        marker = path / FEATURE_FINGERPRINT
        if marker.is_file() and marker.read_text().strip() != self.fingerprint:
            raise ConfigError(
                f"feature store {path} holds states of encoder {marker.read_text().strip()}, not {self.fingerprint}"
            )
        marker.write_text(self.fingerprint + "\n")
        return store

    @property
    def encoder(self):
        if self._encoder is None:
            from mdaq_spark.models.encoder import TextEncoder

            self._encoder = TextEncoder(self.cfg, self.location)
        return self._encoder

    def triplet_embeddings(self, t: pd.DataFrame) -> tuple[np.ndarray, ...]:
        """(anchor, chosen, rejected) embeddings; with layers, then the chosen and rejected layer states."""
        ip, rp = self.cfg.instruction_prefix, self.cfg.response_prefix
        if self.layers:
            return self._with_layers(t, ip, rp)
        missing = len(
            self.cache.missing([*_keys(t["prompt"], ip), *_keys(t["chosen"], rp), *_keys(t["rejected"], rp)])
        )
        enc = self.encoder if missing else None
        return (
            encode_texts(self.cache, enc, t["prompt"].tolist(), ip),
            encode_texts(self.cache, enc, t["chosen"].tolist(), rp),
            encode_texts(self.cache, enc, t["rejected"].tolist(), rp),
        )

    def _with_layers(self, t: pd.DataFrame, ip: str, rp: str) -> tuple[np.ndarray, ...]:
        if t.empty:
            empty, no_states = np.zeros((0, 0), np.float32), np.zeros((0, len(self.layers), 0), np.float32)
            return empty, empty, empty, no_states, no_states
        sides = [_keys(t["prompt"], ip), _keys(t["chosen"], rp), _keys(t["rejected"], rp)]
        texts = {}
        for keys, column, prefix in zip(sides, ("prompt", "chosen", "rejected"), (ip, rp, rp), strict=True):
            texts.update({k: (prefix, x) for k, x in zip(keys, t[column], strict=True) if k not in self.features})
        if texts:
            self.features.fill(self.encoder, texts)
        a, p, n = (self.features.embeddings(k) for k in sides)
        which = list(self.layers)
        return a, p, n, self.features.layers(sides[1], which), self.features.layers(sides[2], which)


def _keys(texts: pd.Series, prefix: str) -> list[str]:
    return [text_key(prefix, x) for x in texts]


def _gap(a, p, n, head: QsmHead | None, lp=None, ln=None) -> np.ndarray:
    return score_and_embed(a, p, head, lp)[0] - score_and_embed(a, n, head, ln)[0]


def evaluate_splits(splits: dict[str, tuple], head: QsmHead | None, seed: int) -> dict:
    """splits: {name: (triplets, anchor, chosen, rejected[, chosen layer states, rejected layer states])}."""
    out = {}
    for name, (t, a, p, n, *states) in splits.items():
        if len(t) == 0:
            continue
        gaps = {"qsm": _gap(a, p, n, head, *states)} if head is not None else {}
        gaps["untrained_cosine"] = _gap(a, p, n, None)
        gaps.update(ev.baseline_gaps(t, seed))
        out[name] = ev.evaluate(t, gaps)
    return out


def relevance_accuracy(splits: dict[str, pd.DataFrame], embedder: Embedder, head, seed: int) -> dict:
    """Per split and scorer: how often the true response beats another prompt's response (same language)."""
    out = {}
    for name, t in splits.items():
        other = with_relevance_negatives(t, 1, seed + 2).iloc[len(t) :].reset_index(drop=True)
        if len(other):
            scored = evaluate_splits({name: (other, *embedder.triplet_embeddings(other))}, head, seed)[name]
            out[name] = {scorer: m["overall"]["accuracy"] for scorer, m in scored.items()}
    return out
