"""py3langid's model applied to a whole batch of texts at once, with numpy instead of a loop per byte.

The detector's cost is its byte automaton: py3langid walks it one byte at a time in Python,
about a quarter of a millisecond per text, and ingest runs it on two texts per sample. Here
every text of a batch advances through the automaton together (one numpy step per byte
position, texts sorted longest first so each step touches only those still running), the
features are counted by one sparse COO -> CSR conversion, and the naive Bayes scores come
from one sparse product. Same model, same features, same normalisation: the languages are py3langid's,
and the probabilities agree with its own to float32 rounding.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np
from scipy import sparse

# byte positions x texts held at once (int32): 16M cells = 64 MB per grid
_MAX_CELLS = 1 << 24


def _encoded(text: str, max_chars: int) -> bytes:
    """The bytes py3langid scores for a text: its start, lower-cased if all upper case, NFC, UTF-8."""
    text = text[:max_chars]
    if text.isupper():
        text = text.lower()
    return unicodedata.normalize("NFC", text).encode("utf8", errors="surrogatepass")


class BatchScorer:
    """Language probabilities of many texts, one row per text, one column per language."""

    def __init__(self, ident):
        self.classes: list[str] = list(dict.fromkeys(ident.nb_classes))
        # int32 throughout: the automaton's ~10M transitions are its memory traffic
        self._nextmove = np.asarray(ident.tk_nextmove).astype(np.int32)
        self._rowbase = np.asarray(ident.tk_row, dtype=np.int32) << 8
        self._output = np.asarray(ident.tk_output).astype(np.int32)
        self._ptc = np.asarray(ident.nb_ptc, dtype=np.float32)
        self._pc = np.asarray(ident.nb_pc, dtype=np.float32)
        # an aliased label (srl -> sr) is the sum of its columns, kept under its first one
        columns = {c: [] for c in self.classes}
        for i, c in enumerate(ident.nb_classes):
            columns[c].append(i)
        self._fold = np.zeros((len(ident.nb_classes), len(self.classes)), dtype=np.float32)
        for j, c in enumerate(self.classes):
            self._fold[columns[c], j] = 1.0

    def probabilities(self, texts: Sequence[str], max_chars: int) -> np.ndarray:
        """(len(texts), n_languages) float32; a text with no feature gets the uniform distribution."""
        encoded = [_encoded(t, max_chars) for t in texts]
        n = len(encoded)
        out = np.empty((n, len(self.classes)), dtype=np.float32)
        lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=n)
        order = np.argsort(-lengths, kind="stable")
        start = 0
        while start < n:
            # longest first, so a chunk's first text is its longest: a few very long texts
            # (a large max_chars) get small chunks, and the grid stays under _MAX_CELLS
            size = max(1, min(n - start, _MAX_CELLS // max(int(lengths[order[start]]), 1)))
            rows = order[start : start + size]
            out[rows] = self._sorted_chunk([encoded[i] for i in rows], lengths[rows])
            start += size
        return out

    def _sorted_chunk(self, encoded: list[bytes], sorted_lengths: np.ndarray) -> np.ndarray:
        """Probabilities of texts given longest first, in that order."""
        n, longest = len(encoded), int(sorted_lengths[0])
        # column-major: step t reads and writes one contiguous run of the texts still going
        grid = np.zeros((max(longest, 1), n), dtype=np.int32)
        for row, b in enumerate(encoded):
            grid[: len(b), row] = np.frombuffer(b, dtype=np.uint8)
        # running[t]: how many texts (a prefix, longest first) still have a byte at position t
        running = np.searchsorted(-sorted_lengths, -np.arange(longest), side="left")
        state = np.zeros(n, dtype=np.int32)
        for t in range(longest):
            m = running[t]
            step = grid[t, :m]
            step += self._rowbase[state[:m]]
            np.take(self._nextmove, step, out=state[:m])
            step[:] = state[:m]  # the grid now holds the states visited
        valid = np.arange(max(longest, 1))[:, None] < sorted_lengths[None, :]
        features = np.where(valid, self._output[grid], -1)
        cols, rows = np.nonzero(features >= 0)
        n_features = self._ptc.shape[0]
        # COO -> CSR sums repeated (text, feature) entries: the feature counts, without a sort
        matrix = sparse.coo_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, features[cols, rows])), shape=(n, n_features)
        ).tocsr()
        matrix.data = np.log1p(matrix.data)
        scores = np.asarray(matrix @ self._ptc, dtype=np.float32) + self._pc
        featureless = np.diff(matrix.indptr) == 0
        scores[featureless] = 0.0
        # temperature sqrt(bytes), as py3langid's normalised probabilities
        scores *= (1.0 / np.sqrt(np.maximum(sorted_lengths, 1))).astype(np.float32)[:, None]
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
        return scores @ self._fold
