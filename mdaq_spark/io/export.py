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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.config import EXPORT_FORMATS, ExportConfig, scorer_names
from mdaq_spark.errors import InputError
from mdaq_spark.io import validate as v
from mdaq_spark.io.export_schema import DATA_DIR, METADATA_KEY, TURN_KEYS, export_schema
from mdaq_spark.io.records import ASSISTANT_ROLES, SYSTEM_ROLES, USER_ROLES, role_family
from mdaq_spark.io.turn_keys import exported_value, selection_turn_keys
from mdaq_spark.rundir import HadoopFiles, LocalFiles, RunDir, is_local

if TYPE_CHECKING:
    from mdaq_spark.report.run_stats import RunStats

log = logging.getLogger(__name__)

FORMATS = EXPORT_FORMATS
METADATA_COLUMNS = (S.SAMPLE_ID, S.LANG, S.QSM_SCORE, S.CLUSTER_ID, S.SELECTION_REASON)
CONTENT_COLUMNS = (S.INSTRUCTION, S.INPUT, S.RESPONSE, S.HISTORY)
# kept by the reader since the record's every field reaches selected/; a run from before has none of them
OPTIONAL_COLUMNS = (
    S.SYSTEM,
    S.TOOLS,
    S.PROMPT_TURN_FIELDS,
    S.RESPONSE_TURN_FIELDS,
    S.EXTRA,
    S.TURN_SCORES,
    S.WEAKEST_TURN,
    S.SCORER_SCORES,
)
# metadata a selection from an older run may lack (null there)
OPTIONAL_METADATA = (S.TURN_SCORES, S.WEAKEST_TURN, S.EXTRA, S.SCORER_SCORES)
TOOL_KEYS = tuple(key for key, _ in TURN_KEYS)  # tool_calls, tool_call_id, name
_TOOL_CALL_KEYS = frozenset({"id", "type", "function"})
_FUNCTION_KEYS = frozenset({"name", "arguments"})
CARD_FILE = "README.md"
# <lang>-<shard>-of-<shards>.<ext>: the only files an export's data folder holds
_FILE_NAME = re.compile(r"^[A-Za-z0-9_]+-\d{5}-of-\d{5}\.(jsonl|parquet)$")
_EXTENSION = {"alpaca": "jsonl", "sharegpt": "jsonl", "openai": "jsonl", "parquet": "parquet"}
# role names of each conversational shape; roles outside the two families (system, tool, ...) are kept as written
_ROLE_NAMES = {"sharegpt": ("human", "gpt"), "openai": ("user", "assistant")}


# ---------------------------------------------------------------------- record shapes (plain Python)


@dataclass(frozen=True)
class Content:
    """What selected/ keeps of one sample's conversation (the optional fields are absent from older runs)."""

    instruction: str
    input: str
    response: str
    history: str | None = None
    system: str = ""  # the record's top-level system prompt
    tools: str | None = None  # top-level tool definitions, JSON text
    prompt_fields: str | None = None  # JSON object: the first user turn's keys beyond role and text
    response_fields: str | None = None  # the same of the first answer
    where: str = ""  # the sample and its source file, for an error message

    @classmethod
    def of(cls, row: dict) -> Content:
        return cls(
            instruction=row[S.INSTRUCTION],
            input=row[S.INPUT],
            response=row[S.RESPONSE],
            history=row[S.HISTORY],
            system=row.get(S.SYSTEM) or "",
            tools=row.get(S.TOOLS),
            prompt_fields=row.get(S.PROMPT_TURN_FIELDS),
            response_fields=row.get(S.RESPONSE_TURN_FIELDS),
            where=f"sample {row.get(S.SAMPLE_ID)} of {row.get(S.SOURCE)}",
        )


def _has_text(turn: dict) -> bool:
    return not v.is_blank(turn.get("content") or "")


def _is_greeting(turn: dict) -> bool:
    return turn["role"] in ASSISTANT_ROLES and _has_text(turn) and not any(k in turn for k in TOOL_KEYS)


def _own_keys(fields: str | None) -> dict:
    """A first-exchange turn's own keys (a `name`, a `weight`), as the reader kept them beside its text."""
    kept = json.loads(fields) if fields else {}
    return {k: value for k, value in kept.items() if value is not None}


def conversation(c: Content) -> list[dict]:
    """Every turn of a sample, in order, with roles "user"/"assistant" for the first exchange.

    The reader took the first user turn with text and the first assistant turn with text after
    it; everything else went to history unchanged. So every history turn before the first user
    turn with text preceded the question, except a run of tool turns with no answer text in it,
    which came between the question and its answer.
    """
    turns = json.loads(c.history) if c.history else []
    prompt = f"{c.instruction}\n{c.input}" if c.input else c.instruction
    until = next((i for i, t in enumerate(turns) if t["role"] in USER_ROLES and _has_text(t)), len(turns))
    before = 0
    while before < until and (turns[before]["role"] in SYSTEM_ROLES or _is_greeting(turns[before])):
        before += 1
    between = turns[before:until]
    # an answer with text among them means the answer came first and those turns followed it
    reply_at = before if any(t["role"] in ASSISTANT_ROLES and _has_text(t) for t in between) else until
    return [
        *turns[:before],
        {"role": "user", "content": prompt, **_own_keys(c.prompt_fields)},
        *turns[before:reply_at],
        {"role": "assistant", "content": c.response, **_own_keys(c.response_fields)},
        *turns[reply_at:],
    ]


def _role(role: str, file_format: str) -> str:
    names = dict(zip(("user", "assistant"), _ROLE_NAMES[file_format], strict=True))
    return names.get(role_family(role), role)


def _arguments(value: Any) -> str | None:
    return value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def tool_calls(calls: Any, where: str) -> list[dict] | None:
    """Tool calls in the OpenAI shape every format shares: id, type, function {name, arguments as JSON text}.

    Arguments given as a JSON object are written as its text, the form OpenAI sends; a call with
    keys outside the shape cannot be written without losing them, so the export stops naming it.
    """
    if calls is None:
        return None
    shaped = isinstance(calls, list) and all(
        isinstance(c, dict)
        and set(c) <= _TOOL_CALL_KEYS
        and (c.get("function") is None or isinstance(c["function"], dict) and set(c["function"]) <= _FUNCTION_KEYS)
        for c in calls
    )
    if not shaped:
        raise InputError(
            f"{where}: tool calls outside the OpenAI shape (id, type, function with name and arguments) "
            "cannot be exported without losing fields: fix them in the input"
        )
    out = []
    for c in calls:
        function = c.get("function") or {}
        out.append(
            {
                "id": c.get("id"),
                "type": c.get("type"),
                "function": {"name": function.get("name"), "arguments": _arguments(function.get("arguments"))},
            }
        )
    return out


def _turn_keys(turn: dict, where: str, turn_keys: dict[str, str]) -> dict:
    """Every turn carries the same keys, null where the turn had none: a folder of them has one set of columns.

    `turn_keys`: the selection's other turn keys and their kinds (io/turn_keys.py), each
    written with its column's type.
    """
    return {
        "tool_calls": tool_calls(turn.get("tool_calls"), where),
        "tool_call_id": turn.get("tool_call_id"),
        "name": turn.get("name"),
        **{key: exported_value(turn.get(key), kind) for key, kind in turn_keys.items()},
    }


def alpaca_record(c: Content, turn_keys: dict[str, str] | None = None) -> dict:
    """Alpaca: one exchange; a multi-turn sample ends with its last exchange, earlier ones in `history` pairs.

    That is the layout Alpaca-style trainers read (`system`, `history` of [user, assistant],
    then the current `instruction`/`output`); every record has every key, empty where the sample
    has nothing for it. Tool turns and turn keys have no place in it: use sharegpt or openai
    for conversations that call tools or mark turns (export_selection says what was left out).
    """
    if not c.history or c.history == "[]":
        return {
            "instruction": c.instruction,
            "input": c.input,
            "output": c.response,
            "system": c.system,
            "history": [],
            "tools": c.tools,
        }
    turns = conversation(c)
    systems = [c.system] if c.system else []
    systems += [t["content"] for t in turns if t["role"] in SYSTEM_ROLES and _has_text(t)]
    pairs: list[list[str]] = []
    pending: str | None = None
    for turn in turns:
        if turn["role"] in USER_ROLES and _has_text(turn):
            pending = turn["content"] if pending is None else f"{pending}\n{turn['content']}"
        elif turn["role"] in ASSISTANT_ROLES and _has_text(turn) and pending is not None:
            pairs.append([pending, turn["content"]])
            pending = None
    return {
        "instruction": pairs[-1][0],
        "input": "",
        "output": pairs[-1][1],
        "system": "\n".join(systems),
        "history": pairs[:-1],
        "tools": c.tools,
    }


def sharegpt_record(c: Content, turn_keys: dict[str, str] | None = None) -> dict:
    """ShareGPT as LLaMA-Factory reads it: `conversations`, the record's `system` prompt and `tools` beside them."""
    keys = turn_keys or {}
    return {
        "conversations": [
            {"from": _role(t["role"], "sharegpt"), "value": t.get("content") or "", **_turn_keys(t, c.where, keys)}
            for t in conversation(c)
        ],
        "system": c.system,
        "tools": c.tools,
    }


def openai_record(c: Content, turn_keys: dict[str, str] | None = None) -> dict:
    """OpenAI messages, system turns included; an assistant turn that only calls tools has content null.

    A top-level system prompt (a ShareGPT record's `system`) becomes the first message.
    """
    keys = turn_keys or {}
    turns = conversation(c)
    if c.system:
        turns.insert(0, {"role": "system", "content": c.system})
    messages = []
    for t in turns:
        content = t.get("content")
        if content == "" and t.get("tool_calls") is not None:
            content = None
        messages.append({"role": _role(t["role"], "openai"), "content": content, **_turn_keys(t, c.where, keys)})
    return {"messages": messages, "tools": c.tools}


SHAPES = {"alpaca": alpaca_record, "sharegpt": sharegpt_record, "openai": openai_record, "parquet": openai_record}


def metadata(row: dict) -> dict:
    return {
        S.SAMPLE_ID: row[S.SAMPLE_ID],
        S.LANG: row[S.LANG],
        S.QSM_SCORE: row[S.QSM_SCORE],
        S.CLUSTER_ID: row[S.CLUSTER_ID],
        S.SELECTION_REASON: row[S.SELECTION_REASON],
        # a selection written before exchanges were scored has no turn scores: null, the key still there
        **{c: row.get(c) for c in OPTIONAL_METADATA},
    }


def record(file_format: str, row: dict, with_metadata: bool = False, turn_keys: dict[str, str] | None = None) -> dict:
    """One selected row in `file_format`'s record shape; pipeline fields only under METADATA_KEY."""
    out = SHAPES[file_format](Content.of(row), turn_keys)
    if with_metadata:
        out[METADATA_KEY] = metadata(row)
    return out


# ---------------------------------------------------------------------- files


def encode_file(
    file_format: str,
    records: list[dict],
    with_metadata: bool,
    turn_keys: dict[str, str] | None = None,
    scorers: tuple[str, ...] = ("qsm",),
) -> bytes:
    """One file's bytes: JSON Lines (UTF-8, keys in schema order), or Parquet with the format's schema."""
    import pyarrow as pa

    # through the schema either way: a record that does not fit fails here, not in a trainer's loader
    schema = export_schema(file_format, with_metadata, turn_keys, scorers)
    _check_keys(records, schema)
    table = pa.Table.from_pylist(records, schema=schema)
    if file_format != "parquet":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def _check_keys(records: list[dict], schema) -> None:
    """Arrow leaves out a key its schema lacks without a word: a record or turn key outside it is a bug here."""
    import pyarrow as pa

    turns = {
        f.name: {t.name for t in f.type.value_type}
        for f in schema
        if pa.types.is_list(f.type) and pa.types.is_struct(f.type.value_type)
    }
    for r in records:
        unknown = set(r) - set(schema.names)
        unknown |= {k for name, keys in turns.items() for t in r.get(name) or [] for k in t if k not in keys}
        if unknown:
            raise ValueError(f"export record keys outside the format's schema: {sorted(unknown)}")


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
    # data files beside the card: an export from before the data/ folder
    foreign = [n for n in names if n not in (CARD_FILE, DATA_DIR) and not _FILE_NAME.match(n)]
    if DATA_DIR in names:
        foreign += [
            f"{DATA_DIR}/{n}" for n in files.list_names(f"{target}/{DATA_DIR}") or [] if not _FILE_NAME.match(n)
        ]
    if foreign:
        shown = ", ".join(foreign[:3])
        raise InputError(f"{target} holds files that are no mdaq export ({shown}): choose another path")


def _format_turn_keys(file_format: str, found: dict[str, str], target: str) -> tuple[dict[str, str], list[str]]:
    """(the turn keys `file_format`'s turns carry, the keys it has no place for).

    Alpaca keeps no turns, so its turn keys are left out (and said so, in the card and the
    log). A turn key never holds role or text under OpenAI's names (io/turn_keys.py FIXED),
    but one named like ShareGPT's (`from`, `value`, kept by older runs) cannot sit beside them.
    """
    if file_format == "alpaca":
        if found:
            log.warning(
                "%s: alpaca has no turns to hold the turn keys %s: export as sharegpt or openai", target, found
            )
        return {}, sorted(found)
    clash = [k for k in found if k in ("from", "value")] if file_format == "sharegpt" else []
    if clash:
        raise InputError(
            f"{target}: the selection's turns carry {clash[0]!r}, a key of the {file_format} format's own turns: "
            "export as another format"
        )
    return found, []


@dataclass(frozen=True)
class Selection:
    """What every export of one run reads: selected/'s exported columns, rows per language, turn keys.

    Read once for all of a run's exports (two Spark passes), not once per format.
    """

    rows: DataFrame
    counts: dict[str, int]
    turn_keys: dict[str, str]  # key -> kind over every turn (io/turn_keys.py)


def read_selection(rundir: RunDir, stats: RunStats) -> Selection:
    table = rundir.selected_table(stats.config.output.format)
    optional = [c for c in OPTIONAL_COLUMNS if c in table.columns]
    selected = table.select(*METADATA_COLUMNS, S.SOURCE, S.QUALITY_RANK, *CONTENT_COLUMNS, *optional)
    counts = {r[S.LANG]: r["count"] for r in selected.groupBy(S.LANG).count().orderBy(S.LANG).collect()}
    return Selection(selected, counts, selection_turn_keys(selected))


def export_selection(
    spark: SparkSession,
    rundir: RunDir,
    spec: ExportConfig,
    stats: RunStats,
    *,
    command: str | None = None,
    license_id: str | None = None,
    selection: Selection | None = None,
) -> dict:
    """Write `spec`'s export of the run's selected/; returns where, how many files and rows per language.

    `license_id` overrides the run's output.license on the card; `selection`: read_selection's,
    when several exports share it.
    """
    from mdaq_spark.io import dataset_card

    target = (spec.path or rundir.export_path(spec.format)).rstrip("/")
    files = LocalFiles() if is_local(target) else HadoopFiles(spark)
    _check_replaceable(files, target)
    selection = selection or read_selection(rundir, stats)
    selected, counts = selection.rows, selection.counts
    turn_keys, left_out = _format_turn_keys(spec.format, selection.turn_keys, target)
    scorers = tuple(scorer_names(stats.config.scoring.scorers))
    staging = f"{target}.tmp-export"
    files.delete_tree(staging)
    files.mkdirs(f"{staging}/{DATA_DIR}")
    written: dict[str, list[str]] = {}
    # one sort of the whole selection, streamed to the driver a partition at a time: a sort
    # per language cost a few Spark jobs per language and partition, most of a small export
    ordered = selected.orderBy(F.col(S.LANG).asc(), F.col(S.QUALITY_RANK).asc(), F.col(S.SAMPLE_ID).asc())
    for lang, rows in itertools.groupby(ordered.toLocalIterator(), key=lambda row: row[S.LANG]):
        shards = math.ceil(counts[lang] / spec.max_rows_per_file) if spec.max_rows_per_file else 1
        for shard, chunk in enumerate(_chunks(rows, spec.max_rows_per_file)):
            name = file_name(lang, shard, shards, spec.format)
            records = [record(spec.format, row.asDict(), spec.with_metadata, turn_keys) for row in chunk]
            data = encode_file(spec.format, records, spec.with_metadata, turn_keys, scorers)
            files.write_bytes(f"{staging}/{DATA_DIR}/{name}", data)
            written.setdefault(lang, []).append(name)
    card = dataset_card.render(
        stats,
        counts,
        written,
        spec,
        command=command,
        license_id=license_id,
        turn_keys=turn_keys,
        left_out=left_out,
        scorers=scorers,
    )
    files.write_bytes(f"{staging}/{CARD_FILE}", card.encode("utf-8"))
    files.delete_tree(target)
    files.rename(staging, target)
    log.info("exported %d rows as %s to %s", sum(counts.values()), spec.format, target)
    return {
        "format": spec.format,
        "path": target,
        "files": sum(len(names) for names in written.values()),
        "rows_per_language": counts,
        "turn_keys": turn_keys,
        "turn_keys_not_written": left_out,
    }


def export_all(spark: SparkSession, rundir: RunDir, specs: Iterable[ExportConfig], stats: RunStats) -> list[dict]:
    """The exports a config lists (output.export), in order, from one read of the selection."""
    specs = list(specs)
    selection = read_selection(rundir, stats) if specs else None
    return [export_selection(spark, rundir, spec, stats, selection=selection) for spec in specs]
