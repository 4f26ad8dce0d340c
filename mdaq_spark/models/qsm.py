"""M-DaQ Quality Scoring Model: a bi-encoder score of how well a response fits its instruction.

The instruction (+input) and the response are embedded separately by one multilingual
encoder ("query: " and "passage: " sides of E5). The score is the cosine of the two
embeddings after the QSM head: two learned linear maps, one per side, trained by
`mdaq train-qsm` with a triplet margin loss so that expert-revised responses land nearer
their instruction than raw machine translations do. A layer head adds a fluency term: a
small MLP over the response's mean-pooled hidden states of several encoder layers (lower
layers keep the surface a literal translation gives away; the last layer's pooled vector
has abstracted it). Still a bi-encoder: the response's states come from the same single
pass that gives its embedding. The shipped head gates that term (manifest
`quality_gate`): it adds scale * sigmoid(q) * sigmoid((cos - threshold) / temperature), at
most `scale`, and next to nothing to a response whose cosine says it answers another
question, so fluency cannot carry an off-topic response far; an ungated head adds q as it
is. Without a head the score is the plain cosine of the untrained encoder. Meaning:
higher = the response fits what the instruction asks for better. A cosine lies in [-1, 1];
only the order within a corpus matters (E5 cosines are compressed, unrelated pairs sit near
0.75, so never read the value as an absolute threshold).

The same two frozen embeddings give the sample's diversity embedding (their normalised
sum), so no text is encoded twice, and scoring needs no encoder at all once a corpus is
encoded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit

from mdaq_spark.errors import ModelLoadError

HEAD_WEIGHTS = "qsm_head.safetensors"
HEAD_MANIFEST = "qsm_head.json"


QUALITY_TENSORS = (
    "quality.mean",
    "quality.std",
    "quality.1.weight",
    "quality.1.bias",
    "quality.2.weight",
    "quality.2.bias",
)


@dataclass(frozen=True)
class QsmHead:
    """score = cos(P p + bp, R r + br) [+ q(response layer states), maybe gated]: maps start at the identity.

    `layers` names the encoder layers (0 = token embeddings, the last = the output layer)
    whose mean-pooled response states the quality term q reads; empty for a plain head.
    """

    prompt_weight: np.ndarray  # (out_dim, in_dim)
    prompt_bias: np.ndarray
    response_weight: np.ndarray
    response_bias: np.ndarray
    manifest: dict
    quality: dict[str, np.ndarray] | None = None  # QUALITY_TENSORS, for a layer head
    layers: tuple[int, ...] = ()

    @property
    def in_dim(self) -> int:
        return int(self.prompt_weight.shape[1])

    def quality_score(self, states: np.ndarray) -> np.ndarray:
        """q for each row of (n, len(layers), dim) states: standardise, GELU MLP, one value; row by row."""
        q = self.quality
        x = np.asarray(states, dtype=np.float32).reshape(len(states), -1)
        x = (x - q["quality.mean"]) / q["quality.std"]
        h = row_by_row(x, q["quality.1.weight"], q["quality.1.bias"]).astype(np.float64)
        h = 0.5 * h * (1.0 + np.tanh(0.7978845608028654 * (h + 0.044715 * h**3)))  # GELU, tanh form
        return row_by_row(h.astype(np.float32), q["quality.2.weight"], q["quality.2.bias"])[:, 0].astype(np.float64)

    @classmethod
    def load(cls, directory: str | Path) -> QsmHead:
        from safetensors.numpy import load_file

        directory = Path(directory)
        if not (directory / HEAD_WEIGHTS).is_file():
            raise ModelLoadError(
                f"{directory} is not a QSM head directory (no {HEAD_WEIGHTS}); train one with `mdaq train-qsm`"
            )
        manifest = json.loads((directory / HEAD_MANIFEST).read_text()) if (directory / HEAD_MANIFEST).is_file() else {}
        return cls.from_tensors(load_file(str(directory / HEAD_WEIGHTS)), manifest, str(directory))

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray], manifest: dict, name: str = "QSM head") -> QsmHead:
        """A head from its saved tensors (`prompt.*`, `response.*`, and `quality.*` when the manifest names layers)."""
        layers = tuple(int(x) for x in manifest.get("layers") or ())
        quality = {k: t[k] for k in QUALITY_TENSORS} if layers else None
        if layers and quality["quality.1.weight"].shape[1] != len(layers) * t["prompt.weight"].shape[1]:
            raise ModelLoadError(f"{name}: the quality term's input does not match {len(layers)} layers")
        affine = (t["prompt.weight"], t["prompt.bias"], t["response.weight"], t["response.bias"])
        return cls(*affine, manifest, quality, layers)

    def combine(self, cosine: np.ndarray, quality: np.ndarray) -> np.ndarray:
        """The score from the cosine and q: their sum, or with a gate (manifest `quality_gate`) the
        cosine plus scale * sigmoid(q) * sigmoid((cosine - threshold) / temperature)."""
        gate = self.manifest.get("quality_gate")
        if not gate:
            return cosine + quality
        opened = expit((np.asarray(cosine, dtype=np.float64) - gate["threshold"]) / gate["temperature"])
        return cosine + gate["scale"] * expit(np.asarray(quality, dtype=np.float64)) * opened

    def project(self, prompt_emb: np.ndarray, response_emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = row_by_row(prompt_emb, self.prompt_weight, self.prompt_bias)
        r = row_by_row(response_emb, self.response_weight, self.response_bias)
        return normalise_rows(p), normalise_rows(r)


def row_by_row(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """x @ weight.T + bias as one matrix-vector product per row: each row's floats are its own.

    A matrix product's last bits depend on where a row sits in the batch and on the batch's
    size (BLAS picks kernels by shape), so a score would follow the file layout and the
    cluster's size unless every batch were fixed by a shuffle. Computed row by row, a sample's
    score is the same in any batch, at about 20 microseconds a row per side on one core.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    out = np.empty((len(x), weight.shape[0]), dtype=np.float32)
    for i in range(len(x)):
        np.dot(weight, x[i], out=out[i])
    out += bias.astype(np.float32)
    return out


def precision_class(dtype: str, device: str) -> str | None:
    """'float32' or 'half' as the encoder will run; None when it depends on the executors' device."""
    if dtype in ("float16", "bfloat16"):
        return "half"
    if dtype == "float32" or device == "cpu":
        return "float32"
    return "half" if device == "cuda" else None


def head_mismatches(manifest: dict, model_cfg) -> list[str]:
    """How the encoder settings a head was trained under differ from a run's, one line per setting.

    A head learns the geometry of one encoder at one truncation length, prefix pair and
    precision; under other settings its scores are off in ways nobody is told about. Heads
    trained before the manifest recorded precision were trained in float32 on CPU.
    """
    out = []
    trained_model = manifest.get("base_model")
    if trained_model and trained_model != model_cfg.name:
        out.append(f"encoder: head trained on {trained_model}, run uses {model_cfg.name}")
    trained_len = manifest.get("max_seq_length")
    if trained_len and trained_len != model_cfg.max_seq_length:
        out.append(f"max_seq_length: head trained at {trained_len}, run uses {model_cfg.max_seq_length}")
    prefixes = manifest.get("prefixes") or {}
    for side, configured in (("instruction", model_cfg.instruction_prefix), ("response", model_cfg.response_prefix)):
        if side in prefixes and prefixes[side] != configured:
            out.append(f"{side} prefix: head trained with {prefixes[side]!r}, run uses {configured!r}")
    trained_precision = manifest.get("precision_class", "float32")
    run_precision = precision_class(model_cfg.dtype, model_cfg.device)
    if run_precision is not None and run_precision != trained_precision:
        out.append(f"precision: head trained in {trained_precision}, run encodes in {run_precision}")
    return out


def normalise_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def score_and_embed(
    prompt_emb: np.ndarray,
    response_emb: np.ndarray,
    head: QsmHead | None,
    response_layers: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(qsm scores, L2-normalised sample embeddings) from the frozen encoder's two embeddings.

    A layer head also needs the response's layer states, (n, len(head.layers), dim).
    """
    if head is not None and head.in_dim != prompt_emb.shape[1]:
        raise ModelLoadError(
            f"QSM head expects {head.in_dim}-d embeddings but the encoder gives {prompt_emb.shape[1]}-d: "
            "train the head on this encoder"
        )
    p, r = head.project(prompt_emb, response_emb) if head is not None else (prompt_emb, response_emb)
    scores = np.einsum("ij,ij->i", p, r).astype(np.float64)
    if head is not None and head.layers:
        if response_layers is None:
            raise ModelLoadError(f"QSM head over layers {list(head.layers)} needs the response's layer states")
        scores = head.combine(scores, head.quality_score(response_layers))
    return scores, normalise_rows(prompt_emb + response_emb)
