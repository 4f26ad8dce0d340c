"""The corpus as exchanges: one row per judged answer (io/exchanges.py), built where a stage reads them.

Not a table of its own: a sample with no other turns (most corpora, all of an Alpaca one) is its
own single exchange, whose id is its sample_id and whose texts are its columns, so it never
leaves the JVM; only samples with history go through Python to be split. Encodings and scores
are kept per exchange id, so a conversation that grew by a turn is encoded for that turn only.

A stage that reads the exchanges in several Spark jobs (count, stage, commit, join) splits the
conversations once and keeps the rows it needs for the stage (`split_once`): the split is
Python over every turn of every conversation, about 35 s per million exchanges on two
cores, and was otherwise repeated by each job.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mdaq_spark import schema as S
from mdaq_spark.io.exchanges import chat, encoder_context, sample_exchanges

EXCHANGE_COLUMNS = (S.SAMPLE_ID, S.LANG, S.TURN, S.EXCHANGE_ID, S.QUESTION, S.CONTEXT, S.RESPONSE, S.MESSAGES)

_EXCHANGE = T.StructType(
    [
        T.StructField(S.TURN, T.IntegerType(), False),
        T.StructField(S.EXCHANGE_ID, T.StringType(), False),
        T.StructField(S.QUESTION, T.StringType(), False),
        T.StructField(S.CONTEXT, T.StringType(), False),
        T.StructField("_response", T.StringType(), False),
        T.StructField(S.MESSAGES, T.StringType(), False),
    ]
)


def _split(turns: str):
    # no annotations: pyspark reads a plain UDF's hints as a pandas signature and warns on every run
    def split(instruction, input_text, response, history):
        return [
            (e.turn, e.id, e.user, encoder_context(e), e.response, json.dumps(chat(e), ensure_ascii=False))
            for e in sample_exchanges(instruction, input_text, response, history, turns)
        ]

    return F.udf(split, T.ArrayType(_EXCHANGE, False))


def exchange_parts(normalized: DataFrame, turns: str) -> tuple[DataFrame, DataFrame]:
    """(exchanges of samples with no history: one each, id = sample_id; exchanges of the others)."""
    plain = F.col(S.HISTORY).isNull() | (F.col(S.HISTORY) == "[]")
    question = S.prompt_text()
    messages = F.to_json(
        F.array(
            F.struct(F.lit("user").alias("role"), question.alias("content")),
            F.struct(F.lit("assistant").alias("role"), F.col(S.RESPONSE).alias("content")),
        )
    )
    single = normalized.where(plain).select(
        S.SAMPLE_ID,
        S.LANG,
        F.lit(0).alias(S.TURN),
        F.col(S.SAMPLE_ID).alias(S.EXCHANGE_ID),
        question.alias(S.QUESTION),
        F.lit("").alias(S.CONTEXT),
        S.RESPONSE,
        messages.alias(S.MESSAGES),
    )
    split = _split(turns)(F.col(S.INSTRUCTION), F.col(S.INPUT), F.col(S.RESPONSE), F.col(S.HISTORY))
    conversations = (
        normalized.where(~plain)
        .select(S.SAMPLE_ID, S.LANG, F.explode(split).alias("_x"))
        .select(S.SAMPLE_ID, S.LANG, "_x.*")
        .withColumnRenamed("_response", S.RESPONSE)
        .select(*EXCHANGE_COLUMNS)
    )
    return single, conversations


def exchange_rows(normalized: DataFrame, turns: str) -> DataFrame:
    """EXCHANGE_COLUMNS for every exchange of every sample (`turns="first"`: the first exchange only)."""
    single, conversations = exchange_parts(normalized, turns)
    return single.unionByName(conversations)


def exchange_ids(normalized: DataFrame) -> DataFrame:
    """The ids of every exchange of the corpus (all turns): what a compaction keeps of the per-exchange stores."""
    return exchange_rows(normalized, "all").select(S.EXCHANGE_ID)


@contextmanager
def split_once(
    normalized: DataFrame, turns: str, columns: Sequence[str] = EXCHANGE_COLUMNS
) -> Iterator[tuple[DataFrame, DataFrame]]:
    """exchange_parts' two parts with `columns` only, the conversations split once and kept until the block ends.

    Kept in memory and on local disk (MEMORY_AND_DISK): a lost block is recomputed from its
    lineage. A corpus without conversations keeps an empty frame.
    """
    single, conversations = exchange_parts(normalized, turns)
    kept = conversations.select(*columns).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        yield single.select(*columns), kept
    finally:
        kept.unpersist()


def distinct_exchanges(single: DataFrame, conversations: DataFrame) -> DataFrame:
    """One row per exchange id, without SAMPLE_ID and TURN: what a model computes once per exchange.

    Samples with no history are unique by sample_id already (ingest drops exact copies), so
    only the other samples' exchanges are grouped: an exchange two conversations share, or one
    a single-turn sample also is, is computed once (its texts are equal; the smallest lang).
    """
    texts = [c for c in conversations.columns if c not in (S.SAMPLE_ID, S.TURN, S.EXCHANGE_ID)]
    others = conversations.join(single.select(S.EXCHANGE_ID), on=S.EXCHANGE_ID, how="left_anti")
    others = others.groupBy(S.EXCHANGE_ID).agg(*[F.min(c).alias(c) for c in texts])
    return single.select(S.EXCHANGE_ID, *texts).unionByName(others)
