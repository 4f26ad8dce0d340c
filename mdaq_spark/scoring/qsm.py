"""The QSM (the frozen encoder's embeddings through the shipped head) and the untrained cosine, as scorers.

Both read the encode stage's stored embeddings of each exchange, never the texts: a new head
re-scores a corpus without encoding it again. Scores are computed row by row (models.qsm), so
an exchange's score does not depend on the batch it sits in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from mdaq_spark import schema as S
from mdaq_spark.errors import ConfigError
from mdaq_spark.models import registry
from mdaq_spark.scoring.base import ENCODINGS, Scorer, register
from mdaq_spark.stages import arrow_vectors
from mdaq_spark.stages.base import digest

log = logging.getLogger(__name__)


@register("qsm")
@dataclass(frozen=True)
class QsmScorer(Scorer):
    """cos(head(prompt), head(response)) [+ the layer head's gated fluency term]; the cosine when no head."""

    reads = ENCODINGS
    head_dir: str | None = None
    head_manifest_fingerprint: str = ""
    layers: tuple[int, ...] = ()
    mismatches: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, entry, job, name: str) -> QsmScorer:
        from mdaq_spark.models.qsm import QsmHead, head_mismatches

        head_dir = registry.resolve_head(entry.model or job.model.qsm_head, job.model.name)
        if head_dir is None:
            return cls(name=name, weight=entry.weight)
        head = QsmHead.load(head_dir)
        mismatches = head_mismatches(head.manifest, job.model)
        if mismatches and job.model.qsm_head_strict:
            raise ConfigError(f"QSM head {head_dir} does not match the run's encoder: " + "; ".join(mismatches))
        for line in mismatches:
            log.warning("QSM head %s was trained under other encoder settings: %s", head_dir, line)
        return cls(
            name=name,
            weight=entry.weight,
            head_dir=head_dir,
            head_manifest_fingerprint=str(head.manifest.get("fingerprint", "")),
            layers=head.layers,
            mismatches=tuple(mismatches),
        )

    @property
    def columns(self) -> tuple[str, ...]:
        states = (S.RESPONSE_LAYERS,) if self.layers else ()
        return (S.PROMPT_EMBEDDING, S.RESPONSE_EMBEDDING, *states)

    @property
    def encoder_layers(self) -> tuple[int, ...]:
        return self.layers

    def fingerprint(self, encodings: str) -> str:
        if self.head_dir is None:
            return encodings  # the untrained cosine is the encodings' own
        return registry.fingerprint(self.head_dir, encodings, self.head_manifest_fingerprint)

    def load(self) -> Any:
        from mdaq_spark.models.qsm import QsmHead

        return QsmHead.load(self.head_dir) if self.head_dir else None

    def score(self, model: Any, batch: pa.RecordBatch) -> np.ndarray:
        from mdaq_spark.models.qsm import score_and_embed

        p = arrow_vectors.matrix(batch.column(S.PROMPT_EMBEDDING))
        r = arrow_vectors.matrix(batch.column(S.RESPONSE_EMBEDDING))
        states = None
        if model is not None and model.layers:
            states = arrow_vectors.unblob(batch.column(S.RESPONSE_LAYERS), (len(model.layers), r.shape[1]))
        return score_and_embed(p, r, model, states)[0]

    def info(self) -> dict:
        return {
            "qsm_head": self.head_dir or "none (untrained encoder cosine)",
            "qsm_head_layers": list(self.layers),
            "qsm_head_mismatch": list(self.mismatches),
        }


@register("cosine")
@dataclass(frozen=True)
class CosineScorer(QsmScorer):
    """The untrained encoder's cosine of question and answer: the baseline every head must beat."""

    @classmethod
    def from_config(cls, entry, job, name: str) -> CosineScorer:
        return cls(name=name, weight=entry.weight)

    def fingerprint(self, encodings: str) -> str:
        return digest("cosine", encodings)

    def info(self) -> dict:
        return {}
