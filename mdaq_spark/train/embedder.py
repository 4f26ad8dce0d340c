"""Frozen-encoder embeddings of triplet texts (cached on disk) and the pairwise evaluation of a head on them.

Shared by head training and full fine-tuning, which evaluate the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mdaq_spark.config import ModelConfig
from mdaq_spark.models import registry
from mdaq_spark.models.qsm import QsmHead, score_and_embed
from mdaq_spark.train import evaluate as ev
from mdaq_spark.train.encodings import EncodingCache, encode_texts, seed_from_run, text_key


class Embedder:
    """Frozen-encoder embeddings of triplet texts through the on-disk cache; loads the model only if needed."""

    def __init__(self, model_cfg: ModelConfig, cache_root: str | None, reuse_run: str | None) -> None:
        self.cfg = model_cfg
        self.location = registry.ensure_prepared(model_cfg.name, model_cfg.cache_dir)
        self.fingerprint = registry.encoder_fingerprint(self.location, model_cfg)
        root = Path(cache_root) if cache_root else registry.cache_dir(model_cfg.cache_dir).parent / "qsm_encodings"
        self.cache = EncodingCache(root, self.fingerprint)
        if reuse_run:
            seed_from_run(self.cache, Path(reuse_run), model_cfg.instruction_prefix, model_cfg.response_prefix)
        self._encoder = None

    @property
    def encoder(self):
        if self._encoder is None:
            from mdaq_spark.models.encoder import TextEncoder

            self._encoder = TextEncoder(self.cfg, self.location)
        return self._encoder

    def triplet_embeddings(self, t: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ip, rp = self.cfg.instruction_prefix, self.cfg.response_prefix
        missing = len(
            self.cache.missing([*_keys(t["prompt"], ip), *_keys(t["chosen"], rp), *_keys(t["rejected"], rp)])
        )
        enc = self.encoder if missing else None
        return (
            encode_texts(self.cache, enc, t["prompt"].tolist(), ip),
            encode_texts(self.cache, enc, t["chosen"].tolist(), rp),
            encode_texts(self.cache, enc, t["rejected"].tolist(), rp),
        )


def _keys(texts: pd.Series, prefix: str) -> list[str]:
    return [text_key(prefix, x) for x in texts]


def _gap(a: np.ndarray, p: np.ndarray, n: np.ndarray, head: QsmHead | None) -> np.ndarray:
    return score_and_embed(a, p, head)[0] - score_and_embed(a, n, head)[0]


def evaluate_splits(splits: dict[str, tuple], head: QsmHead | None, seed: int) -> dict:
    out = {}
    for name, (t, a, p, n) in splits.items():
        if len(t) == 0:
            continue
        gaps = {"qsm": _gap(a, p, n, head)} if head is not None else {}
        gaps["untrained_cosine"] = _gap(a, p, n, None)
        gaps.update(ev.baseline_gaps(t, seed))
        out[name] = ev.evaluate(t, gaps)
    return out
