"""Record shapes (Alpaca, ShareGPT, OpenAI messages, MIDB) mapped to canonical samples.

Plain Python on one decoded JSON record, so every shape is testable without Spark; the
reader runs these inside a pandas UDF. An adapter returns samples or raises RecordRejected
with the reason the row goes to quarantine.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mdaq_spark.config import ColumnsConfig
from mdaq_spark.io import validate as v

USER_ROLES = frozenset({"human", "user"})
ASSISTANT_ROLES = frozenset({"gpt", "assistant", "bot", "model", "chatgpt"})

MIDB_VARIANTS = ("raw", "revised")
_MIDB_FIELDS = {"instruction": "Instruction", "input": "Input", "response": "Response"}


@dataclass(frozen=True)
class Sample:
    instruction: str
    input: str
    response: str
    history: str = "[]"
    variant: str | None = None


@dataclass(frozen=True)
class AdapterSettings:
    columns: ColumnsConfig
    max_field_chars: int


def alpaca(record: dict[str, Any], s: AdapterSettings) -> list[Sample]:
    c = s.columns
    return [
        Sample(
            instruction=v.required_text(record, c.instruction, "instruction", s.max_field_chars),
            input=v.optional_text(record, c.input, "input", s.max_field_chars),
            response=v.required_text(record, c.response, "response", s.max_field_chars),
        )
    ]


# OpenAI content parts that carry text; other parts (image_url, input_audio, file) are not instruction text
TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
# keys of a turn kept in history besides role and content: an assistant's tool calls and the tool's reply
_TOOL_KEYS = ("tool_calls", "tool_call_id", "name")


def _part_text(content: list, field: str) -> str:
    """The text parts of an OpenAI content list, joined by newlines; a part that is no object is malformed."""
    texts = []
    for part in content:
        if not isinstance(part, dict):
            raise v.RecordRejected(v.malformed_part(field))
        if part.get("type", "text") in TEXT_PARTS:
            if not isinstance(part.get("text"), str):
                raise v.RecordRejected(v.malformed_part(field))
            texts.append(part["text"])
    return "\n".join(texts)


def _turns(value: Any, role_key: str, text_key: str, field: str, s: AdapterSettings) -> list[tuple[str, str, dict]]:
    """(role, text, tool keys) per turn. A null content (an assistant turn that only calls tools) is empty text."""
    if value is None:
        raise v.RecordRejected(v.missing(field))
    if not isinstance(value, list):
        raise v.RecordRejected(v.wrong_type(field))
    turns = []
    for turn in value:
        if not isinstance(turn, dict) or not isinstance(turn.get(role_key), str):
            raise v.RecordRejected(v.wrong_type(field))
        text = turn.get(text_key)
        if text is None:
            text = ""
        elif isinstance(text, list):
            text = _part_text(text, field)
        tools = {key: turn[key] for key in _TOOL_KEYS if turn.get(key) is not None}
        turns.append((turn[role_key].lower(), v.checked_text(text, field, s.max_field_chars, allow_empty=True), tools))
    return turns


def _first_exchange(turns: list[tuple[str, str, dict]], field: str) -> Sample:
    """First user turn with text + first assistant turn with text after it; every other turn is history.

    Tool calls and tool results stay in history with their turn, so a conversation that used
    tools keeps its context.
    """
    user_at = next((i for i, (role, text, _) in enumerate(turns) if role in USER_ROLES and not v.is_blank(text)), None)
    if user_at is None:
        raise v.RecordRejected(v.NO_USER_TURN)
    reply_at = next(
        (i for i in range(user_at + 1, len(turns)) if turns[i][0] in ASSISTANT_ROLES and not v.is_blank(turns[i][1])),
        None,
    )
    if reply_at is None:
        raise v.RecordRejected(v.NO_ASSISTANT_TURN)
    history = [
        {"role": role, "content": text, **tools}
        for i, (role, text, tools) in enumerate(turns)
        if i not in (user_at, reply_at)
    ]
    rendered = json.dumps(history, ensure_ascii=False, sort_keys=True)
    if any(tools for _, _, tools in turns) and v.undecodable(rendered):
        raise v.RecordRejected(v.invalid_text(field))
    return Sample(instruction=turns[user_at][1], input="", response=turns[reply_at][1], history=rendered)


def sharegpt(record: dict[str, Any], s: AdapterSettings) -> list[Sample]:
    return [
        _first_exchange(
            _turns(record.get(s.columns.conversations), "from", "value", "conversations", s), "conversations"
        )
    ]


def openai(record: dict[str, Any], s: AdapterSettings) -> list[Sample]:
    return [_first_exchange(_turns(record.get(s.columns.messages), "role", "content", "messages", s), "messages")]


def midb(record: dict[str, Any], s: AdapterSettings) -> list[Sample | v.RecordRejected]:
    """One MIDB record is two samples: the machine translation and its expert revision.

    Each half is validated on its own, so a record with a broken revision still yields its
    raw sample (and a quarantine row for the other half).
    """
    out: list[Sample | v.RecordRejected] = []
    for variant in MIDB_VARIANTS:
        prefix = variant.capitalize()
        keys = {field: f"{prefix} {suffix}" for field, suffix in _MIDB_FIELDS.items()}
        try:
            out.append(
                Sample(
                    instruction=v.required_text(record, keys["instruction"], "instruction", s.max_field_chars),
                    input=v.optional_text(record, keys["input"], "input", s.max_field_chars),
                    response=v.required_text(record, keys["response"], "response", s.max_field_chars),
                    variant=variant,
                )
            )
        except v.RecordRejected as rejected:
            out.append(v.RecordRejected(f"{rejected.reason}_{variant}"))
    return out


ADAPTERS: dict[str, Callable[[dict[str, Any], AdapterSettings], list]] = {
    "alpaca": alpaca,
    "sharegpt": sharegpt,
    "openai": openai,
    "midb": midb,
}


def detect_format(record: dict[str, Any], columns: ColumnsConfig) -> str:
    """Pick the adapter from the keys a record has; mixed-shape corpora are common."""
    if "Raw Instruction" in record or "Revised Instruction" in record:
        return "midb"
    if columns.conversations in record:
        return "sharegpt"
    if columns.messages in record:
        return "openai"
    if columns.instruction in record:
        return "alpaca"
    raise v.RecordRejected(v.UNKNOWN_RECORD_FORMAT)
