"""Input files of any supported type -> one DataFrame of canonical samples + quarantine rows.

Every source is first reduced to raw bytes per unit (a JSONL line, a whole JSON file, a
Parquet/Arrow/Delta row rendered as JSON), and one Arrow-batched parser turns units into samples.
Plain files are cut by Spark's readers; compressed files, UTF-16/32 text and Arrow IPC files
by io/local_units.py, in Python tasks, into the same units (the table: io/file_types.py).
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from mdaq_spark import schema as S
from mdaq_spark.config import InputConfig
from mdaq_spark.errors import InputError
from mdaq_spark.io import file_types, inputs, local_units, records
from mdaq_spark.io import validate as v
from mdaq_spark.io.file_types import UNIT_FILE, UNIT_LINE
from mdaq_spark.io.local_units import BLANK_BYTES, NON_FINITE_KEY, NOT_UTF8_KEY, REJECTED
from mdaq_spark.langcodes import UNKNOWN, file_language, language_code

log = logging.getLogger(__name__)

_UNIT = "unit"
_PAYLOAD = "payload"
NOT_UTF8_VALUE = {"$binary": "not UTF-8"}

# a line of nothing but ASCII whitespace (tabs and form feeds included) holds no record
_BLANK_LINE = "^[ \\t\\u000B\\f\\r]*$"
_BLANK_BYTES = BLANK_BYTES
# tasks of the Python reader per core: a few, so one large file does not hold the others back
_PYTHON_TASKS_PER_CORE = 4


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
# (Hadoop's codecs decompress .gz and .bz2 text there)
_GLOBS = {
    "jsonl": "*.{jsonl,ndjson,JSONL,NDJSON,jsonl.gz,ndjson.gz,jsonl.bz2,ndjson.bz2}",
    "json": "*.{json,JSON}",
    "parquet": "*.{parquet,PARQUET}",
}
_UNITS_SCHEMA = T.StructType(
    [
        T.StructField(S.SOURCE, T.StringType()),
        T.StructField(_UNIT, T.StringType()),
        T.StructField(_PAYLOAD, T.BinaryType()),
    ]
)


def _decoded_path(path: Column) -> Column:
    """A reader's file URI as the file's name: `_metadata.file_path` %-encodes spaces and '%' (a '+' is a '+')."""
    return F.url_decode(F.regexp_replace(path, "\\+", "%2B"))


def _file_units(spark: SparkSession, files: list[str], file_type: str, spark_paths: list[str]) -> DataFrame:
    """(source, unit, payload bytes) for the files of one type; `source` is always the file itself."""
    python = [f for f in files if local_units.needs_python(f, file_type)]
    if python:
        frames = [_python_units(spark, python, file_type)]
        rest = [f for f in files if f not in set(python)]
        if rest:
            frames.append(_spark_units(spark, rest, file_type, rest))
        return functools.reduce(DataFrame.unionByName, frames)
    return _spark_units(spark, files, file_type, spark_paths)


def _python_units(spark: SparkSession, files: list[str], file_type: str) -> DataFrame:
    """The units of local files that Spark has no reader for, cut by io/local_units.py in Python tasks."""
    rows = [(f,) for f in files]
    tasks = min(len(rows), spark.sparkContext.defaultParallelism * _PYTHON_TASKS_PER_CORE)
    spread = spark.sparkContext.parallelize(rows, tasks)
    paths = spark.createDataFrame(spread, "path string")
    return paths.mapInPandas(functools.partial(_units_of_files, file_type=file_type), schema=_UNITS_SCHEMA)


def _units_of_files(batches: Iterator[pd.DataFrame], file_type: str) -> Iterator[pd.DataFrame]:
    for batch in batches:
        for path in batch["path"]:
            source = file_types.source_name(path)
            rows: list[tuple[str, str, bytes]] = []
            for unit, payload in local_units.file_units(path, file_type):
                rows.append((source, unit, payload))
                if len(rows) >= 1024:
                    yield pd.DataFrame(rows, columns=[S.SOURCE, _UNIT, _PAYLOAD])
                    rows = []
            if rows:
                yield pd.DataFrame(rows, columns=[S.SOURCE, _UNIT, _PAYLOAD])


def _spark_units(spark: SparkSession, files: list[str], file_type: str, spark_paths: list[str]) -> DataFrame:
    reader = spark.read
    if not files and file_type in _GLOBS:
        reader = reader.option("recursiveFileLookup", "true").option("pathGlobFilter", _GLOBS[file_type])
    if file_type == "jsonl":
        # "\n" only: a CR, U+0085 or U+2028 inside a record is not a record boundary
        df = reader.option("lineSep", "\n").text(spark_paths)
        return df.where(~F.col("value").rlike(_BLANK_LINE)).select(
            _decoded_path(F.col("_metadata.file_path")).alias(S.SOURCE),
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
        source = _decoded_path(F.col("_metadata.file_path"))
        frames = [_rows_as_json(reader.parquet(*group), source) for group in groups]
        return functools.reduce(DataFrame.unionByName, frames)
    if file_type == "delta":
        from mdaq_spark.io.delta import read_delta

        (path,) = spark_paths
        return _rows_as_json(read_delta(spark, path), F.lit(str(path)))
    raise InputError(f"unsupported file type: {file_type}")


def check_inputs(cfg: InputConfig) -> None:
    """Before Spark starts: every input path lists, and every local file can be opened as its type.

    Parquet footers and Arrow schemas are read, and a compressed file must start as its codec's
    streams do: a file that cannot be read at all is named here in one line (exit 3), not in a
    failed Spark task. A stream that breaks part-way is found while reading, and quarantined.
    """
    for path in cfg.paths:
        found = inputs.discover(path, cfg.file_type)
        if found.files.get("parquet"):
            parquet_schema_groups(found.files["parquet"])
        for f in found.files.get("arrow", []):
            local_units.arrow_schema(f)
        for f in inputs.local_files(found):
            file_types.check_header(f, file_types.compression_of(f))


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


def listed_sources(cfg: InputConfig) -> list[str]:
    """The `source` of every file the job reads by name (Delta tables and cluster folders are listed by Spark)."""
    found = [inputs.discover(path, cfg.file_type) for path in cfg.paths]
    return [file_types.source_name(f) for listing in found for f in inputs.local_files(listing)]


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

    The units are cut as the job cuts them (io/local_units.py: lines on "\\n" only, blank lines
    skipped, table rows rendered with the same text rules, compressed files decompressed) and
    go through the job's own parser, so a dry run reports the record formats and rejection
    reasons the job would produce, minutes before a cluster is asked for.
    """
    settings = records.AdapterSettings(columns=cfg.columns, max_field_chars=cfg.max_field_chars)
    if file_type == "parquet":
        parquet_schema_groups([str(path)])
    elif file_type == "arrow":
        local_units.arrow_schema(str(path))
    elif file_type not in ("json", "jsonl"):
        return []
    source = file_types.source_name(str(path))
    out: list[dict[str, Any]] = []
    for unit, payload in local_units.file_units(str(path), file_type):
        out.extend(_parse_unit(source, unit, payload, cfg, settings))
        if len(out) >= limit:
            break
    return out[:limit]


def preview_delta(path: str, cfg: InputConfig, limit: int) -> list[dict[str, Any]]:
    """The first rows of a Delta table's current version, through delta-rs and the job's parser (no Spark)."""
    from mdaq_spark.io.delta import delta_files

    settings = records.AdapterSettings(columns=cfg.columns, max_field_chars=cfg.max_field_chars)
    out: list[dict[str, Any]] = []
    for f in delta_files(path):
        for unit, payload in local_units.file_units(f.removeprefix("file://"), "parquet"):
            out.extend(_parse_unit(str(path), unit, payload, cfg, settings))
            if len(out) >= limit:
                return out[:limit]
    return out


# ---------------------------------------------------------------- parsing (runs on executors)


def _parse_batches(batches: Iterator[pd.DataFrame], cfg: InputConfig) -> Iterator[pd.DataFrame]:
    settings = records.AdapterSettings(columns=cfg.columns, max_field_chars=cfg.max_field_chars)
    columns = [f.name for f in S.parsed_schema(tuple(cfg.passthrough)).fields] + [S.RECORD_START, S.UNITS_READ]
    empty_row = dict.fromkeys(columns)
    for batch in batches:
        rows: list[dict[str, Any]] = []
        tally: Counter[str] = Counter()
        for source, unit, payload in zip(batch[S.SOURCE], batch[_UNIT], batch[_PAYLOAD], strict=True):
            if unit != UNIT_FILE:  # a line, a row, or a unit rejected whole: one record each
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


def _array_prefix(text: str) -> tuple[list[tuple[Any, str]], str]:
    """The complete elements at the start of a JSON array with their texts, and the text from the first broken one.

    The element texts are the raw records of rejected rows: what was read, not a re-rendering.
    """
    items: list[tuple[Any, str]] = []
    at = text.index("[") + 1
    while True:
        at = _skip_space(text, at)
        if at < len(text) and text[at] == "]" and not items:
            return items, text[at + 1 :]
        try:
            item, end = _SALVAGE.raw_decode(text, at)
        except (ValueError, RecursionError):
            return items, text[at:]
        items.append((item, text[at:end]))
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
        if unit != UNIT_FILE:
            row[S.RECORD_START] = i == 0
        yield row


class _ElementTexts:
    """The text of each element of a JSON array document, cut only when a rejected element needs its raw record."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.texts: list[str] | None = None

    def get(self, i: int) -> str | None:
        if self.texts is None:
            items, _ = _array_prefix(self.text.lstrip(" \t\r\n"))
            self.texts = [raw for _, raw in items]
        return self.texts[i] if i < len(self.texts) else None


def _unit_rows(
    source: str, unit: str, payload: bytes, cfg: InputConfig, settings: records.AdapterSettings
) -> Iterator[dict[str, Any]]:
    if unit.startswith(REJECTED):  # cut off whole by the file reader (io/local_units.py), with its reason
        yield _start(_reject(source, unit.removeprefix(REJECTED), payload.decode("utf-8", "backslashreplace"), cfg))
        return
    # a byte-order mark at the start of a file (or of a line) is not part of the JSON
    payload = payload.removeprefix(b"\xef\xbb\xbf")
    if unit == UNIT_LINE:
        payload = payload.removesuffix(b"\r")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        yield _start(_reject(source, v.invalid_text("record"), payload.decode("utf-8", "backslashreplace"), cfg))
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
        texts = _ElementTexts(text)
        for i, item in enumerate(document):
            yield from _starting(_parse_record(source, item, cfg, settings, functools.partial(texts.get, i)))
    else:
        yield from _starting(_parse_record(source, document, cfg, settings, lambda: text))


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
        for item, raw in items:
            yield from _starting(_parse_record(source, item, cfg, settings, functools.partial(str, raw)))
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
    yield from _parse_record(source, record, cfg, settings, lambda: text)


def _mark_not_text(record: dict[str, Any]) -> bool:
    """Columns a table row named as holding no text get values no text check accepts; True if there were any."""
    marked = False
    for name in record.pop(NOT_UTF8_KEY, None) or ():
        record[name] = NOT_UTF8_VALUE
        marked = True
    for name in record.pop(NON_FINITE_KEY, None) or ():
        record[name] = math.nan
        marked = True
    return marked


def _parse_record(
    source: str,
    record: Any,
    cfg: InputConfig,
    settings: records.AdapterSettings,
    raw_text: Callable[[], str | None] = lambda: None,
) -> Iterator[dict[str, Any]]:
    """The rows of one decoded record; a rejected row's raw record is `raw_text()`, the text that was read."""
    if not isinstance(record, dict):
        yield _reject(source, v.NOT_AN_OBJECT, _raw(raw_text, record), cfg)
        return
    not_text = _mark_not_text(record)
    try:
        fmt = cfg.record_format if cfg.record_format != "auto" else records.detect_format(record, cfg.columns)
        samples = records.ADAPTERS[fmt](record, settings)
    except v.RecordRejected as rejected:
        yield _reject(source, rejected.reason, _raw(raw_text, record, not_text), cfg)
        return
    hint = _lang_hint(record, source, fmt, cfg)
    passthrough = tuple(cfg.passthrough)
    extras = {name: _passthrough_value(record.get(name)) for name in passthrough}
    extra = records.extra_fields(record, fmt, cfg.columns, passthrough)
    for sample in samples:
        if isinstance(sample, v.RecordRejected):
            yield _reject(source, sample.reason, _raw(raw_text, record, not_text), cfg, record_format=fmt)
            continue
        yield {
            S.SAMPLE_ID: S.compute_sample_id(
                sample.instruction, sample.input, sample.response, sample.history, sample.system, sample.tools
            ),
            S.SOURCE: source,
            S.RECORD_FORMAT: fmt,
            S.VARIANT: sample.variant,
            S.INSTRUCTION: sample.instruction,
            S.INPUT: sample.input,
            S.RESPONSE: sample.response,
            S.HISTORY: sample.history,
            S.LANG_HINT: hint,
            S.SYSTEM: sample.system,
            S.TOOLS: _writable(sample.tools) if sample.tools is not None else None,
            S.PROMPT_TURN_FIELDS: _writable(sample.prompt_fields) if sample.prompt_fields else None,
            S.RESPONSE_TURN_FIELDS: _writable(sample.response_fields) if sample.response_fields else None,
            S.EXTRA: _writable(extra) if extra is not None else None,
            S.QUARANTINE_REASON: None,
            S.RAW_RECORD: None,
            **extras,
        }


def _raw(raw_text: Callable[[], str | None], record: Any, not_text: bool = False) -> str:
    """The text that was read for a record; re-rendered only where none is at hand, or where a table row named
    columns holding no text (its read text spells them with the reader's internal keys)."""
    text = None if not_text else raw_text()
    return text if text is not None else _render(record)


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
        return file_language(file_types.base_name(source))
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
