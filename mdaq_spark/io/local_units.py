"""A local file cut into units in plain Python: compressed files, UTF-16/32 text, Arrow IPC, and the dry run.

The units are the ones Spark's readers give for plain files (a non-blank line of JSON Lines
split on "\\n" only, a whole JSON document, a table row rendered as JSON), so the one parser
in io/readers.py treats them alike. Files are streamed in chunks: a compressed corpus of
gigabytes never sits in memory whole, except a JSON document, which is one unit anyway.

What cannot be cut into records becomes one unit that is already rejected, with its reason,
so it is counted as one record read and written as one quarantine row, never an invented row
per stray byte: a compressed stream cut short (after the records before the cut), a
compressed file with corrupt data (the whole file: a checksum error can surface far from the
bytes it spoilt, so none of its records is trusted), a text file in UTF-16 or UTF-32 without
a byte-order mark.
"""

from __future__ import annotations

import codecs
import json
import math
from collections.abc import Iterator
from typing import Any

from mdaq_spark import schema as S
from mdaq_spark.errors import InputError
from mdaq_spark.io.file_types import (
    FILE_TYPES,
    UNIT_FILE,
    UNIT_LINE,
    Compression,
    compression_of,
    decompressor,
)

# a unit "rejected:<reason>" is one record read that the parser turns into one quarantine row
REJECTED = "rejected:"
# JSON keys a table row rendered as JSON carries for its top-level columns that hold no text
# (BINARY that is not UTF-8, a NaN or infinite float), so the parser rejects them as wrong types
NOT_UTF8_KEY = "__mdaq_binary_not_utf8__"
NON_FINITE_KEY = "__mdaq_non_finite__"

# a line of nothing but ASCII whitespace (tabs and form feeds included) holds no record
BLANK_BYTES = b" \t\x0b\x0c\r"
_CHUNK = 1 << 16  # bytes read from a plain file at a time
_SLICE = 1 << 13  # bytes of a compressed file decompressed at a time
_CUT = "cut short"  # a stream that ends early: what came before it is sound
# longest first: the UTF-32 little-endian mark starts with the UTF-16 one
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_UTF8 = "utf-8"


def rejected(reason: str) -> str:
    return REJECTED + reason


def text_encoding(head: bytes) -> str | None:
    """The encoding of a JSON text from its first bytes: a UTF-16/32 byte-order mark, else UTF-8.

    JSON starts with an ASCII character, so a NUL byte among the first four without a mark is
    UTF-16 or UTF-32 of unknown byte order: None, not read.
    """
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    return None if b"\x00" in head[:4] else _UTF8


def needs_python(path: str, file_type: str) -> bool:
    """Whether the file is read here rather than by Spark's own reader of its type."""
    if file_type == "arrow" or compression_of(path) is not None:
        return True
    if file_type in ("json", "jsonl"):
        with open(path, "rb") as f:
            return text_encoding(f.read(4)) != _UTF8
    return False


def file_units(path: str, file_type: str) -> Iterator[tuple[str, bytes]]:
    """(unit, payload) of every record of a local file, in order."""
    if file_type == "arrow":
        yield from _table_units(_arrow_batches(path))
    elif file_type == "parquet":
        import pyarrow.parquet as pq

        yield from _table_units(pq.ParquetFile(path).iter_batches(batch_size=1024))
    else:
        yield from _text_units(path, file_type, compression_of(path))


def _text_units(path: str, file_type: str, compression: Compression | None) -> Iterator[tuple[str, bytes]]:
    broken: list[str] = []
    if compression is not None:
        # a checksum or format error can surface long after the bytes it spoilt (gzip checks its CRC
        # only at the end): a file with one is checked whole first, and none of its records is trusted
        for _ in _chunks(path, compression, broken):
            pass
        if broken and not broken[0].startswith(_CUT):
            yield rejected(S.REASON_CORRUPT_COMPRESSED_STREAM), _broken_payload(broken, b"")
            return
        broken.clear()
    chunks = _chunks(path, compression, broken)
    head = b""
    for chunk in chunks:  # at least four bytes, or the whole file, to tell the encoding
        head += chunk
        if len(head) >= 4:
            break
    encoding = text_encoding(head)
    if encoding is None:
        yield rejected(S.REASON_UNSUPPORTED_TEXT_ENCODING), head[:256]
        return
    text_chunks = _chain(head, chunks) if encoding == _UTF8 else _recoded(_chain(head, chunks), encoding)
    if FILE_TYPES[file_type].unit == UNIT_FILE:  # one document: whole
        document = b"".join(text_chunks)
        if broken:
            yield rejected(S.REASON_CORRUPT_COMPRESSED_STREAM), _broken_payload(broken, document[:256])
        else:
            yield UNIT_FILE, document
        return
    tail = b""
    for chunk in text_chunks:
        lines = (tail + chunk).split(b"\n")
        tail = lines.pop()
        for line in lines:
            if line.strip(BLANK_BYTES):
                yield UNIT_LINE, line
    if broken:
        yield rejected(S.REASON_CORRUPT_COMPRESSED_STREAM), _broken_payload(broken, tail)
    elif tail.strip(BLANK_BYTES):
        yield UNIT_LINE, tail


def _broken_payload(broken: list[str], partial: bytes) -> bytes:
    """What the quarantine row shows: why the stream broke, then the bytes of the record it broke in."""
    return f"[{broken[0]}] ".encode() + partial


def _chunks(path: str, compression: Compression | None, broken: list[str]) -> Iterator[bytes]:
    """The file's content in chunks; a stream that breaks ends here, with what went wrong in `broken`.

    What was decompressed before the break is handed out (all but the last few kilobytes of
    compressed input before it), so the records before it are read.
    Concatenated streams (several gzip members, zstd frames) are one content.
    """
    with open(path, "rb") as f:
        if compression is None:
            while chunk := f.read(_CHUNK):
                yield chunk
            return
        stream = None
        # fed in small slices: a decompressor that raises drops the output of that call
        while data := f.read(_SLICE):
            while data:
                if stream is None:
                    stream = decompressor(compression)
                try:
                    out = stream.decompress(data)
                except Exception as exc:  # noqa: BLE001 -- zlib, bz2, lzma and zstandard each raise their own
                    broken.append(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
                    return
                if out:
                    yield out
                data, stream = (stream.unused_data, None) if stream.eof else (b"", stream)
        if stream is not None:
            broken.append(f"{_CUT}: the {compression.name} stream ends before its end marker")


def _chain(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


def _recoded(chunks: Iterator[bytes], encoding: str) -> Iterator[bytes]:
    """UTF-16/32 chunks as UTF-8; the mark is consumed, an undecodable code unit becomes U+FFFD (rejected later)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    for chunk in chunks:
        yield decoder.decode(chunk).encode("utf-8", "surrogatepass")
    yield decoder.decode(b"", final=True).encode("utf-8", "surrogatepass")


def _arrow_batches(path: str):
    import pyarrow as pa

    with pa.memory_map(path) as source:
        try:
            reader = pa.ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:  # not the file format: the stream format, as save_to_disk writes it
            source.seek(0)
            batches = pa.ipc.open_stream(source)
        yield from batches


def arrow_schema(path: str):
    """The schema of an Arrow IPC file (file or stream format); unreadable: one line naming the file."""
    import pyarrow as pa

    try:
        with pa.memory_map(path) as source:
            try:
                return pa.ipc.open_file(source).schema
            except pa.ArrowInvalid:
                source.seek(0)
                return pa.ipc.open_stream(source).schema
    except (pa.ArrowInvalid, OSError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a readable Arrow IPC file ({first_line})") from exc


def _table_units(batches) -> Iterator[tuple[str, bytes]]:
    for batch in batches:
        for row in batch.to_pylist():
            yield UNIT_LINE, row_json(row)


def row_json(row: dict[str, Any]) -> bytes:
    """A table row as JSON, by the rules io/readers.py applies to Parquet rows in Spark.

    Top-level bytes that are UTF-8 are text; other bytes, and NaN or infinite floats, are
    named under NOT_UTF8_KEY / NON_FINITE_KEY so the parser rejects them as wrong types.
    """
    record: dict[str, Any] = {}
    not_utf8, non_finite = [], []
    for name, value in row.items():
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                not_utf8.append(name)
                value = None
        elif isinstance(value, float) and not math.isfinite(value):
            non_finite.append(name)
            value = None
        record[name] = value
    if not_utf8:
        record[NOT_UTF8_KEY] = not_utf8
    if non_finite:
        record[NON_FINITE_KEY] = non_finite
    return json.dumps(record, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")
