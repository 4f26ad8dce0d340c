"""Model inference inside Spark: iterator pandas UDFs over Arrow batches.

The pattern of `pyspark.ml.functions.predict_batch_udf`: the UDF closes over a small,
picklable config; the model itself is built on the executor the first time a Python
worker needs it and cached in that process for every later task (Spark reuses Python
workers), so there is one load per worker process, never one per batch or partition.
Each Arrow batch is encoded in length-sorted mini-batches by the encoder.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mdaq_spark import schema as S
from mdaq_spark.config import ModelConfig

_CACHE: dict[tuple[str, str], object] = {}
_CACHE_LOCK = threading.Lock()

SCORE_TYPE = T.StructType(
    [
        T.StructField(S.QSM_SCORE, T.DoubleType(), True),
        T.StructField(S.EMBEDDING, T.ArrayType(T.FloatType(), False), True),
    ]
)
EMBEDDING_TYPE = T.ArrayType(T.FloatType(), False)


def _cached(kind: str, cfg: ModelConfig, location: str):
    key = (kind, cfg.model_dump_json() + location)
    with _CACHE_LOCK:
        if key not in _CACHE:
            from mdaq_spark.models.encoder import TextEncoder

            encoder = TextEncoder(cfg, location)
            if kind == "qsm":
                from mdaq_spark.models.qsm import QualityScorer

                _CACHE[key] = QualityScorer(cfg, encoder)
            else:
                _CACHE[key] = encoder
        return _CACHE[key]


def _texts(series: pd.Series) -> list[str]:
    return series.fillna("").astype(str).tolist()


def qsm_udf(cfg: ModelConfig, location: str):
    """(prompt, response) -> struct(qsm_score, embedding)."""

    @F.pandas_udf(SCORE_TYPE)
    def qsm_score(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        scorer = _cached("qsm", cfg, location)
        for prompts, responses in batches:
            scores, embeddings = scorer.score_and_embed(_texts(prompts), _texts(responses))
            yield pd.DataFrame({S.QSM_SCORE: scores, S.EMBEDDING: list(embeddings)})

    return qsm_score


def embed_udf(cfg: ModelConfig, location: str, prefix: str):
    """text -> L2-normalised embedding, for a diversity model separate from the QSM."""

    @F.pandas_udf(EMBEDDING_TYPE)
    def embed(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        encoder = _cached("encoder", cfg, location)
        for texts in batches:
            yield pd.Series(list(encoder.encode(_texts(texts), prefix)))

    return embed


def sample_text() -> Column:
    """The whole sample as one text, for a separate diversity encoder."""
    return F.concat_ws("\n", F.col(S.INSTRUCTION), F.col(S.INPUT), F.col(S.RESPONSE))
