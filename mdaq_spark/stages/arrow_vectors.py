"""Embedding columns between Arrow and numpy without a Python object per row.

A pandas UDF hands an `array<float>` column over as one numpy array per row, and takes it
back the same way: at 384 floats a row that costs more than the matrix product it feeds.
An Arrow list column is already a flat float buffer plus offsets, so `matrix` reads it as
an (n, dim) view and `vectors` wraps a result matrix as a list column, both without
touching the rows one by one. The `mapInArrow` maps of encode, embed, score and the cluster
assignment use these. Layer states (a QSM layer head's input) travel as one float16 blob
per row in a binary column: half the bytes of floats, and the precision they train in.
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


def blobs(rows: np.ndarray) -> pa.BinaryArray:
    """A binary column (no nulls) whose row i is the float16 bytes of rows[i] (any trailing shape)."""
    n = len(rows)
    flat = np.ascontiguousarray(rows, dtype=np.float16)
    width = int(np.prod(flat.shape[1:])) * 2
    offsets = pa.py_buffer(np.arange(0, (n + 1) * width, width, dtype=np.int32).tobytes())
    return pa.Array.from_buffers(pa.binary(), n, [None, offsets, pa.py_buffer(flat.tobytes())])


def unblob(column: pa.Array | pa.ChunkedArray, shape: tuple[int, ...]) -> np.ndarray:
    """(rows, *shape) float16 from a binary column of `blobs`; a null or wrongly sized row is an error."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    n = len(column)
    if column.null_count:
        raise ValueError(f"{column.null_count} row(s) without layer states: encode them for this QSM head")
    width = int(np.prod(shape)) * 2
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset : column.offset + n + 1]
    if n and not np.all(np.diff(offsets) == width):
        raise ValueError(f"layer states of another size than {shape} in one column")
    if n == 0:
        return np.zeros((0, *shape), dtype=np.float16)
    data = np.frombuffer(column.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[0] + n * width]
    return data.view(np.float16).reshape(n, *shape)
