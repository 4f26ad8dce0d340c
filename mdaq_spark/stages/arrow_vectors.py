"""Embedding columns between Arrow and numpy without a Python object per row.

A pandas UDF hands an `array<float>` column over as one numpy array per row, and takes it
back the same way: at 384 floats a row that costs more than the matrix product it feeds.
An Arrow list column is already a flat float buffer plus offsets, so `matrix` reads it as
an (n, dim) view and `vectors` wraps a result matrix as a list column, both without
touching the rows one by one. The `mapInArrow` maps of encode, embed, score and the cluster
assignment use these.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def matrix(column: pa.Array | pa.ChunkedArray, dtype=np.float32) -> np.ndarray:
    """(rows, dim) from a list<float> column whose rows all hold `dim` values and none is null."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    if n == 0:
        return np.zeros((0, 0), dtype=dtype)
    if column.null_count:
        raise ValueError(f"{column.null_count} null vector(s) in an embedding column")
    offsets = column.offsets.to_numpy()
    dim = int(offsets[1] - offsets[0])
    if not np.all(np.diff(offsets) == dim):
        raise ValueError("vectors of different lengths in one embedding column")
    values = column.values.slice(int(offsets[0]), n * dim).to_numpy(zero_copy_only=False)
    return values.reshape(n, dim).astype(dtype, copy=False)


def vectors(rows: np.ndarray) -> pa.ListArray:
    """A list<float> column (no nulls) holding the rows of a 2-d float32 array."""
    n, dim = rows.shape
    flat = pa.array(np.ascontiguousarray(rows, dtype=np.float32).reshape(-1), type=pa.float32())
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32) if n else np.zeros(1, np.int32))
    return pa.ListArray.from_arrays(offsets, flat)
