"""Trainer-ready exports of selected/: Alpaca, ShareGPT and OpenAI-messages JSON Lines, or Parquet for `datasets`.

selected/ stores a conversation as its first exchange (instruction, input, response) plus every
other turn in `history` (io/records.py). A trainer wants the whole conversation, so the record
shapes here put the first exchange back where the reader took it from: after the leading system
turns (and any assistant greeting), with the tool turns that came between the question and its
answer kept between them. The reader keeps no positions, so two layouts it stores alike come
back in the usual one: a second user turn straight after the first is restored after the answer.

Files are written by Python on the driver, one language at a time, streamed from a sorted
read (quality rank, then sample_id): the same run always gives byte-identical files, and only
one shard of rows is held in memory at once.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import math
import re
from collections.abc import Iterable, Iterator
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.config import EXPORT_FORMATS, ExportConfig
from mdaq_spark.errors import InputError
from mdaq_spark.io import validate as v
from mdaq_spark.io.records import ASSISTANT_ROLES, USER_ROLES
from mdaq_spark.rundir import HadoopFiles, LocalFiles, RunDir, is_local

log = logging.getLogger(__name__)

FORMATS = EXPORT_FORMATS
METADATA_KEY = "mdaq"  # the one key an export's own pipeline fields live under (--with-metadata)
METADATA_COLUMNS = (S.SAMPLE_ID, S.LANG, S.QSM_SCORE, S.CLUSTER_ID, S.SELECTION_REASON)
# each exchange's score in turn order and the weakest one's turn (absent from a selection made before them)
TURN_METADATA = (S.TURN_SCORES, S.WEAKEST_TURN)
CONTENT_COLUMNS = (S.INSTRUCTION, S.INPUT, S.RESPONSE, S.HISTORY)
SYSTEM_ROLES = frozenset({"system", "developer"})
TOOL_KEYS = ("tool_calls", "tool_call_id", "name")
CARD_FILE = "README.md"
# <lang>-<shard>-of-<shards>.<ext>: the only files an export folder holds (besides the Parquet card)
_FILE_NAME = re.compile(r"^[A-Za-z0-9_]+-\d{5}-of-\d{5}\.(jsonl|parquet)$")
_EXTENSION = {"alpaca": "jsonl", "sharegpt": "jsonl", "openai": "jsonl", "parquet": "parquet"}
# role names of each conversational shape; roles outside the two families (system, tool, ...) are kept as written
_ROLE_NAMES = {"sharegpt": ("human", "gpt"), "openai": ("user", "assistant"), "parquet": ("user", "assistant")}


# ---------------------------------------------------------------------- record shapes (plain Python)


def _has_text(turn: dict) -> bool:
    return not v.is_blank(turn.get("content") or "")


def _is_greeting(turn: dict) -> bool:
    return turn["role"] in ASSISTANT_ROLES and _has_text(turn) and not any(k in turn for k in TOOL_KEYS)


def conversation(instruction: str, input_text: str, response: str, history: str | None) -> list[dict]:
    """Every turn of a sample, in order, with roles "user"/"assistant" for the first exchange.

    The reader took the first user turn with text and the first assistant turn with text after
    it; everything else went to history unchanged. So every history turn before the first user
    turn with text preceded the question, except a run of tool turns with no answer text in it,
    which came between the question and its answer.
    """
    turns = json.loads(history) if history else []
    prompt = f"{instruction}\n{input_text}" if input_text else instruction
    until = next((i for i, t in enumerate(turns) if t["role"] in USER_ROLES and _has_text(t)), len(turns))
    before = 0
    while before < until and (turns[before]["role"] in SYSTEM_ROLES or _is_greeting(turns[before])):
        before += 1
    between = turns[before:until]
    # an answer with text among them means the answer came first and those turns followed it
    reply_at = before if any(t["role"] in ASSISTANT_ROLES and _has_text(t) for t in between) else until
    return [
        *turns[:before],
        {"role": "user", "content": prompt},
        *turns[before:reply_at],
        {"role": "assistant", "content": response},
        *turns[reply_at:],
    ]


def _role(role: str, file_format: str) -> str:
    user, assistant = _ROLE_NAMES[file_format]
    return user if role in USER_ROLES else assistant if role in ASSISTANT_ROLES else role


def _tools(turn: dict) -> dict:
    return {k: turn[k] for k in sorted(turn) if k in TOOL_KEYS}


def alpaca_record(instruction: str, input_text: str, response: str, history: str | None) -> dict:
    """Alpaca: one exchange; a multi-turn sample ends with its last exchange, earlier ones in `history` pairs.

    That is the layout Alpaca-style trainers read (`system`, `history` of [user, assistant],
    then the current `instruction`/`output`). Tool turns have no place in it: use sharegpt or
    openai for conversations that call tools.
    """
    if not history or history == "[]":
        return {"instruction": instruction, "input": input_text, "output": response}
    turns = conversation(instruction, input_text, response, history)
    system = "\n".join(t["content"] for t in turns if t["role"] in SYSTEM_ROLES and _has_text(t))
    pairs: list[list[str]] = []
    pending: str | None = None
    for turn in turns:
        if turn["role"] in USER_ROLES and _has_text(turn):
            pending = turn["content"] if pending is None else f"{pending}\n{turn['content']}"
        elif turn["role"] in ASSISTANT_ROLES and _has_text(turn) and pending is not None:
            pairs.append([pending, turn["content"]])
            pending = None
    out: dict[str, Any] = {"instruction": pairs[-1][0], "input": "", "output": pairs[-1][1]}
    if system:
        out["system"] = system
    if len(pairs) > 1:
        out["history"] = pairs[:-1]
    return out


def sharegpt_record(instruction: str, input_text: str, response: str, history: str | None) -> dict:
    turns = conversation(instruction, input_text, response, history)
    return {
        "conversations": [
            {"from": _role(t["role"], "sharegpt"), "value": t.get("content") or "", **_tools(t)} for t in turns
        ]
    }


def openai_record(instruction: str, input_text: str, response: str, history: str | None) -> dict:
    """OpenAI messages, system turns included; an assistant turn that only calls tools has content null."""
    turns = conversation(instruction, input_text, response, history)
    messages = []
    for t in turns:
        content = t.get("content")
        if content == "" and "tool_calls" in t:
            content = None
        messages.append({"role": _role(t["role"], "openai"), "content": content, **_tools(t)})
    return {"messages": messages}


def parquet_record(instruction: str, input_text: str, response: str, history: str | None) -> dict:
    """`messages` as a typed column: role and content, tool calls as their JSON text (null when none)."""
    messages = []
    for t in openai_record(instruction, input_text, response, history)["messages"]:
        calls = t.get("tool_calls")
        messages.append(
            {
                "role": t["role"],
                "content": t["content"],
                "tool_calls": None if calls is None else json.dumps(calls, ensure_ascii=False, sort_keys=True),
                "tool_call_id": t.get("tool_call_id"),
                "name": t.get("name"),
            }
        )
    return {"messages": messages}


SHAPES = {"alpaca": alpaca_record, "sharegpt": sharegpt_record, "openai": openai_record, "parquet": parquet_record}


def metadata(row: dict) -> dict:
    return {
        S.SAMPLE_ID: row[S.SAMPLE_ID],
        S.LANG: row[S.LANG],
        S.QSM_SCORE: row[S.QSM_SCORE],
        S.CLUSTER_ID: row[S.CLUSTER_ID],
        S.SELECTION_REASON: row[S.SELECTION_REASON],
        **{c: row[c] for c in TURN_METADATA if c in row},
    }


def record(file_format: str, row: dict, with_metadata: bool = False) -> dict:
    """One selected row in `file_format`'s record shape; pipeline fields only under METADATA_KEY."""
    out = SHAPES[file_format](*(row[c] for c in CONTENT_COLUMNS))
    if with_metadata:
        out[METADATA_KEY] = metadata(row)
    return out


# ---------------------------------------------------------------------- files


def _parquet_schema(with_metadata: bool):
    import pyarrow as pa

    message = pa.struct([(name, pa.string()) for name in ("role", "content", "tool_calls", "tool_call_id", "name")])
    fields = [("messages", pa.list_(message))]
    if with_metadata:
        fields.append(
            (
                METADATA_KEY,
                pa.struct(
                    [
                        (S.SAMPLE_ID, pa.string()),
                        (S.LANG, pa.string()),
                        (S.QSM_SCORE, pa.float64()),
                        (S.CLUSTER_ID, pa.int64()),
                        (S.SELECTION_REASON, pa.string()),
                        (S.TURN_SCORES, pa.list_(pa.float64())),
                        (S.WEAKEST_TURN, pa.int32()),
                    ]
                ),
            )
        )
    return pa.schema(fields)


def encode_file(file_format: str, records: list[dict], with_metadata: bool) -> bytes:
    """One file's bytes: JSON Lines (UTF-8, keys in shape order), or Parquet with a fixed schema."""
    if file_format != "parquet":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(records, schema=_parquet_schema(with_metadata))
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def file_name(lang: str, shard: int, shards: int, file_format: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_]+", "_", lang or "und")
    return f"{safe}-{shard:05d}-of-{shards:05d}.{_EXTENSION[file_format]}"


def _chunks(rows: Iterable, size: int | None) -> Iterator[list]:
    chunk: list = []
    for row in rows:
        chunk.append(row)
        if size is not None and len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _check_replaceable(files, target: str) -> None:
    """Only an earlier export is replaced: a folder of anything else is the user's, and stays."""
    names = files.list_names(target)
    if names is None:
        return
    foreign = [n for n in names if n != CARD_FILE and not _FILE_NAME.match(n)]
    if foreign:
        shown = ", ".join(foreign[:3])
        raise InputError(f"{target} holds files that are no mdaq export ({shown}): choose another path")


def export_selection(
    spark: SparkSession,
    rundir: RunDir,
    spec: ExportConfig,
    stats: dict,
    *,
    command: str | None = None,
) -> dict:
    """Write `spec`'s export of the run's selected/; returns where, how many files and rows per language."""
    from mdaq_spark.io import dataset_card

    target = (spec.path or rundir.export_path(spec.format)).rstrip("/")
    files = LocalFiles() if is_local(target) else HadoopFiles(spark)
    _check_replaceable(files, target)
    file_format = stats.get("config", {}).get("output", {}).get("format", "parquet")
    selected = rundir.selected_table(file_format)
    turns = [c for c in TURN_METADATA if c in selected.columns]
    selected = selected.select(*METADATA_COLUMNS, *turns, S.QUALITY_RANK, *CONTENT_COLUMNS)
    counts = {r[S.LANG]: r["count"] for r in selected.groupBy(S.LANG).count().orderBy(S.LANG).collect()}
    staging = f"{target}.tmp-export"
    files.delete_tree(staging)
    files.mkdirs(staging)
    written: dict[str, list[str]] = {}
    # one sort of the whole selection, streamed to the driver a partition at a time: a sort
    # per language cost a few Spark jobs per language and partition, most of a small export
    ordered = selected.orderBy(F.col(S.LANG).asc(), F.col(S.QUALITY_RANK).asc(), F.col(S.SAMPLE_ID).asc())
    for lang, rows in itertools.groupby(ordered.toLocalIterator(), key=lambda row: row[S.LANG]):
        shards = math.ceil(counts[lang] / spec.max_rows_per_file) if spec.max_rows_per_file else 1
        for shard, chunk in enumerate(_chunks(rows, spec.max_rows_per_file)):
            name = file_name(lang, shard, shards, spec.format)
            records = [record(spec.format, row.asDict(), spec.with_metadata) for row in chunk]
            files.write_bytes(f"{staging}/{name}", encode_file(spec.format, records, spec.with_metadata))
            written.setdefault(lang, []).append(name)
    if spec.format == "parquet":
        card = dataset_card.render(stats, counts, written, spec, command=command)
        files.write_bytes(f"{staging}/{CARD_FILE}", card.encode("utf-8"))
    files.delete_tree(target)
    files.rename(staging, target)
    log.info("exported %d rows as %s to %s", sum(counts.values()), spec.format, target)
    return {
        "format": spec.format,
        "path": target,
        "files": sum(len(names) for names in written.values()),
        "rows_per_language": counts,
    }


def export_all(spark: SparkSession, rundir: RunDir, specs: Iterable[ExportConfig], stats: dict) -> list[dict]:
    """The exports a config lists (output.export), in order."""
    return [export_selection(spark, rundir, spec, stats) for spec in specs]
