"""M-DaQ Quality Scoring Model: a bi-encoder score of how well a response fits its instruction.

The instruction (+input) and the response are embedded separately by one multilingual
encoder ("query: " and "passage: " sides of E5). The score is the cosine of the two
embeddings after the QSM head: two learned linear maps, one per side, trained by
`mdaq train-qsm` with a triplet margin loss so that expert-revised responses land nearer
their instruction than raw machine translations do. Without a head the score is the plain
cosine of the untrained encoder. Meaning: higher = the response fits what the instruction
asks for better; range [-1, 1]; only the order within a corpus matters (E5 cosines are
compressed, unrelated pairs sit near 0.75, so never read the value as an absolute
threshold).

The same two frozen embeddings give the sample's diversity embedding (their normalised
sum), so no text is encoded twice, and scoring needs no encoder at all once a corpus is
encoded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mdaq_spark.errors import ModelLoadError

HEAD_WEIGHTS = "qsm_head.safetensors"
HEAD_MANIFEST = "qsm_head.json"


@dataclass(frozen=True)
class QsmHead:
    """score = cos(P p + bp, R r + br): one affine map per side, identity at initialisation."""

    prompt_weight: np.ndarray  # (out_dim, in_dim)
    prompt_bias: np.ndarray
    response_weight: np.ndarray
    response_bias: np.ndarray
    manifest: dict

    @property
    def in_dim(self) -> int:
        return int(self.prompt_weight.shape[1])

    @classmethod
    def load(cls, directory: str | Path) -> QsmHead:
        from safetensors.numpy import load_file

        directory = Path(directory)
        if not (directory / HEAD_WEIGHTS).is_file():
            raise ModelLoadError(
                f"{directory} is not a QSM head directory (no {HEAD_WEIGHTS}); train one with `mdaq train-qsm`"
            )
        t = load_file(str(directory / HEAD_WEIGHTS))
        manifest = json.loads((directory / HEAD_MANIFEST).read_text()) if (directory / HEAD_MANIFEST).is_file() else {}
        return cls(t["prompt.weight"], t["prompt.bias"], t["response.weight"], t["response.bias"], manifest)

    def project(self, prompt_emb: np.ndarray, response_emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = prompt_emb @ self.prompt_weight.T + self.prompt_bias
        r = response_emb @ self.response_weight.T + self.response_bias
        return normalise_rows(p), normalise_rows(r)


def normalise_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def score_and_embed(
    prompt_emb: np.ndarray, response_emb: np.ndarray, head: QsmHead | None
) -> tuple[np.ndarray, np.ndarray]:
    """(qsm scores, L2-normalised sample embeddings) from the frozen encoder's two embeddings."""
    if head is not None and head.in_dim != prompt_emb.shape[1]:
        raise ModelLoadError(
            f"QSM head expects {head.in_dim}-d embeddings but the encoder gives {prompt_emb.shape[1]}-d: "
            "train the head on this encoder"
        )
    p, r = head.project(prompt_emb, response_emb) if head is not None else (prompt_emb, response_emb)
    scores = np.einsum("ij,ij->i", p, r).astype(np.float64)
    return scores, normalise_rows(prompt_emb + response_emb)
