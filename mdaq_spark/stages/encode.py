"""Encode: the frozen encoder's prompt and response embeddings of every sample, kept in a store.

Encodings do not depend on the QSM head's weights, so a new head re-scores without
re-encoding. A layer head also reads the response's pooled states of some layers: they are
kept beside the embeddings, from the same forward pass, and the layers are part of the
store's fingerprint (a head over other layers encodes again).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark import Accumulator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.rundir import ENCODINGS, NORMALIZED
from mdaq_spark.stages.base import StageContext, Table
from mdaq_spark.stages.model_batches import CorpusModelStage, compute_missing
from mdaq_spark.stages.udfs import encode_map, encode_schema

_PROMPT = "_prompt"


@dataclass(frozen=True)
class EncodeStage(CorpusModelStage):
    name = "encode"
    layers: tuple[int, ...] = ()  # the response layer states the QSM head reads; none for a plain head

    @property
    def produces(self) -> tuple[Table, ...]:
        columns = (S.SAMPLE_ID, S.PROMPT_EMBEDDING, S.RESPONSE_EMBEDDING, S.RESPONSE_LAYERS)
        return (Table(ENCODINGS, columns, self.fingerprint),)

    def run(self, ctx: StageContext) -> dict:
        texts = ctx.rundir.table(NORMALIZED).select(S.SAMPLE_ID, S.LANG, S.prompt_text().alias(_PROMPT), S.RESPONSE)
        model, location, layers = self.model, self.location, self.layers

        def compute(rows: DataFrame, counter: Accumulator) -> DataFrame:
            # neighbours of similar length share a padded batch: less padding; sample_id breaks ties
            # so the batches, and with them the floats, are the same on every run
            ordered = rows.sortWithinPartitions(F.length(_PROMPT) + F.length(S.RESPONSE), S.SAMPLE_ID)
            ordered = ordered.select(S.SAMPLE_ID, S.LANG, _PROMPT, S.RESPONSE)
            encode = encode_map(model, location, (_PROMPT, S.RESPONSE), counter, layers)
            return ordered.mapInArrow(encode, encode_schema(ordered.schema), profile=ctx.model_profile)

        return compute_missing(
            ctx, ENCODINGS, texts, self.fingerprint, compute, self.tasks, self.tasks.rows_per_commit
        )
