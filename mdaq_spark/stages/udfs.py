"""Model inference inside Spark: `mapInArrow` functions over Arrow batches.

The pattern of `pyspark.ml.functions.predict_batch_udf`: the UDF closes over a small,
picklable config; the model itself is built on the executor the first time a Python
worker needs it and cached in that process for every later task (Spark reuses Python
workers), so there is one load per worker process, never one per batch or partition.
Each Arrow batch is encoded in length-sorted mini-batches by the encoder.

The corpus encoders (encode, embed) are maps rather than column UDFs: only a map can carry
a stage-level ResourceProfile (the GPU), and it sees exactly the Arrow batches a column UDF
would. Arrow rather than pandas batches: embeddings go back as one float buffer per batch
(`arrow_vectors`), not as a numpy array per row, which at a GPU's rate costs more than the
model.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pyspark import Accumulator
from pyspark.sql import types as T

from mdaq_spark import schema as S
from mdaq_spark.config import ModelConfig
from mdaq_spark.stages import arrow_vectors

_CACHE: dict[tuple[str, str], object] = {}
_CACHE_LOCK = threading.Lock()

EMBEDDING_TYPE = T.ArrayType(T.FloatType(), False)


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


def assigned_gpus() -> list[str]:
    """The GPU addresses Spark gave the running task (none outside a GPU resource profile)."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    gpu = ctx.resources().get("gpu") if ctx is not None else None
    return list(gpu.addresses) if gpu is not None else []


def _encoder(cfg: ModelConfig, location: str):
    """This worker's encoder, on the GPU the running task holds."""
    encoder = _cached("encoder", cfg, location)
    encoder.place(assigned_gpus())
    return encoder


def _texts(column: pa.Array | pa.ChunkedArray) -> list[str]:
    return ["" if t is None else t for t in column.to_pylist()]


def count_rows(counter: Accumulator | None, n: int) -> None:
    """Rows that reached a model UDF: how a refresh proves it computed only the new samples.

    An accumulator counts a retried task twice; that is the truth about work done, which is
    what it reports. Output counts come from the written tables instead.
    """
    if counter is not None:
        counter.add(n)


def encode_map(
    cfg: ModelConfig,
    location: str,
    text_cols: tuple[str, str],
    counter: Accumulator | None = None,
    layers: tuple[int, ...] = (),
    key: str = S.SAMPLE_ID,
    context_col: str | None = None,
):
    """mapInArrow: rows with `text_cols` (prompt, response) -> key, lang, both embeddings, layer states.

    With `layers` (a QSM layer head), both sides are encoded through their hidden states, the
    way the head's training features were, and the response's states of those layers are kept.
    With `context_col` (an exchange's earlier turns), the prompt is the question after as much
    of its context as fits the encoder's length (TextEncoder.fit_prompts).
    """
    prompt_col, response_col = text_cols

    def encode_pairs(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from mdaq_spark.models.encoder import embedding_of_states

        encoder = _encoder(cfg, location)
        for batch in batches:
            count_rows(counter, batch.num_rows)
            prompts, responses = _texts(batch.column(prompt_col)), _texts(batch.column(response_col))
            if context_col is not None:
                prompts = encoder.fit_prompts(prompts, _texts(batch.column(context_col)), cfg.instruction_prefix)
            if layers:
                p = embedding_of_states(encoder.encode_layers(prompts, cfg.instruction_prefix))
                r, states = encoder.with_layers(responses, cfg.response_prefix, layers)
                kept = arrow_vectors.blobs(states)
            else:
                p = encoder.encode(prompts, cfg.instruction_prefix)
                r = encoder.encode(responses, cfg.response_prefix)
                kept = pa.nulls(batch.num_rows, pa.binary())
            yield pa.RecordBatch.from_arrays(
                [batch.column(key), batch.column(S.LANG), arrow_vectors.vectors(p), arrow_vectors.vectors(r), kept],
                names=[key, S.LANG, S.PROMPT_EMBEDDING, S.RESPONSE_EMBEDDING, S.RESPONSE_LAYERS],
            )

    return encode_pairs


def encode_schema(rows: T.StructType, key: str = S.SAMPLE_ID) -> T.StructType:
    """encode_map's output: the key and lang as the input has them, both embeddings, the layer states."""
    schema = map_schema(rows, (S.PROMPT_EMBEDDING, S.RESPONSE_EMBEDDING), key)
    return schema.add(T.StructField(S.RESPONSE_LAYERS, T.BinaryType(), True))


def embed_map(cfg: ModelConfig, location: str, text_col: str, prefix: str, counter: Accumulator | None = None):
    """mapInArrow: rows with `text_col` -> sample_id, lang and the L2-normalised embedding."""

    def embed(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        encoder = _encoder(cfg, location)
        for batch in batches:
            count_rows(counter, batch.num_rows)
            vectors = encoder.encode(_texts(batch.column(text_col)), prefix)
            yield pa.RecordBatch.from_arrays(
                [batch.column(S.SAMPLE_ID), batch.column(S.LANG), arrow_vectors.vectors(vectors)],
                names=[S.SAMPLE_ID, S.LANG, S.EMBEDDING],
            )

    return embed


def map_schema(rows: T.StructType, fields: tuple[str, ...], key: str = S.SAMPLE_ID) -> T.StructType:
    """The key (sample_id) and lang as the input has them, then one embedding column per name in `fields`."""
    return T.StructType([rows[key], rows[S.LANG], *[T.StructField(name, EMBEDDING_TYPE, True) for name in fields]])


SCORE_SCHEMA_FIELDS = (
    T.StructField(S.QSM_SCORE, T.DoubleType(), True),
    T.StructField(S.EMBEDDING, EMBEDDING_TYPE, True),
)


def score_map(cfg: ModelConfig, head_dir: str | None, counter: Accumulator | None = None):
    """mapInArrow: sample_id, lang, both encodings [, layer states] -> sample_id, lang, qsm_score, embedding.

    No encoder involved: scoring works on stored encodings, so a newly trained QSM head
    re-scores a corpus in seconds instead of re-encoding it. Arrow in, Arrow out: the
    encodings are read as matrices and the embedding written back as one buffer, never as
    one Python object per row.
    """

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from mdaq_spark.models.qsm import score_and_embed

        head = _cached("head", cfg, head_dir or "")
        for batch in batches:
            count_rows(counter, batch.num_rows)
            p = arrow_vectors.matrix(batch.column(S.PROMPT_EMBEDDING))
            r = arrow_vectors.matrix(batch.column(S.RESPONSE_EMBEDDING))
            states = None
            if head is not None and head.layers and batch.num_rows:
                states = arrow_vectors.unblob(batch.column(S.RESPONSE_LAYERS), (len(head.layers), r.shape[1]))
            scores, embeddings = (
                score_and_embed(p, r, head, states) if batch.num_rows else (np.zeros(0), np.zeros((0, 0)))
            )
            yield pa.RecordBatch.from_arrays(
                [
                    batch.column(S.SAMPLE_ID),
                    batch.column(S.LANG),
                    pa.array(scores, type=pa.float64()),
                    arrow_vectors.vectors(embeddings.astype(np.float32)),
                ],
                names=[S.SAMPLE_ID, S.LANG, S.QSM_SCORE, S.EMBEDDING],
            )

    return score


def sum_embedding_map(keep: str | list[str]):
    """mapInArrow: the `keep` columns and both encodings -> the `keep` columns and the normalised sum of
    the two encodings: the diversity embedding.

    The QSM head does not enter it: any scorer (or none of the QSM) leaves the embedding as it was.
    """
    kept = [keep] if isinstance(keep, str) else list(keep)

    def embed(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from mdaq_spark.models.qsm import normalise_rows

        for batch in batches:
            if batch.num_rows:
                p = arrow_vectors.matrix(batch.column(S.PROMPT_EMBEDDING))
                r = arrow_vectors.matrix(batch.column(S.RESPONSE_EMBEDDING))
                vectors = arrow_vectors.vectors(normalise_rows(p + r).astype(np.float32))
            else:
                vectors = pa.array([], type=pa.list_(pa.float32()))
            columns = [batch.column(c) for c in kept]
            yield pa.RecordBatch.from_arrays([*columns, vectors], names=[*kept, S.EMBEDDING])

    return embed
