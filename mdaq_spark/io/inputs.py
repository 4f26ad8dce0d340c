"""Which files of an input path are read, as which type, and which are left out and why.

One listing serves the job and `--dry-run`, so both read exactly the same files. Which names
are read is io/file_types.py's table; extensions match in any case (`X.JSONL` is JSON Lines).
Names starting with "." or "_" (in the folder or any folder below it) are not data, by the
convention Spark and Hadoop share (`_SUCCESS`, `.crc` files, `_delta_log`); they are skipped
like files of other types, but every skipped file is named in the log and in stats.json
rather than dropped silently. So are the metadata files of a `datasets` save_to_disk folder,
which are JSON but hold no records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mdaq_spark.errors import InputError
from mdaq_spark.io import file_types

HIDDEN = "hidden: names starting with '.' or '_' are not data (Spark convention)"
OTHER_TYPE = file_types.describe_readable()
HF_METADATA = "metadata of a Hugging Face datasets folder (save_to_disk), not records"
FORCE_TYPE = f"set input.file_type ({', '.join(file_types.FILE_TYPES)})"


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class Discovery:
    # file type -> the files read as that type; an empty list means "the path itself" (Delta, URIs)
    files: dict[str, list[str]] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)


def file_type_of(name: str) -> str | None:
    return file_types.classify(name)[0]


def local_files(found: Discovery) -> list[str]:
    """Every file listed by name (not Delta tables or cluster folders, which Spark lists)."""
    return [f for files in found.files.values() for f in files]


def _hidden(relative: Path) -> bool:
    return any(part.startswith((".", "_")) for part in relative.parts)


def discover(path: str, file_type: str = "auto") -> Discovery:
    """The files under `path` by type (`file_type` forces one), and the files skipped."""
    if "://" in path:  # a cluster file system: Spark lists it; one type must be given or implied
        kind = file_type if file_type != "auto" else file_type_of(path)
        if kind is None:
            raise InputError(f"{path}: {FORCE_TYPE} for a folder on {path[:8]}")
        return Discovery(files={kind: []})
    p = Path(path)
    if not p.exists():
        raise InputError(f"input path {path} does not exist")
    if p.is_file():
        kind = file_type if file_type != "auto" else file_type_of(p.name)
        if kind is None:
            raise InputError(f"{path}: unknown file type '{p.suffix}'; {FORCE_TYPE}")
        return Discovery(files={kind: [str(p)]})
    if file_type == "delta" or (file_type == "auto" and (p / "_delta_log").is_dir()):
        return Discovery(files={"delta": []})
    found = Discovery()
    for child in sorted(x for x in p.rglob("*") if x.is_file()):
        kind = file_type_of(child.name)
        if _hidden(child.relative_to(p)):
            found.skipped.append(Skipped(str(child), HIDDEN))
        elif file_types.is_hf_metadata(child):
            found.skipped.append(Skipped(str(child), HF_METADATA))
        elif kind is None or (file_type != "auto" and kind != file_type):
            reason = OTHER_TYPE if kind is None else f"not of input.file_type {file_type}"
            found.skipped.append(Skipped(str(child), reason))
        else:
            found.files.setdefault(kind, []).append(str(child))
    if not found.files:
        readable = ", ".join(file_types.SUFFIXES)
        raise InputError(f"{path}: no input files in this folder ({readable}, compressed or not)")
    found.files = dict(sorted(found.files.items()))
    return found
