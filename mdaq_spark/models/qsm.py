"""M-DaQ Quality Scoring Model: a bi-encoder score of how well a response fits its instruction.

The instruction (+input) and the response are embedded separately by one multilingual
encoder ("query: " and "passage: " sides of E5). The score is the cosine of the two
embeddings, optionally after a learned linear projection (the QSM head trained by
`mdaq train-qsm` with a triplet margin loss on expert-revised vs machine-translated
responses). Meaning: higher = the response lies closer to what the instruction asks for;
the range is [-1, 1], only the order within a corpus matters (E5 cosines are compressed,
unrelated pairs sit near 0.75, so never read the value as an absolute threshold).

The same two embeddings give the sample's diversity embedding (their normalised sum), so
no text is encoded twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mdaq_spark.config import ModelConfig
from mdaq_spark.errors import ModelLoadError
from mdaq_spark.models.encoder import TextEncoder

HEAD_WEIGHTS = "qsm_head.safetensors"
HEAD_MANIFEST = "qsm_head.json"


@dataclass(frozen=True)
class ProjectionHead:
    """y = W x (+ b), then L2-normalised; trained so revised responses land nearer their prompt."""

    weight: np.ndarray  # (out_dim, in_dim)
    bias: np.ndarray | None
    manifest: dict

    @classmethod
    def load(cls, directory: str | Path) -> ProjectionHead:
        from safetensors.numpy import load_file

        directory = Path(directory)
        if not (directory / HEAD_WEIGHTS).is_file():
            raise ModelLoadError(f"{directory} is not a QSM head directory (no {HEAD_WEIGHTS})")
        tensors = load_file(str(directory / HEAD_WEIGHTS))
        manifest = json.loads((directory / HEAD_MANIFEST).read_text()) if (directory / HEAD_MANIFEST).is_file() else {}
        return cls(tensors["weight"].astype(np.float32), tensors.get("bias"), manifest)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.weight.T
        if self.bias is not None:
            y = y + self.bias
        return normalise_rows(y)


def normalise_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


class QualityScorer:
    def __init__(self, cfg: ModelConfig, encoder: TextEncoder | None = None) -> None:
        self.cfg = cfg
        self.encoder = encoder or TextEncoder(cfg)
        self.head = ProjectionHead.load(cfg.qsm_head) if cfg.qsm_head else None
        if self.head is not None and self.head.weight.shape[1] != self.encoder.dim:
            raise ModelLoadError(
                f"QSM head {cfg.qsm_head} expects {self.head.weight.shape[1]}-d inputs but {cfg.name} gives "
                f"{self.encoder.dim}-d embeddings: train the head on this encoder"
            )

    def embed_pairs(self, prompts: list[str], responses: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return (
            self.encoder.encode(prompts, self.cfg.instruction_prefix),
            self.encoder.encode(responses, self.cfg.response_prefix),
        )

    def score_embeddings(self, prompt_emb: np.ndarray, response_emb: np.ndarray) -> np.ndarray:
        if self.head is not None:
            prompt_emb, response_emb = self.head(prompt_emb), self.head(response_emb)
        return np.einsum("ij,ij->i", prompt_emb, response_emb).astype(np.float64)

    def score_and_embed(self, prompts: list[str], responses: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(qsm scores, L2-normalised sample embeddings) from one encoder pass per text."""
        prompt_emb, response_emb = self.embed_pairs(prompts, responses)
        return self.score_embeddings(prompt_emb, response_emb), normalise_rows(prompt_emb + response_emb)
