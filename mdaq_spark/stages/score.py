"""Score: the QSM head on the stored encodings, giving each sample its quality score and embedding.

Cheap next to encoding, so the whole corpus commits at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark import Accumulator
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from mdaq_spark import schema as S
from mdaq_spark.config import ModelConfig, SparkConfig
from mdaq_spark.rundir import ENCODINGS, SCORES
from mdaq_spark.stages.base import Stage, StageContext, Table, digest
from mdaq_spark.stages.model_batches import compute_missing
from mdaq_spark.stages.udfs import SCORE_SCHEMA_FIELDS, score_map


@dataclass(frozen=True)
class ScoreStage(Stage):
    name = "score"
    model: ModelConfig
    tasks: SparkConfig
    head_dir: str | None  # None: the untrained encoder's cosine
    encoder_fingerprint: str  # of the encodings store: the encoder and the layers the head reads
    fingerprint: str  # the QSM's fingerprint (head and encoder)
    upstream: str  # the encode stage's key
    # how the head's training encoder settings differ from the run's (models.qsm.head_mismatches)
    head_mismatch: tuple[str, ...] = ()
    layers: tuple[int, ...] = ()  # a layer head's layers: their states are read too

    @property
    def _read(self) -> tuple[str, ...]:
        states = (S.RESPONSE_LAYERS,) if self.layers else ()
        return (S.SAMPLE_ID, S.LANG, S.PROMPT_EMBEDDING, S.RESPONSE_EMBEDDING, *states)

    @property
    def requires(self) -> tuple[Table, ...]:
        return (Table(ENCODINGS, tuple(c for c in self._read if c != S.LANG), self.encoder_fingerprint),)

    @property
    def produces(self) -> tuple[Table, ...]:
        return (Table(SCORES, (S.SAMPLE_ID, S.LANG, S.QSM_SCORE, S.EMBEDDING), self.fingerprint),)

    def key(self) -> str:
        return digest(self.upstream, self.fingerprint)

    def run(self, ctx: StageContext) -> dict:
        encodings = ctx.rundir.model_table(ENCODINGS, self.encoder_fingerprint)
        read = self._read
        encodings = encodings.select(*read)
        model, head_dir = self.model, self.head_dir

        def compute(rows: DataFrame, counter: Accumulator) -> DataFrame:
            # no shuffle and no sort: the head scores each row on its own (qsm.row_by_row), so
            # the batches the stored files happen to give change no float
            rows = rows.select(*read)
            schema = T.StructType([rows.schema[S.SAMPLE_ID], rows.schema[S.LANG], *SCORE_SCHEMA_FIELDS])
            return rows.mapInArrow(score_map(model, head_dir, counter), schema)

        info = compute_missing(
            ctx, SCORES, encodings, self.fingerprint, compute, self.tasks, rows_per_commit=None, shuffle=False
        )
        return {
            **info,
            "qsm_head": self.head_dir or "none (untrained encoder cosine)",
            "qsm_head_layers": list(self.layers),
            "qsm_head_mismatch": list(self.head_mismatch),
        }
