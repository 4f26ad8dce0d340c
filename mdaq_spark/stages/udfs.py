"""Model inference inside Spark: iterator pandas UDFs and mapInPandas functions over Arrow batches.

The pattern of `pyspark.ml.functions.predict_batch_udf`: the UDF closes over a small,
picklable config; the model itself is built on the executor the first time a Python
worker needs it and cached in that process for every later task (Spark reuses Python
workers), so there is one load per worker process, never one per batch or partition.
Each Arrow batch is encoded in length-sorted mini-batches by the encoder.

The corpus encoders (encode, embed) are `mapInPandas` functions rather than column UDFs:
only a map can carry a stage-level ResourceProfile (the GPU), and it sees exactly the
Arrow batches a column UDF would, so the embeddings are the same bit for bit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pandas as pd
from pyspark import Accumulator
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mdaq_spark import schema as S
from mdaq_spark.config import ModelConfig

_CACHE: dict[tuple[str, str], object] = {}
_CACHE_LOCK = threading.Lock()

EMBEDDING_TYPE = T.ArrayType(T.FloatType(), False)
SCORE_TYPE = T.StructType(
    [T.StructField(S.QSM_SCORE, T.DoubleType(), True), T.StructField(S.EMBEDDING, EMBEDDING_TYPE, True)]
)


def _cached(kind: str, cfg: ModelConfig, location: str):
    key = (kind, cfg.model_dump_json() + location)
    with _CACHE_LOCK:
        if key not in _CACHE:
            if kind == "head":
                from mdaq_spark.models.qsm import QsmHead

                _CACHE[key] = QsmHead.load(location) if location else None
            else:
                from mdaq_spark.models.encoder import TextEncoder

                _CACHE[key] = TextEncoder(cfg, location)
        return _CACHE[key]


def _texts(series: pd.Series) -> list[str]:
    return series.fillna("").astype(str).tolist()


def _count(counter: Accumulator | None, n: int) -> None:
    """Rows that reached a model UDF: how a refresh proves it computed only the new samples.

    An accumulator counts a retried task twice; that is the truth about work done, which is
    what it reports. Output counts come from the written tables instead.
    """
    if counter is not None:
        counter.add(n)


def encode_map(cfg: ModelConfig, location: str, text_cols: tuple[str, str], counter: Accumulator | None = None):
    """mapInPandas: rows with `text_cols` (prompt, response) -> sample_id, lang and both embeddings."""
    prompt_col, response_col = text_cols

    def encode_pairs(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        encoder = _cached("encoder", cfg, location)
        for pdf in batches:
            _count(counter, len(pdf))
            p = encoder.encode(_texts(pdf[prompt_col]), cfg.instruction_prefix)
            r = encoder.encode(_texts(pdf[response_col]), cfg.response_prefix)
            yield pd.DataFrame(
                {
                    S.SAMPLE_ID: pdf[S.SAMPLE_ID],
                    S.LANG: pdf[S.LANG],
                    S.PROMPT_EMBEDDING: list(p),
                    S.RESPONSE_EMBEDDING: list(r),
                }
            )

    return encode_pairs


def embed_map(cfg: ModelConfig, location: str, text_col: str, prefix: str, counter: Accumulator | None = None):
    """mapInPandas: rows with `text_col` -> sample_id, lang and the L2-normalised embedding."""

    def embed(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        encoder = _cached("encoder", cfg, location)
        for pdf in batches:
            _count(counter, len(pdf))
            vectors = encoder.encode(_texts(pdf[text_col]), prefix)
            yield pd.DataFrame({S.SAMPLE_ID: pdf[S.SAMPLE_ID], S.LANG: pdf[S.LANG], S.EMBEDDING: list(vectors)})

    return embed


def map_schema(rows: T.StructType, fields: tuple[str, ...]) -> T.StructType:
    """sample_id and lang as the input has them, then one embedding column per name in `fields`."""
    return T.StructType(
        [rows[S.SAMPLE_ID], rows[S.LANG], *[T.StructField(name, EMBEDDING_TYPE, True) for name in fields]]
    )


def score_udf(cfg: ModelConfig, head_dir: str | None, counter: Accumulator | None = None):
    """(prompt_embedding, response_embedding) -> struct(qsm_score, embedding); no encoder involved.

    Scoring works on stored encodings, so a newly trained QSM head re-scores a corpus in
    seconds instead of re-encoding it.
    """

    @F.pandas_udf(SCORE_TYPE)
    def qsm_score(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        import numpy as np

        from mdaq_spark.models.qsm import score_and_embed

        head = _cached("head", cfg, head_dir or "")
        for prompts, responses in batches:
            _count(counter, len(prompts))
            p = np.stack(prompts.to_numpy()).astype(np.float32)
            r = np.stack(responses.to_numpy()).astype(np.float32)
            scores, embeddings = score_and_embed(p, r, head)
            yield pd.DataFrame({S.QSM_SCORE: scores, S.EMBEDDING: list(embeddings)})

    return qsm_score
