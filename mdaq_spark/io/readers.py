"""Input files of any supported type -> one DataFrame of canonical samples + quarantine rows.

Every source is first reduced to raw bytes per unit (a JSONL line, a whole JSON file, a
Parquet/Delta row rendered as JSON), and one Arrow-batched parser turns units into samples.
Bytes rather than strings, so invalid UTF-8 becomes a quarantine reason instead of an
exception inside Spark's decoder; one parser, so every record shape behaves the same
whatever the file type.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.config import InputConfig
from mdaq_spark.errors import InputError
from mdaq_spark.io import records
from mdaq_spark.io import validate as v

log = logging.getLogger(__name__)

UNIT_LINE = "line"  # one JSON record per line
UNIT_FILE = "file"  # one JSON document (array of records, or one record) per file
_UNIT = "unit"
_PAYLOAD = "payload"

_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
}


_GLOBS = {"jsonl": "*.{jsonl,ndjson}", "json": "*.json", "parquet": "*.parquet"}


def detect_file_types(path: str) -> list[str]:
    """The file types under `path`: one for a file or a Delta table, one or more for a folder.

    A folder may mix types (a corpus assembled from several sources often does); each type
    is then read with its own reader, restricted to its own extensions.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"input path {path} does not exist")
    if p.is_dir():
        if (p / "_delta_log").is_dir():
            return ["delta"]
        kinds = {_EXTENSIONS.get(child.suffix.lower()) for child in p.rglob("*") if child.is_file()}
        kinds.discard(None)
        if not kinds:
            raise InputError(f"{path}: no .json, .jsonl, .ndjson or .parquet files in this folder")
        return sorted(kinds)
    kind = _EXTENSIONS.get(p.suffix.lower())
    if kind is None:
        raise InputError(f"{path}: unknown file type '{p.suffix}'; set input.file_type (json, jsonl, parquet, delta)")
    return [kind]


def files_of_type(path: str, file_type: str) -> list[Path]:
    """The files under `path` that the reader of `file_type` would read (the path itself if a file)."""
    p = Path(path)
    if p.is_file():
        return [p]
    return sorted(f for f in p.rglob("*") if f.is_file() and _EXTENSIONS.get(f.suffix.lower()) == file_type)


def _raw_units(spark: SparkSession, path: str, file_type: str) -> DataFrame:
    """(source, unit, payload bytes) for one input path and one file type."""
    reader = spark.read
    if Path(path).is_dir() and file_type in _GLOBS:
        reader = reader.option("recursiveFileLookup", "true").option("pathGlobFilter", _GLOBS[file_type])
    if file_type == "jsonl":
        df = reader.text(path)
        return df.where(F.trim(F.col("value")) != "").select(
            F.col("_metadata.file_path").alias(S.SOURCE),
            F.lit(UNIT_LINE).alias(_UNIT),
            F.col("value").cast("binary").alias(_PAYLOAD),
        )
    if file_type == "json":
        df = reader.format("binaryFile").load(path)
        return df.select(
            F.col("path").alias(S.SOURCE), F.lit(UNIT_FILE).alias(_UNIT), F.col("content").alias(_PAYLOAD)
        )
    if file_type in ("parquet", "delta"):
        if file_type == "delta":
            from mdaq_spark.io.delta import read_delta

            df = read_delta(spark, path)
        else:
            df = reader.parquet(path)
        return df.select(
            F.lit(str(path)).alias(S.SOURCE),
            F.lit(UNIT_LINE).alias(_UNIT),
            F.to_json(F.struct(*[F.col(f"`{c}`") for c in df.columns])).cast("binary").alias(_PAYLOAD),
        )
    raise InputError(f"unsupported file type: {file_type}")


def read_corpus(spark: SparkSession, cfg: InputConfig) -> DataFrame:
    """All input paths as one DataFrame in `schema.parsed_schema`: samples and quarantine rows."""
    units = None
    for path in cfg.paths:
        file_types = [cfg.file_type] if cfg.file_type != "auto" else detect_file_types(path)
        for file_type in file_types:
            log.info("reading %s as %s", path, file_type)
            df = _raw_units(spark, path, file_type)
            units = df if units is None else units.unionByName(df)
    if units is None:
        raise InputError("no input paths")
    out_schema = S.parsed_schema(tuple(cfg.passthrough))
    return units.mapInPandas(functools.partial(_parse_batches, cfg=cfg), schema=out_schema)


def preview(path: str, file_type: str, cfg: InputConfig, limit: int) -> list[dict[str, Any]]:
    """The first `limit` parsed rows of one file, in plain Python: the dry run's schema check.

    Same parser as the job, so a dry run reports the record formats and rejection reasons
    the job would produce, minutes before a cluster is asked for.
    """
    settings = records.AdapterSettings(columns=cfg.columns, max_field_chars=cfg.max_field_chars)
    source = str(path)
    if file_type == "jsonl":
        units = []
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    units.append((UNIT_LINE, line.rstrip(b"\r\n")))
                if len(units) >= limit:
                    break
    elif file_type == "json":
        units = [(UNIT_FILE, Path(path).read_bytes())]
    elif file_type == "parquet":
        import pyarrow.parquet as pq

        first = next(pq.ParquetFile(path).iter_batches(batch_size=limit), None)
        rows = first.to_pylist() if first is not None else []
        units = [(UNIT_LINE, json.dumps(row, ensure_ascii=False, default=str).encode()) for row in rows]
    else:
        return []
    out: list[dict[str, Any]] = []
    for unit, payload in units:
        out.extend(_parse_unit(source, unit, payload, cfg, settings))
        if len(out) >= limit:
            break
    return out[:limit]


# ---------------------------------------------------------------- parsing (runs on executors)


def _parse_batches(batches: Iterator[pd.DataFrame], cfg: InputConfig) -> Iterator[pd.DataFrame]:
    settings = records.AdapterSettings(columns=cfg.columns, max_field_chars=cfg.max_field_chars)
    empty_row = dict.fromkeys(f.name for f in S.parsed_schema(tuple(cfg.passthrough)).fields)
    for batch in batches:
        rows: list[dict[str, Any]] = []
        for source, unit, payload in zip(batch[S.SOURCE], batch[_UNIT], batch[_PAYLOAD], strict=True):
            # every row carries every column: a column missing from a whole batch would come out
            # as float NaN, which Arrow refuses to turn into strings
            rows.extend({**empty_row, **row} for row in _parse_unit(source, unit, bytes(payload), cfg, settings))
        yield pd.DataFrame(rows, columns=list(empty_row), dtype=object)


def _parse_unit(
    source: str, unit: str, payload: bytes, cfg: InputConfig, settings: records.AdapterSettings
) -> Iterator[dict[str, Any]]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        yield _reject(source, v.invalid_text("record"), payload.decode("utf-8", "replace"), cfg)
        return
    if unit == UNIT_LINE:
        yield from _parse_json_record_text(source, text, cfg, settings)
        return
    try:
        document = json.loads(text)
    except ValueError:
        # a ".json" file that is really JSON Lines is common enough to accept
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) > 1:
            for line in lines:
                yield from _parse_json_record_text(source, line, cfg, settings)
        else:
            yield _reject(source, v.UNPARSABLE_JSON, text, cfg)
        return
    if isinstance(document, list):
        for item in document:
            yield from _parse_record(source, item, cfg, settings)
    else:
        yield from _parse_record(source, document, cfg, settings)


def _parse_json_record_text(
    source: str, text: str, cfg: InputConfig, settings: records.AdapterSettings
) -> Iterator[dict[str, Any]]:
    try:
        record = json.loads(text)
    except ValueError:
        yield _reject(source, v.UNPARSABLE_JSON, text, cfg)
        return
    yield from _parse_record(source, record, cfg, settings)


def _parse_record(
    source: str, record: Any, cfg: InputConfig, settings: records.AdapterSettings
) -> Iterator[dict[str, Any]]:
    raw = None  # rendered lazily: only rejected rows carry their raw record
    if not isinstance(record, dict):
        yield _reject(source, v.NOT_AN_OBJECT, _render(record), cfg)
        return
    try:
        fmt = cfg.record_format if cfg.record_format != "auto" else records.detect_format(record, cfg.columns)
        samples = records.ADAPTERS[fmt](record, settings)
    except v.RecordRejected as rejected:
        yield _reject(source, rejected.reason, _render(record), cfg)
        return
    hint = _lang_hint(record, source, fmt, cfg)
    extras = {name: _passthrough_value(record.get(name)) for name in cfg.passthrough}
    for sample in samples:
        if isinstance(sample, v.RecordRejected):
            raw = raw if raw is not None else _render(record)
            yield _reject(source, sample.reason, raw, cfg, record_format=fmt)
            continue
        yield {
            S.SAMPLE_ID: S.compute_sample_id(sample.instruction, sample.input, sample.response, sample.history),
            S.SOURCE: source,
            S.RECORD_FORMAT: fmt,
            S.VARIANT: sample.variant,
            S.INSTRUCTION: sample.instruction,
            S.INPUT: sample.input,
            S.RESPONSE: sample.response,
            S.HISTORY: sample.history,
            S.LANG_HINT: hint,
            S.QUARANTINE_REASON: None,
            S.RAW_RECORD: None,
            **extras,
        }


def _lang_hint(record: dict[str, Any], source: str, fmt: str, cfg: InputConfig) -> str | None:
    given = record.get(cfg.columns.lang)
    if isinstance(given, str) and given.strip():
        return S.language_code(given)
    if fmt == "midb" and cfg.midb_lang_from_filename:
        return S.language_code(Path(source).stem)
    return None


def _writable(text: str) -> str:
    """Lone surrogates (from broken JSON escapes) cannot be written as UTF-8: replace them."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _passthrough_value(value: Any) -> str | None:
    if value is None:
        return None
    return _writable(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True))


def _render(record: Any) -> str:
    try:
        return _writable(json.dumps(record, ensure_ascii=False))
    except (TypeError, ValueError):
        return _writable(repr(record))


def _reject(source: str, reason: str, raw: str, cfg: InputConfig, record_format: str | None = None) -> dict[str, Any]:
    return {
        S.SOURCE: source,
        S.RECORD_FORMAT: record_format,
        S.QUARANTINE_REASON: reason,
        S.RAW_RECORD: _writable(raw[: cfg.raw_record_chars]),
    }
