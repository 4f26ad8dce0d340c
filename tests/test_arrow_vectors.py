"""Embedding columns to and from Arrow: the values as written, and a clear error for what no matrix holds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mdaq_spark.stages.arrow_vectors import matrix, vectors


def test_round_trip_keeps_every_float_and_reads_a_sliced_column():
    rows = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    column = vectors(rows)
    assert column.type == pa.list_(pa.float32()) and column.null_count == 0
    assert np.array_equal(matrix(column), rows)
    assert np.array_equal(matrix(column.slice(2, 3)), rows[2:5])  # a batch cut from a larger array
    assert np.array_equal(matrix(pa.chunked_array([column.slice(0, 4), column.slice(4)])), rows)
    assert matrix(vectors(np.zeros((0, 5), np.float32))).shape[0] == 0


def test_null_or_ragged_vectors_are_refused():
    with pytest.raises(ValueError, match="null vector"):
        matrix(pa.array([[1.0, 2.0], None], type=pa.list_(pa.float32())))
    with pytest.raises(ValueError, match="different lengths"):
        matrix(pa.array([[1.0, 2.0], [3.0]], type=pa.list_(pa.float32())))
