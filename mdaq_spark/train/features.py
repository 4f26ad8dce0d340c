"""Pooled hidden states of every encoder layer for QSM training, cached on disk by text key.

A head over several layers needs the states of one encoder pass kept, not just the final
embedding. They are written in chunks (`part-NNNNN.npz`): keys, the last layer's embedding
(pooled and normalised, exactly what the pipeline stores) in float32, and every layer's
mean-pooled state in float16 (half the disk; heads train on float32 copies). A chunk is
written under a temporary name and renamed, so a killed encode loses at most one chunk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mdaq_spark.models.encoder import embedding_of_states


class FeatureStore:
    def __init__(self, root: Path) -> None:
        self.dir = Path(root)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._index: dict[str, tuple[int, int]] = {}
        self._parts: list[Path] = sorted(self.dir.glob("part-*.npz"))
        for p, part in enumerate(self._parts):
            with np.load(part) as z:
                for j, k in enumerate(z["keys"].tolist()):
                    self._index.setdefault(k, (p, j))
        self._loaded: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def keys(self) -> list[str]:
        return list(self._index)

    def add(self, keys: list[str], layers: np.ndarray) -> None:
        """layers: (n, n_layers + 1, dim) mean-pooled states, the last one the encoder's output layer."""
        embedding = embedding_of_states(layers)
        n = len(self._parts)
        final = self.dir / f"part-{n:05d}.npz"
        tmp = self.dir / f"tmp-{n:05d}.npz"
        np.savez(tmp, keys=np.array(keys), embedding=embedding, layers=layers.astype(np.float16))
        tmp.rename(final)
        self._parts.append(final)
        for j, k in enumerate(keys):
            self._index.setdefault(k, (n, j))

    def fill(self, encoder, wanted: dict[str, tuple[str, str]], chunk: int = 512, on_chunk=None) -> int:
        """Encode the (prefix, text) of every key the store lacks, `chunk` texts per written part.

        A chunk mixes prefixes (instructions and responses); each prefix's texts go through the
        encoder together. Returns how many were encoded; `on_chunk(done, todo)` follows progress.
        """
        todo = [k for k in wanted if k not in self]
        for start in range(0, len(todo), chunk):
            keys = todo[start : start + chunk]
            by_prefix: dict[str, list[int]] = {}
            for j, k in enumerate(keys):
                by_prefix.setdefault(wanted[k][0], []).append(j)
            parts = {p: encoder.encode_layers([wanted[keys[j]][1] for j in idx], p) for p, idx in by_prefix.items()}
            first = next(iter(parts.values()))
            states = np.zeros((len(keys), *first.shape[1:]), dtype=np.float32)
            for prefix, idx in by_prefix.items():
                states[idx] = parts[prefix]
            self.add(keys, states)
            if on_chunk is not None:
                on_chunk(start + len(keys), len(todo))
        return len(todo)

    def _part(self, p: int) -> tuple[np.ndarray, np.ndarray]:
        if p not in self._loaded:
            with np.load(self._parts[p]) as z:
                self._loaded[p] = (z["embedding"], z["layers"])
        return self._loaded[p]

    def embeddings(self, keys: list[str]) -> np.ndarray:
        return np.stack([self._part(self._index[k][0])[0][self._index[k][1]] for k in keys])

    def layers(self, keys: list[str], which: list[int] | None = None) -> np.ndarray:
        """(n, len(which), dim) float32 states of the chosen layers (all by default)."""
        out = []
        for k in keys:
            p, j = self._index[k]
            states = self._part(p)[1][j]
            out.append(states if which is None else states[which])
        return np.stack(out).astype(np.float32)
