"""Score: every configured scorer on every exchange, then each sample's score from its exchanges'.

Each scorer's exchange scores are a store of their own rows, keyed by (exchange_id, the
scorer's fingerprint): a scorer added to the config computes its scores only, a reweighted
one computes nothing, and a grown conversation is scored for its new turn only. The stage
knows scorers only through their interface (mdaq_spark.scoring.base): a new kind is a module
and a config entry. Model scorers that read texts run under the model resource profile, as
the encoders do. The samples' scores (with `turn_scores`, `weakest_turn`, `scorer_scores`)
and their diversity embedding (the first exchange's two encodings, summed) go to the scores
store, keyed by sample and by the combination's fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark import Accumulator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mdaq_spark import schema as S
from mdaq_spark.config import ScoringConfig, SparkConfig
from mdaq_spark.rundir import ENCODINGS, EXCHANGE_SCORES, NORMALIZED, SCORES
from mdaq_spark.scoring.aggregate import SINGLE, sample_scores, score_column
from mdaq_spark.scoring.base import ENCODINGS as READS_ENCODINGS
from mdaq_spark.scoring.base import Scorer, score_map
from mdaq_spark.stages.base import Stage, StageContext, Table, digest
from mdaq_spark.stages.exchanges import distinct_exchanges, split_once
from mdaq_spark.stages.model_batches import compute_missing
from mdaq_spark.stages.udfs import EMBEDDING_TYPE, sum_embedding_map

SCORE_COLUMNS = (S.SAMPLE_ID, S.LANG, S.QSM_SCORE, S.EMBEDDING, S.TURN_SCORES, S.WEAKEST_TURN, S.SCORER_SCORES)


@dataclass(frozen=True)
class ScoreStage(Stage):
    name = "score"
    scoring: ScoringConfig
    tasks: SparkConfig
    scorers: tuple[Scorer, ...]
    scorer_fingerprints: tuple[str, ...]  # each scorer's, in order (Scorer.fingerprint of the encodings)
    encoder_fingerprint: str  # of the encodings store: the encoder and the layers the scorers read
    fingerprint: str  # the sample scores': scoring.base.combination_fingerprint
    upstream: str  # the encode stage's key

    @property
    def requires(self) -> tuple[Table, ...]:
        return (
            Table(NORMALIZED, (S.SAMPLE_ID, S.LANG, S.INSTRUCTION, S.INPUT, S.RESPONSE, S.HISTORY)),
            Table(ENCODINGS, (S.EXCHANGE_ID, S.PROMPT_EMBEDDING, S.RESPONSE_EMBEDDING), self.encoder_fingerprint),
        )

    @property
    def produces(self) -> tuple[Table, ...]:
        return (Table(SCORES, SCORE_COLUMNS, self.fingerprint),)

    def key(self) -> str:
        return digest(self.upstream, self.fingerprint)

    def _score_exchanges(self, ctx: StageContext, scorer: Scorer, fingerprint: str, exchanges, encodings) -> dict:
        key = S.EXCHANGE_ID
        if scorer.reads == READS_ENCODINGS:
            wanted = encodings.select(key, S.LANG, *scorer.columns)
            rows_per_commit, shuffle, profile = None, False, None
        else:
            wanted = exchanges.select(key, S.LANG, *scorer.columns)
            rows_per_commit, shuffle = self.tasks.rows_per_commit, True
            profile = ctx.model_profile if scorer.on_device else None
        schema = T.StructType(
            [
                T.StructField(key, T.StringType()),
                T.StructField(S.LANG, T.StringType()),
                T.StructField(S.SCORE, T.DoubleType()),
            ]
        )

        def compute(rows: DataFrame, counter: Accumulator) -> DataFrame:
            rows = rows.select(key, S.LANG, *scorer.columns)
            if shuffle:  # a text model pads a batch to its longest text: neighbours in length share one
                rows = rows.sortWithinPartitions(sum(F.length(c) for c in scorer.columns), key)
            return rows.mapInArrow(score_map(scorer, key, counter), schema, profile=profile)

        return compute_missing(
            ctx, EXCHANGE_SCORES, wanted, fingerprint, compute, self.tasks, rows_per_commit, shuffle=shuffle, key=key
        )

    def run(self, ctx: StageContext) -> dict:
        # the conversations are split once for every job below; texts only where a scorer reads them
        texts = {c for s in self.scorers if s.reads != READS_ENCODINGS for c in s.columns}
        columns = (S.SAMPLE_ID, S.LANG, S.TURN, S.EXCHANGE_ID, *sorted(texts))
        with split_once(ctx.rundir.table(NORMALIZED), self.scoring.turns, columns) as (single, conversations):
            return self._score(ctx, single, conversations)

    def _score(self, ctx: StageContext, single: DataFrame, conversations: DataFrame) -> dict:
        rundir = ctx.rundir
        # a sample with no history is its own single exchange (id = sample_id); only the others are split
        plain = single.select(S.SAMPLE_ID, S.LANG, F.col(S.SAMPLE_ID).alias(S.EXCHANGE_ID))
        split = conversations.select(S.SAMPLE_ID, S.LANG, S.TURN, S.EXCHANGE_ID)
        ids = plain.select(S.EXCHANGE_ID).unionByName(split.select(S.EXCHANGE_ID))
        exchanges = distinct_exchanges(single, conversations)  # read only by scorers of texts
        encodings = rundir.model_table(ENCODINGS, self.encoder_fingerprint, keys=ids)
        per_scorer, scored = {}, None
        for i, (scorer, fingerprint) in enumerate(zip(self.scorers, self.scorer_fingerprints, strict=True)):
            counts = self._score_exchanges(ctx, scorer, fingerprint, exchanges, encodings)
            per_scorer[scorer.name] = {
                "kind": scorer.kind,
                "weight": scorer.weight,
                "fingerprint": fingerprint,
                **{k: counts[k] for k in ("computed", "reused", "rows_through_model_udf")},
                **scorer.info(),
            }
            # every stored row of the fingerprint: the joins below keep the corpus's own
            stored = rundir.store(EXCHANGE_SCORES).rows(fingerprint)
            stored = stored.select(S.EXCHANGE_ID, F.col(S.SCORE).alias(score_column(i)))
            scored = stored if scored is None else scored.join(stored, on=S.EXCHANGE_ID)
        turns = plain.select(S.SAMPLE_ID, S.LANG, F.lit(0).alias(S.TURN), S.EXCHANGE_ID, F.lit(True).alias(SINGLE))
        turns = turns.unionByName(split.withColumn(SINGLE, F.lit(False)))
        turns = turns.join(scored, on=S.EXCHANGE_ID)
        names = [s.name for s in self.scorers]
        samples = sample_scores(turns, names, [s.weight for s in self.scorers], self.scoring)
        # the diversity embedding: the first exchange's two encodings, summed; the encodings join once
        first = plain.select(S.SAMPLE_ID, S.EXCHANGE_ID).unionByName(
            split.where(F.col(S.TURN) == 0).select(S.SAMPLE_ID, S.EXCHANGE_ID)
        )
        vectors = rundir.store(ENCODINGS).rows(self.encoder_fingerprint)
        vectors = vectors.select(S.EXCHANGE_ID, S.PROMPT_EMBEDDING, S.RESPONSE_EMBEDDING)
        rows = samples.join(first, on=S.SAMPLE_ID).join(vectors, on=S.EXCHANGE_ID).drop(S.EXCHANGE_ID)
        passed = [c for c in SCORE_COLUMNS if c != S.EMBEDDING]
        schema = T.StructType([*(rows.schema[c] for c in passed), T.StructField(S.EMBEDDING, EMBEDDING_TYPE)])
        wanted = rows.mapInArrow(sum_embedding_map(passed), schema).select(*SCORE_COLUMNS)
        info = compute_missing(
            ctx,
            SCORES,
            wanted,
            self.fingerprint,
            lambda rows, _: rows,
            self.tasks,
            rows_per_commit=None,
            shuffle=False,
        )
        # the report's QSM lines (head, layers, mismatch) come from the first scorer that has them
        head = next((x for x in per_scorer.values() if "qsm_head" in x), {})
        extra = {k: head[k] for k in ("qsm_head", "qsm_head_layers", "qsm_head_mismatch") if k in head}
        info["rows_through_model_udf"] = sum(x["rows_through_model_udf"] for x in per_scorer.values())
        return {**info, **extra, "scoring": self.scoring.model_dump(mode="json"), "scorers": per_scorer}
