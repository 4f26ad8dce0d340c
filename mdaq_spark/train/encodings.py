"""Frozen-encoder embeddings for QSM training, cached on disk by (encoder fingerprint, text).

Training a head on a frozen encoder costs seconds; encoding the texts costs minutes to
hours on a CPU. So every embedding is kept, keyed by the hash of prefix+text under the
encoder's fingerprint, and reused by every later training or evaluation run. A pipeline
run over the same data has already encoded the texts: `seed_from_run` copies its stored
encodings into the cache instead of encoding them again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mdaq_spark.train.triplets import prompt_of

log = logging.getLogger(__name__)


def text_key(prefix: str, text: str) -> str:
    return hashlib.sha256((prefix + text).encode("utf-8")).hexdigest()[:32]


class EncodingCache:
    """A parquet file of (key, embedding) per encoder fingerprint; appends are new files."""

    def __init__(self, root: Path, encoder_fingerprint: str) -> None:
        self.dir = Path(root) / encoder_fingerprint
        self.dir.mkdir(parents=True, exist_ok=True)
        self._mem: dict[str, np.ndarray] = {}
        for part in sorted(self.dir.glob("part-*.parquet")):
            table = pq.read_table(part)
            keys = table.column("key").to_pylist()
            vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
            self._mem.update(zip(keys, vectors, strict=True))

    def __len__(self) -> int:
        return len(self._mem)

    def add(self, keys: list[str], vectors: np.ndarray) -> None:
        new = [(k, v) for k, v in zip(keys, vectors, strict=True) if k not in self._mem]
        if not new:
            return
        n = len(list(self.dir.glob("part-*.parquet")))
        table = pa.table({"key": [k for k, _ in new], "embedding": [v.tolist() for _, v in new]})
        tmp = self.dir / f".part-{n:05d}.parquet.tmp"
        pq.write_table(table, tmp)
        tmp.rename(self.dir / f"part-{n:05d}.parquet")
        self._mem.update(new)

    def lookup(self, keys: list[str]) -> np.ndarray:
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._mem[k] for k in keys])

    def missing(self, keys: list[str]) -> list[str]:
        return [k for k in dict.fromkeys(keys) if k not in self._mem]


def encode_texts(cache: EncodingCache, encoder, texts: list[str], prefix: str, chunk: int = 2048) -> np.ndarray:
    """Embeddings for `texts` (in order), encoding only those the cache lacks."""
    keys = [text_key(prefix, t) for t in texts]
    by_key = dict(zip(keys, texts, strict=True))
    todo = cache.missing(keys)
    if todo:
        if encoder is None:
            raise RuntimeError(f"{len(todo)} texts are not in the encoding cache and no encoder was given")
        started = time.perf_counter()
        for i in range(0, len(todo), chunk):
            part = todo[i : i + chunk]
            cache.add(part, encoder.encode([by_key[k] for k in part], prefix))
            log.info(
                "encoded %d/%d texts (%.0f texts/s)",
                min(i + chunk, len(todo)),
                len(todo),
                min(i + chunk, len(todo)) / (time.perf_counter() - started),
            )
    return cache.lookup(keys)


def seed_from_run(cache: EncodingCache, run_dir: Path, instruction_prefix: str, response_prefix: str) -> int:
    """Copy a pipeline run's stored encodings (same encoder fingerprint only) into the cache."""
    run_dir = Path(run_dir)
    enc = pd.read_parquet(run_dir / "encodings")
    enc = enc[enc["encoder_fingerprint"] == cache.dir.name]
    if enc.empty:
        log.warning("run %s holds no encodings of encoder %s: nothing reused", run_dir, cache.dir.name)
        return 0
    norm = pd.read_parquet(run_dir / "normalized", columns=["sample_id", "instruction", "input", "response"])
    merged = enc.merge(norm, on="sample_id")
    prompts = [prompt_of(i, x) for i, x in zip(merged["instruction"], merged["input"], strict=True)]
    before = len(cache)
    cache.add([text_key(instruction_prefix, p) for p in prompts], np.stack(merged["prompt_embedding"].to_numpy()))
    cache.add(
        [text_key(response_prefix, r) for r in merged["response"]], np.stack(merged["response_embedding"].to_numpy())
    )
    added = len(cache) - before
    log.info("reused %d encodings from %s", added, run_dir)
    return added


def seed_from_features(cache: EncodingCache, features_dir: Path) -> int:
    """Copy the last-layer embeddings of a feature store (bench/midb_features.py) into the cache.

    Both are keyed by text_key(prefix, text) under the same encoder, so a head trained on
    MIDB needs no second encoder pass over texts the feature pass already read.
    """
    from mdaq_spark.train.features import FeatureStore

    store = FeatureStore(Path(features_dir))
    keys = cache.missing(store.keys())
    for i in range(0, len(keys), 20_000):
        cache.add(keys[i : i + 20_000], store.embeddings(keys[i : i + 20_000]))
    log.info("copied %d embeddings from %s", len(keys), features_dir)
    return len(keys)
