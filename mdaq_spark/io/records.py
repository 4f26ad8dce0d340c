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


def _turns(value: Any, role_key: str, text_key: str, field: str, s: AdapterSettings) -> list[tuple[str, str]]:
    if value is None:
        raise v.RecordRejected(v.missing(field))
    if not isinstance(value, list):
        raise v.RecordRejected(v.wrong_type(field))
    turns = []
    for turn in value:
        if not isinstance(turn, dict) or not isinstance(turn.get(role_key), str):
            raise v.RecordRejected(v.wrong_type(field))
        text = turn.get(text_key)
        # multimodal / tool-call content parts are not instruction text for this job
        turns.append((turn[role_key].lower(), v.checked_text(text, field, s.max_field_chars, allow_empty=True)))
    return turns


def _first_exchange(turns: list[tuple[str, str]]) -> Sample:
    """First user turn with text + first assistant turn after it; every other turn is history."""
    user_at = next((i for i, (role, text) in enumerate(turns) if role in USER_ROLES and text.strip()), None)
    if user_at is None:
        raise v.RecordRejected(v.NO_USER_TURN)
    reply_at = next(
        (i for i in range(user_at + 1, len(turns)) if turns[i][0] in ASSISTANT_ROLES and turns[i][1].strip()),
        None,
    )
    if reply_at is None:
        raise v.RecordRejected(v.NO_ASSISTANT_TURN)
    history = [{"role": role, "content": text} for i, (role, text) in enumerate(turns) if i not in (user_at, reply_at)]
    return Sample(
        instruction=turns[user_at][1],
        input="",
        response=turns[reply_at][1],
        history=json.dumps(history, ensure_ascii=False, sort_keys=True),
    )


def sharegpt(record: dict[str, Any], s: AdapterSettings) -> list[Sample]:
    return [_first_exchange(_turns(record.get(s.columns.conversations), "from", "value", "conversations", s))]


def openai(record: dict[str, Any], s: AdapterSettings) -> list[Sample]:
    return [_first_exchange(_turns(record.get(s.columns.messages), "role", "content", "messages", s))]


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
