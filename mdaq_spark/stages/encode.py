"""Encode: the frozen encoder's prompt and response embeddings of every sample, kept in a store.

Encodings do not depend on the QSM head, so a new head re-scores without re-encoding.
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
from mdaq_spark.stages.udfs import encode_map, map_schema

_PROMPT = "_prompt"


@dataclass(frozen=True)
class EncodeStage(CorpusModelStage):
    name = "encode"

    @property
    def produces(self) -> tuple[Table, ...]:
        return (Table(ENCODINGS, (S.SAMPLE_ID, S.PROMPT_EMBEDDING, S.RESPONSE_EMBEDDING), self.fingerprint),)

    def run(self, ctx: StageContext) -> dict:
        texts = ctx.rundir.table(NORMALIZED).select(S.SAMPLE_ID, S.LANG, S.prompt_text().alias(_PROMPT), S.RESPONSE)
        model, location = self.model, self.location

        def compute(rows: DataFrame, counter: Accumulator) -> DataFrame:
            # neighbours of similar length share a padded batch: less padding; sample_id breaks ties
            # so the batches, and with them the floats, are the same on every run
            ordered = rows.sortWithinPartitions(F.length(_PROMPT) + F.length(S.RESPONSE), S.SAMPLE_ID)
            ordered = ordered.select(S.SAMPLE_ID, S.LANG, _PROMPT, S.RESPONSE)
            encode = encode_map(model, location, (_PROMPT, S.RESPONSE), counter)
            schema = map_schema(ordered.schema, (S.PROMPT_EMBEDDING, S.RESPONSE_EMBEDDING))
            return ordered.mapInArrow(encode, schema, profile=ctx.model_profile)

        return compute_missing(
            ctx, ENCODINGS, texts, self.fingerprint, compute, self.tasks, self.tasks.rows_per_commit
        )
