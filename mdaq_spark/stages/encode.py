"""Encode: the frozen encoder's prompt and response embeddings of every exchange, kept in a store.

An exchange's prompt is its question after the earlier turns that fit (io/exchanges.py); the
store is keyed by exchange id, so a conversation that grew by a turn encodes that turn only,
and a single-turn sample is encoded from the same text, in the same batches, as it always was.

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
from mdaq_spark.stages.base import StageContext, Table, digest
from mdaq_spark.stages.exchanges import distinct_exchanges, split_once
from mdaq_spark.stages.model_batches import CorpusModelStage, compute_missing
from mdaq_spark.stages.udfs import encode_map, encode_schema


@dataclass(frozen=True)
class EncodeStage(CorpusModelStage):
    name = "encode"
    layers: tuple[int, ...] = ()  # the response layer states the QSM head reads; none for a plain head
    turns: str = "all"  # scoring.turns: every exchange, or the first only

    @property
    def produces(self) -> tuple[Table, ...]:
        columns = (S.EXCHANGE_ID, S.PROMPT_EMBEDDING, S.RESPONSE_EMBEDDING, S.RESPONSE_LAYERS)
        return (Table(ENCODINGS, columns, self.fingerprint),)

    def key(self) -> str:
        return digest(super().key(), self.turns)

    def run(self, ctx: StageContext) -> dict:
        columns = (S.SAMPLE_ID, S.LANG, S.TURN, S.EXCHANGE_ID, S.QUESTION, S.CONTEXT, S.RESPONSE)
        with split_once(ctx.rundir.table(NORMALIZED), self.turns, columns) as parts:
            return self._encode(ctx, distinct_exchanges(*parts))

    def _encode(self, ctx: StageContext, exchanges: DataFrame) -> dict:
        texts = exchanges.select(S.EXCHANGE_ID, S.LANG, S.QUESTION, S.CONTEXT, S.RESPONSE)
        model, location, layers = self.model, self.location, self.layers

        def compute(rows: DataFrame, counter: Accumulator) -> DataFrame:
            # neighbours of similar length share a padded batch: less padding; the id breaks ties
            # so the batches, and with them the floats, are the same on every run
            length = F.length(S.QUESTION) + F.length(S.CONTEXT) + F.length(S.RESPONSE)
            ordered = rows.sortWithinPartitions(length, S.EXCHANGE_ID)
            ordered = ordered.select(S.EXCHANGE_ID, S.LANG, S.QUESTION, S.RESPONSE, S.CONTEXT)
            encode = encode_map(model, location, (S.QUESTION, S.RESPONSE), counter, layers, S.EXCHANGE_ID, S.CONTEXT)
            schema = encode_schema(ordered.schema, S.EXCHANGE_ID)
            return ordered.mapInArrow(encode, schema, profile=ctx.model_profile)

        return compute_missing(
            ctx, ENCODINGS, texts, self.fingerprint, compute, self.tasks, self.tasks.rows_per_commit, key=S.EXCHANGE_ID
        )
