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
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mdaq_spark import schema as S
from mdaq_spark.config import InputConfig
from mdaq_spark.errors import InputError
from mdaq_spark.io import inputs, records
from mdaq_spark.io import validate as v
from mdaq_spark.langcodes import UNKNOWN, file_language, language_code

log = logging.getLogger(__name__)

UNIT_LINE = "line"  # one JSON record per line
UNIT_FILE = "file"  # one JSON document (array of records, or one record) per file
_UNIT = "unit"
_PAYLOAD = "payload"
# JSON keys the Parquet reader adds to a row: its top-level columns whose values are no text
# (BINARY that is not UTF-8, a NaN or infinite float), so the parser can reject them as wrong types
NOT_UTF8_KEY = "__mdaq_binary_not_utf8__"
NON_FINITE_KEY = "__mdaq_non_finite__"
NOT_UTF8_VALUE = {"$binary": "not UTF-8"}

# a line of nothing but ASCII whitespace (tabs and form feeds included) holds no record
_BLANK_LINE = "^[ \\t\\u000B\\f\\r]*$"
_BLANK_BYTES = b" \t\x0b\x0c\r"


def detect_file_types(path: str) -> list[str]:
    """The file types under `path`: one for a file or a Delta table, one or more for a folder.

    A folder may mix types (a corpus assembled from several sources often does); each type
    is then read with its own reader, restricted to its own files.
    """
    return list(inputs.discover(path).files)


def files_of_type(path: str, file_type: str) -> list[Path]:
    """The files under `path` that the reader of `file_type` would read (the path itself if a file)."""
    return [Path(f) for f in inputs.discover(path).files.get(file_type, [])]


# a folder on a cluster file system is listed by Spark: it keeps to the files of the type it reads
_GLOBS = {"jsonl": "*.{jsonl,ndjson,JSONL,NDJSON}", "json": "*.{json,JSON}", "parquet": "*.{parquet,PARQUET}"}


def _file_units(spark: SparkSession, files: list[str], file_type: str, spark_paths: list[str]) -> DataFrame:
    """(source, unit, payload bytes) for the files of one type; `source` is always the file itself."""
    reader = spark.read
    if not files and file_type in _GLOBS:
        reader = reader.option("recursiveFileLookup", "true").option("pathGlobFilter", _GLOBS[file_type])
    if file_type == "jsonl":
        # "\n" only: a CR, U+0085 or U+2028 inside a record is not a record boundary
        df = reader.option("lineSep", "\n").text(spark_paths)
        return df.where(~F.col("value").rlike(_BLANK_LINE)).select(
            F.col("_metadata.file_path").alias(S.SOURCE),
            F.lit(UNIT_LINE).alias(_UNIT),
            F.col("value").cast("binary").alias(_PAYLOAD),
        )
    if file_type == "json":
        df = reader.format("binaryFile").load(spark_paths)
        return df.select(
            F.col("path").alias(S.SOURCE), F.lit(UNIT_FILE).alias(_UNIT), F.col("content").alias(_PAYLOAD)
        )
    if file_type == "parquet":
        groups = parquet_schema_groups(files) if files else [spark_paths]
        frames = [_rows_as_json(reader.parquet(*group), F.col("_metadata.file_path")) for group in groups]
        return functools.reduce(DataFrame.unionByName, frames)
    if file_type == "delta":
        from mdaq_spark.io.delta import read_delta

        (path,) = spark_paths
        return _rows_as_json(read_delta(spark, path), F.lit(str(path)))
    raise InputError(f"unsupported file type: {file_type}")


def check_inputs(cfg: InputConfig) -> None:
    """Before Spark starts: every input path lists, and every local Parquet file has a readable footer."""
    for path in cfg.paths:
        parquet = inputs.discover(path, cfg.file_type).files.get("parquet")
        if parquet:
            parquet_schema_groups(parquet)


def parquet_schema_groups(files: list[str]) -> list[list[str]]:
    """Parquet files grouped by their own schema, so each is read with its own columns and types.

    Read from the footers on the driver: a truncated file, or one that is not Parquet at all,
    is named here in one line instead of failing a Spark task with a long trace.
    """
    import pyarrow.parquet as pq

    groups: dict[str, list[str]] = {}
    for f in files:
        try:
            arrow_schema = pq.read_schema(f)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a broken footer
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{f}: not a readable Parquet file ({first_line})") from exc
        groups.setdefault(arrow_schema.to_string(show_schema_metadata=False), []).append(f)
    return list(groups.values())


def _rows_as_json(df: DataFrame, source: Column) -> DataFrame:
    """Each row as a JSON record, with BINARY columns as text where they are UTF-8 (Spark expressions).

    to_json would write BINARY as base64 and a NaN float as the string "NaN": both would pass
    as text. Instead valid UTF-8 bytes become text, and the columns holding no text are named
    under NOT_UTF8_KEY / NON_FINITE_KEY so the parser rejects them as wrong types.
    """
    values, not_utf8, non_finite = [], [], []
    for field in df.schema.fields:
        col = F.col(f"`{field.name}`")
        if isinstance(field.dataType, T.BinaryType):
            text = col.cast("string")
            valid = F.is_valid_utf8(text)
            values.append(F.when(valid, text).alias(field.name))
            not_utf8.append(F.when(col.isNotNull() & ~valid, F.lit(field.name)))
        elif isinstance(field.dataType, (T.FloatType, T.DoubleType)):
            bad = F.isnan(col) | col.isin(float("inf"), float("-inf"))
            values.append(F.when(~bad, col).alias(field.name))
            non_finite.append(F.when(bad, F.lit(field.name)))
        else:
            values.append(col)
    for key, names in ((NOT_UTF8_KEY, not_utf8), (NON_FINITE_KEY, non_finite)):
        if names:
            values.append(F.array_compact(F.array(*names)).alias(key))
    return df.select(
        source.alias(S.SOURCE),
        F.lit(UNIT_LINE).alias(_UNIT),
        F.to_json(F.struct(*values)).cast("binary").alias(_PAYLOAD),
    )


def raw_units(spark: SparkSession, cfg: InputConfig) -> tuple[DataFrame, list[inputs.Skipped]]:
    """Every input file's units, and the files of the input folders that are not read (with why)."""
    units, skipped = None, []
    for path in cfg.paths:
        found = inputs.discover(path, cfg.file_type)
        skipped.extend(found.skipped)
        for file_type, files in found.files.items():
            log.info("reading %s: %d %s file(s)", path, len(files) or 1, file_type)
            df = _file_units(spark, files, file_type, files or [path])
            units = df if units is None else units.unionByName(df)
    for item in skipped:
        log.warning("not read: %s (%s)", item.path, item.reason)
    if units is None:
        raise InputError("no input paths")
    return units, skipped


def parse_units(units: DataFrame, cfg: InputConfig) -> DataFrame:
    """Units -> rows in `schema.parsed_schema` plus the accounting columns RECORD_START and UNITS_READ.

    Besides the parsed rows, each batch adds one tally row per source: the line units it was
    handed, counted in the loop that feeds the parser. So the records read are counted in
    the same pass as the parse (no second scan of the input), yet not by the parser.
    """
    out_schema = (
        S.parsed_schema(tuple(cfg.passthrough))
        .add(S.RECORD_START, T.BooleanType(), True)
        .add(S.UNITS_READ, T.LongType(), True)
    )
    return units.mapInPandas(functools.partial(_parse_batches, cfg=cfg), schema=out_schema)


def without_accounting(accounted: DataFrame) -> DataFrame:
    """The parsed rows of `parse_units` in `schema.parsed_schema`, without tally rows and accounting columns."""
    return accounted.where(F.col(S.UNITS_READ).isNull()).drop(S.RECORD_START, S.UNITS_READ)


def read_corpus(spark: SparkSession, cfg: InputConfig) -> DataFrame:
    """All input paths as one DataFrame in `schema.parsed_schema`: samples and quarantine rows."""
    units, _ = raw_units(spark, cfg)
    return without_accounting(parse_units(units, cfg))


def preview(path: str, file_type: str, cfg: InputConfig, limit: int) -> list[dict[str, Any]]:
    """The first `limit` parsed rows of one file, in plain Python: the dry run's schema check.

    The units are cut as the job cuts them (lines on "\\n" only, blank lines skipped, Parquet
    rows rendered with the same text rules) and go through the job's own parser, so a dry run
    reports the record formats and rejection reasons the job would produce, minutes before a
    cluster is asked for.
    """
    settings = records.AdapterSettings(columns=cfg.columns, max_field_chars=cfg.max_field_chars)
    source = str(path)
    units: list[tuple[str, bytes]] = []
    if file_type == "jsonl":
        with open(path, "rb") as f:
            for line in f:
                line = line.removesuffix(b"\n")
                if line.strip(_BLANK_BYTES):
                    units.append((UNIT_LINE, line))
                if len(units) >= limit:
                    break
    elif file_type == "json":
        units = [(UNIT_FILE, Path(path).read_bytes())]
    elif file_type == "parquet":
        import pyarrow.parquet as pq

        parquet_schema_groups([str(path)])
        first = next(pq.ParquetFile(path).iter_batches(batch_size=limit), None)
        rows = first.to_pylist() if first is not None else []
        units = [(UNIT_LINE, _arrow_row_json(row)) for row in rows]
    else:
        return []
    out: list[dict[str, Any]] = []
    for unit, payload in units:
        out.extend(_parse_unit(source, unit, payload, cfg, settings))
        if len(out) >= limit:
            break
    return out[:limit]


def _arrow_row_json(row: dict[str, Any]) -> bytes:
    """A Parquet row as `_rows_as_json` renders it in Spark, in plain Python (for the dry run)."""
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


# ---------------------------------------------------------------- parsing (runs on executors)


def _parse_batches(batches: Iterator[pd.DataFrame], cfg: InputConfig) -> Iterator[pd.DataFrame]:
    settings = records.AdapterSettings(columns=cfg.columns, max_field_chars=cfg.max_field_chars)
    columns = [f.name for f in S.parsed_schema(tuple(cfg.passthrough)).fields] + [S.RECORD_START, S.UNITS_READ]
    empty_row = dict.fromkeys(columns)
    for batch in batches:
        rows: list[dict[str, Any]] = []
        tally: Counter[str] = Counter()
        for source, unit, payload in zip(batch[S.SOURCE], batch[_UNIT], batch[_PAYLOAD], strict=True):
            if unit == UNIT_LINE:
                tally[source] += 1
            # every row carries every column: a column missing from a whole batch would come out
            # as float NaN, which Arrow refuses to turn into strings
            rows.extend({**empty_row, **row} for row in _parse_unit(source, unit, bytes(payload), cfg, settings))
        rows.extend({**empty_row, S.SOURCE: source, S.UNITS_READ: n} for source, n in tally.items())
        yield pd.DataFrame(rows, columns=columns, dtype=object)


def _big_int(digits: str) -> int | float:
    """Beyond Python's int-from-text limit a number is kept as a float: it is never text anyway."""
    return int(digits) if len(digits) <= 4000 else float(digits)


_SALVAGE = json.JSONDecoder(parse_int=_big_int)


def _loads(text: str) -> Any:
    """json.loads; a 5,000-digit integer (over Python's digit limit) is no reason to lose the record."""
    try:
        return json.loads(text)
    except ValueError as exc:
        if "digit" not in str(exc):
            raise
        return json.loads(text, parse_int=_big_int)


def _array_prefix(text: str) -> tuple[list[Any], str]:
    """The complete elements at the start of a broken JSON array, and the text from the first broken one."""
    items: list[Any] = []
    at = text.index("[") + 1
    while True:
        at = _skip_space(text, at)
        if at < len(text) and text[at] == "]" and not items:
            return items, text[at + 1 :]
        try:
            item, end = _SALVAGE.raw_decode(text, at)
        except (ValueError, RecursionError):
            return items, text[at:]
        items.append(item)
        at = _skip_space(text, end)
        if at < len(text) and text[at] == ",":
            at += 1
        elif at < len(text) and text[at] == "]":
            return items, text[at + 1 :]
        else:
            return items, text[at:]


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at


def _parse_unit(
    source: str, unit: str, payload: bytes, cfg: InputConfig, settings: records.AdapterSettings
) -> Iterator[dict[str, Any]]:
    """One unit's rows; the first row of every record carries RECORD_START, so records can be counted."""
    for i, row in enumerate(_unit_rows(source, unit, payload, cfg, settings)):
        if unit == UNIT_LINE:
            row[S.RECORD_START] = i == 0
        yield row


def _unit_rows(
    source: str, unit: str, payload: bytes, cfg: InputConfig, settings: records.AdapterSettings
) -> Iterator[dict[str, Any]]:
    # a byte-order mark at the start of a file (or of a line) is not part of the JSON
    payload = payload.removeprefix(b"\xef\xbb\xbf")
    if unit == UNIT_LINE:
        payload = payload.removesuffix(b"\r")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        yield _start(_reject(source, v.invalid_text("record"), payload.decode("utf-8", "replace"), cfg))
        return
    if unit == UNIT_LINE:
        yield from _parse_json_record_text(source, text, cfg, settings)
        return
    try:
        document = _loads(text)
    except RecursionError:
        yield _start(_reject(source, v.TOO_DEEP_JSON, text, cfg))
        return
    except ValueError:
        yield from _parse_broken_document(source, text, cfg, settings)
        return
    if isinstance(document, list):
        for item in document:
            yield from _starting(_parse_record(source, item, cfg, settings))
    else:
        yield from _starting(_parse_record(source, document, cfg, settings))


def _parse_broken_document(
    source: str, text: str, cfg: InputConfig, settings: records.AdapterSettings
) -> Iterator[dict[str, Any]]:
    """A .json file that does not parse: a cut-off array, JSON Lines under a .json name, or garbage.

    A broken array keeps its complete records, and its broken tail becomes one row; JSON
    Lines are split on "\\n" only (U+2028 or U+0085 inside a string is no line break).
    """
    stripped = text.lstrip(" \t\r\n")
    if stripped.startswith("["):
        items, tail = _array_prefix(stripped)
        for item in items:
            yield from _starting(_parse_record(source, item, cfg, settings))
        if tail.strip(" \t\r\n"):
            yield _start(_reject(source, v.TRUNCATED_JSON_DOCUMENT, tail, cfg))
        return
    lines = [line for line in text.split("\n") if line.strip(_BLANK_TEXT)]
    if len(lines) > 1:
        for line in lines:
            yield from _starting(_parse_json_record_text(source, line.removesuffix("\r"), cfg, settings))
        return
    yield _start(_reject(source, v.UNPARSABLE_JSON, text, cfg))


_BLANK_TEXT = _BLANK_BYTES.decode()


def _start(row: dict[str, Any]) -> dict[str, Any]:
    row[S.RECORD_START] = True
    return row


def _starting(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for i, row in enumerate(rows):
        row[S.RECORD_START] = i == 0
        yield row


def _parse_json_record_text(
    source: str, text: str, cfg: InputConfig, settings: records.AdapterSettings
) -> Iterator[dict[str, Any]]:
    try:
        record = _loads(text)
    except RecursionError:
        yield _reject(source, v.TOO_DEEP_JSON, text, cfg)
        return
    except ValueError:
        yield _reject(source, v.UNPARSABLE_JSON, text, cfg)
        return
    yield from _parse_record(source, record, cfg, settings)


def _mark_not_text(record: dict[str, Any]) -> None:
    """Columns a Parquet row named as holding no text get values no text check accepts."""
    for name in record.pop(NOT_UTF8_KEY, None) or ():
        record[name] = NOT_UTF8_VALUE
    for name in record.pop(NON_FINITE_KEY, None) or ():
        record[name] = math.nan


def _parse_record(
    source: str, record: Any, cfg: InputConfig, settings: records.AdapterSettings
) -> Iterator[dict[str, Any]]:
    raw = None  # rendered lazily: only rejected rows carry their raw record
    if not isinstance(record, dict):
        yield _reject(source, v.NOT_AN_OBJECT, _render(record), cfg)
        return
    _mark_not_text(record)
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
    """The record's own language field, else (MIDB) a file name that is a language; never a guess.

    A field that names no language ("-", a note, a broken string) is no hint: detection decides.
    """
    given = record.get(cfg.columns.lang)
    if isinstance(given, str) and given.strip():
        code = language_code(given)
        if code != UNKNOWN:
            return code
    if fmt == "midb" and cfg.midb_lang_from_filename:
        return file_language(PurePosixPath(source).stem)
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
    except (TypeError, ValueError, RecursionError):
        return _writable(repr(record))


def _reject(source: str, reason: str, raw: str, cfg: InputConfig, record_format: str | None = None) -> dict[str, Any]:
    return {
        S.SOURCE: source,
        S.RECORD_FORMAT: record_format,
        S.QUARANTINE_REASON: reason,
        S.RAW_RECORD: _writable(raw[: cfg.raw_record_chars]),
    }
