"""The one table of input file types: which names are read, by which reader, cut into which units.

The job (io/readers.py), the file listing (io/inputs.py), the dependency check and the dry run
(pipeline/plan.py) all read this table, so a type added here is listed, checked, previewed and
read the same way everywhere.

A name is `<stem>.<type>[.<compression>]`: `corpus.jsonl.gz` is JSON Lines compressed with
gzip. Plain UTF-8 JSON Lines, JSON and Parquet are read by Spark's own readers (a large plain
JSON Lines file is split across tasks); compressed files, text files in UTF-16 or UTF-32 and
Arrow IPC files are read by Python (io/local_units.py), one task per file, streamed, through
the same parser.
"""

from __future__ import annotations

import bz2
import lzma
import os
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mdaq_spark.errors import InputError

UNIT_LINE = "line"  # one record per line (JSON Lines), or per row (Parquet, Arrow)
UNIT_FILE = "file"  # one JSON document per file: an array of records, or one record


@dataclass(frozen=True)
class FileType:
    name: str  # the value of input.file_type that forces it
    unit: str
    description: str


FILE_TYPES = {
    "jsonl": FileType("jsonl", UNIT_LINE, "JSON Lines"),
    "json": FileType("json", UNIT_FILE, "a JSON document"),
    "parquet": FileType("parquet", UNIT_LINE, "Parquet"),
    # Arrow IPC, file or stream format: `datasets`' save_to_disk writes data-*.arrow streams
    "arrow": FileType("arrow", UNIT_LINE, "Arrow IPC"),
    "delta": FileType("delta", UNIT_LINE, "a Delta table (a folder with _delta_log/)"),
}
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".arrow": "arrow"}


@dataclass(frozen=True)
class Compression:
    name: str
    magic: bytes  # the first bytes of every stream of this kind
    package: str | None = None  # the PyPI package that reads it, when the standard library does not
    module: str | None = None
    extra: str | None = None


COMPRESSIONS = {
    ".gz": Compression("gzip", b"\x1f\x8b"),
    ".bz2": Compression("bzip2", b"BZh"),
    ".zst": Compression("zstd", b"\x28\xb5\x2f\xfd", "zstandard", "zstandard", "zstd"),
    ".zstd": Compression("zstd", b"\x28\xb5\x2f\xfd", "zstandard", "zstandard", "zstd"),
    ".xz": Compression("xz", b"\xfd7zXZ\x00"),
}
# compressed Parquet and Arrow files compress inside the format; a whole-file codec is for text
COMPRESSIBLE = frozenset({"jsonl", "json"})

# files of `datasets`' save_to_disk besides its data-*.arrow: metadata, never records
HF_METADATA = frozenset({"dataset_info.json", "state.json", "dataset_dict.json"})


def describe_readable() -> str:
    """The names read, for the message about a file that is not."""
    types = ", ".join(SUFFIXES)
    codecs = ", ".join(dict.fromkeys(COMPRESSIONS))
    return f"not a {types} file (JSON ones may end in {codecs})"


def classify(name: str) -> tuple[str | None, Compression | None]:
    """(file type, compression) of a file name; (None, None) when it is no input type."""
    path = Path(name.lower())
    compression = COMPRESSIONS.get(path.suffix)
    if compression is not None:
        kind = SUFFIXES.get(Path(path.stem).suffix)
        return (kind, compression) if kind in COMPRESSIBLE else (None, None)
    return SUFFIXES.get(path.suffix), None


def base_name(path: str) -> str:
    """A file's name without its type and compression suffixes: `German.json.gz` -> `German`."""
    name = PurePosixPath(path).name
    if compression_of(name) is not None:
        name = name[: -len(PurePosixPath(name).suffix)]
    return name[: -len(PurePosixPath(name).suffix)] if PurePosixPath(name).suffix.lower() in SUFFIXES else name


def compression_of(name: str) -> Compression | None:
    return COMPRESSIONS.get(Path(name.lower()).suffix)


def is_hf_metadata(path: Path) -> bool:
    """A metadata file of a `datasets` save_to_disk folder (a state.json beside it, or in a split below it)."""
    if path.name not in HF_METADATA:
        return False
    folder = path.parent
    if path.name == "dataset_dict.json":
        return any((child / "state.json").is_file() for child in folder.iterdir() if child.is_dir())
    return (folder / "state.json").is_file() and any(folder.glob("*.arrow"))


def check_header(path: str, compression: Compression | None) -> None:
    """A compressed file that does not start as its codec's streams do is unreadable: one line naming it."""
    if compression is None:
        return
    with open(path, "rb") as f:
        head = f.read(len(compression.magic))
    if head and head != compression.magic:
        raise InputError(f"{path}: not a {compression.name} stream (its first bytes are {head.hex(' ')})")


def decompressor(compression: Compression):
    """A fresh one-stream decompressor (`decompress`, `eof`, `unused_data`): a file of several streams needs one each.

    Decompressor objects rather than file objects: a file object that meets a broken stream
    raises and drops what it had decompressed, where these have handed out everything before the break.
    """
    if compression.name == "gzip":
        return zlib.decompressobj(wbits=31)
    if compression.name == "bzip2":
        return bz2.BZ2Decompressor()
    if compression.name == "xz":
        return lzma.LZMADecompressor()
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj()


def source_name(path: str) -> str:
    """A local file's `source`, spelt as Spark's readers spell it once decoded: `file:` and the absolute path."""
    return f"file:{os.path.abspath(path)}"
