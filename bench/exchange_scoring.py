"""Scores of (instruction, response) exchanges by the QSM, the untrained cosine, length and a coin.

Texts are encoded once into a feature store (every layer's pooled state, keyed by prefix and
text, train/features.py), so a rerun or a second benchmark over the same texts runs no
encoder. The encoder's tokenizer also cuts each exchange's context to the encoder's length.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from conversations import ExchangeText, exchange_texts

from mdaq_spark.config import ModelConfig
from mdaq_spark.models import registry
from mdaq_spark.models.qsm import QsmHead, score_and_embed
from mdaq_spark.train import crossval as cv
from mdaq_spark.train.encodings import text_key
from mdaq_spark.train.features import FeatureStore

log = logging.getLogger(__name__)
CFG = ModelConfig(device="cpu", qsm_head="none")
IP, RP = CFG.instruction_prefix, CFG.response_prefix
SHIPPED_HEAD = registry.PACKAGED_HEADS / CFG.name
# where the conversation benchmarks keep their texts' encodings (--features)
FEATURES_DIR = Path.home() / ".cache/mdaq_spark/bench_features/conversations"


def parse_heads(items: list[str]) -> dict[str, Path]:
    """The shipped head as `qsm`, plus each `--head NAME=DIR`."""
    heads = {"qsm": SHIPPED_HEAD}
    for item in items:
        name, _, path = item.partition("=")
        heads[name] = Path(path)
    return heads


class ExchangeScorer:
    def __init__(self, store_dir: Path, heads: dict[str, Path]) -> None:
        from mdaq_spark.models.encoder import TextEncoder

        self.store = FeatureStore(Path(store_dir))
        self.encoder = TextEncoder(CFG)
        self.heads = {name: QsmHead.load(path) for name, path in heads.items()}
        self._tok = self.encoder.model.tokenizer
        self.max_tokens = CFG.max_seq_length
        self.encoded = 0
        self.encode_seconds = 0.0

    def count(self, text: str) -> int:
        """Tokens the encoder reads for `text` as a prompt: prefix and special tokens included."""
        return len(self._tok(IP + text)["input_ids"])

    def spans(self, text: str) -> list[tuple[int, int]]:
        return list(self._tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"])

    def texts(self, turns: list[dict]) -> list[ExchangeText]:
        """The exchanges of a conversation as the pipeline's bi-encoder reads them."""
        return exchange_texts(turns, self.count, self.spans, self.max_tokens)

    def encode(self, instructions: list[str], responses: list[str]) -> None:
        wanted = {text_key(IP, x): (IP, x) for x in instructions}
        wanted.update({text_key(RP, x): (RP, x) for x in responses})
        started = time.perf_counter()
        n = self.store.fill(
            self.encoder,
            wanted,
            chunk=256,
            on_chunk=lambda done, todo: log.info(
                "encoded %d/%d texts (%.0f s)", done, todo, time.perf_counter() - started
            ),
        )
        self.encoded += n
        self.encode_seconds += time.perf_counter() - started

    def prompt_embeddings(self, instructions: list[str]) -> np.ndarray:
        """The stored embeddings of `instructions` as prompts (encode them first)."""
        return self.store.embeddings([text_key(IP, x) for x in instructions])

    def scores(self, instructions: list[str], responses: list[str], seed: int) -> dict[str, np.ndarray]:
        """name -> one score per exchange: each head, `untrained_cosine`, `length`, `coin`."""
        pk = [text_key(IP, x) for x in instructions]
        rk = [text_key(RP, x) for x in responses]
        p, r = self.store.embeddings(pk), self.store.embeddings(rk)
        out = {}
        for name, head in self.heads.items():
            states = self.store.layers(rk, list(head.layers)) if head.layers else None
            out[name] = score_and_embed(p, r, head, states)[0]
        out["untrained_cosine"] = score_and_embed(p, r, None)[0]
        out["length"] = np.array([len(x) for x in responses], dtype=float)
        # a coin per exchange, seeded by its texts: the two sides of a pair draw different numbers
        out["coin"] = np.array(
            [cv._rank(f"{a}\x1f{b}", seed) / 2.0**64 for a, b in zip(instructions, responses, strict=True)]
        )
        return out


def pairwise(gap: np.ndarray, clusters: np.ndarray, seed: int = 0) -> dict:
    """Accuracy (ties count half) with a 95% bootstrap interval over clusters."""
    return cv.summarise(np.asarray(gap, dtype=float), np.asarray(clusters), seed=seed)
