"""Embed (embedding.source: model): a second encoder's embedding of the whole sample, for diversity."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark import Accumulator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.rundir import EMBEDDINGS, NORMALIZED
from mdaq_spark.stages.base import StageContext, Table
from mdaq_spark.stages.model_batches import CorpusModelStage, compute_missing
from mdaq_spark.stages.udfs import embed_map, map_schema

_TEXT = "_text"


@dataclass(frozen=True)
class EmbedStage(CorpusModelStage):
    name = "embed"

    @property
    def produces(self) -> tuple[Table, ...]:
        return (Table(EMBEDDINGS, (S.SAMPLE_ID, S.LANG, S.EMBEDDING), self.fingerprint),)

    def run(self, ctx: StageContext) -> dict:
        texts = ctx.rundir.table(NORMALIZED).select(S.SAMPLE_ID, S.LANG, S.sample_text().alias(_TEXT))
        model, location = self.model, self.location

        def compute(rows: DataFrame, counter: Accumulator) -> DataFrame:
            ordered = rows.sortWithinPartitions(F.length(_TEXT), S.SAMPLE_ID).select(S.SAMPLE_ID, S.LANG, _TEXT)
            embed = embed_map(model, location, _TEXT, model.response_prefix, counter)
            schema = map_schema(ordered.schema, (S.EMBEDDING,))
            return ordered.mapInArrow(embed, schema, profile=ctx.model_profile)

        return compute_missing(
            ctx, EMBEDDINGS, texts, self.fingerprint, compute, self.tasks, self.tasks.rows_per_commit
        )
