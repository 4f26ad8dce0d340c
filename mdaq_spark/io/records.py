"""Record shapes (Alpaca, ShareGPT, OpenAI messages, MIDB) mapped to canonical samples.

Plain Python on one decoded JSON record, so every shape is testable without Spark; the
reader runs these inside a pandas UDF. An adapter returns samples or raises RecordRejected
with the reason the row goes to quarantine.

No field is dropped: a record's top-level `system` and `tools` (LLaMA-Factory's ShareGPT and
Alpaca shapes), the keys of each turn beyond its role and text (`name`, `tool_calls`...), and
every other top-level key (`extra_fields`) are carried with the sample.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mdaq_spark.config import ColumnsConfig
from mdaq_spark.io import validate as v

USER_ROLES = frozenset({"human", "user"})
ASSISTANT_ROLES = frozenset({"gpt", "assistant", "bot", "model", "chatgpt"})
# a system prompt under either name (OpenAI calls it developer for reasoning models)
SYSTEM_ROLES = frozenset({"system", "developer"})


def role_family(role: str) -> str:
    """`user` or `assistant` for any name of the two (human, gpt, model...); another role (system, tool) as it is."""
    role = role.lower()
    return "user" if role in USER_ROLES else "assistant" if role in ASSISTANT_ROLES else role


MIDB_VARIANTS = ("raw", "revised")
_MIDB_FIELDS = {"instruction": "Instruction", "input": "Input", "response": "Response"}
MIDB_KEYS = tuple(f"{v.capitalize()} {suffix}" for v in MIDB_VARIANTS for suffix in _MIDB_FIELDS.values())
# top-level keys of LLaMA-Factory's shapes: the system prompt, and the tool definitions (JSON text or a list)
SYSTEM_KEY = "system"
TOOLS_KEY = "tools"


@dataclass(frozen=True)
class Sample:
    instruction: str
    input: str
    response: str
    history: str = "[]"
    variant: str | None = None
    system: str = ""
    tools: str | None = None  # JSON text
    prompt_fields: str | None = None  # JSON object: the prompt turn's keys beyond role and text
    response_fields: str | None = None  # the same for the response turn


@dataclass(frozen=True)
class AdapterSettings:
    columns: ColumnsConfig
    max_field_chars: int


def _json_text(value: Any) -> str | None:
    """A structured value as JSON text, a string as written; None stays None."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _record_level(record: dict[str, Any], s: AdapterSettings) -> dict[str, Any]:
    """The top-level system prompt and tools, which go with every sample of the record."""
    return {
        "system": v.optional_text(record, SYSTEM_KEY, "system", s.max_field_chars),
        "tools": _json_text(record.get(TOOLS_KEY)),
    }


def alpaca(record: dict[str, Any], s: AdapterSettings) -> list[Sample]:
    c = s.columns
    return [
        Sample(
            instruction=v.required_text(record, c.instruction, "instruction", s.max_field_chars),
            input=v.optional_text(record, c.input, "input", s.max_field_chars),
            response=v.required_text(record, c.response, "response", s.max_field_chars),
            **_record_level(record, s),
        )
    ]


# OpenAI content parts that carry text; other parts (image_url, input_audio, file) are not instruction text
TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
# the turn key that keeps a turn's other parts, as given
CONTENT_PARTS = "content_parts"


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


# the other shape's name for a turn's role and text (ShareGPT: from/value; OpenAI: role/content)
_OTHER_NAME = {"from": "role", "role": "from", "value": "content", "content": "value"}


def _check_other_names(turn: dict, role_key: str, text_key: str, text: str, field: str) -> None:
    """A turn may repeat its role and text under the other shape's names (converted data often does),
    never contradict them: which of the two was meant cannot be told, so the record is quarantined."""
    role, other_role = turn[role_key], turn.get(_OTHER_NAME[role_key])
    if other_role is not None and (not isinstance(other_role, str) or role_family(other_role) != role_family(role)):
        raise v.RecordRejected(v.conflicting_turn(field))
    other_text = turn.get(_OTHER_NAME[text_key])
    if other_text is not None and other_text != text:
        raise v.RecordRejected(v.conflicting_turn(field))


def _turns(value: Any, role_key: str, text_key: str, field: str, s: AdapterSettings) -> list[tuple[str, str, dict]]:
    """(role, text, other keys) per turn. A null content (an assistant turn that only calls tools) is empty text.

    The other keys are every key but the role and the text whose value is not null: an
    assistant's `tool_calls`, a tool reply's `tool_call_id`, a speaker's `name`, a `weight`.
    """
    if value is None:
        raise v.RecordRejected(v.missing(field))
    if not isinstance(value, list):
        raise v.RecordRejected(v.wrong_type(field))
    turns = []
    for turn in value:
        if not isinstance(turn, dict) or not isinstance(turn.get(role_key), str):
            raise v.RecordRejected(v.wrong_type(field))
        text = turn.get(text_key)
        parts = None
        if text is None:
            text = ""
        elif isinstance(text, list):
            parts = [p for p in text if isinstance(p, dict) and p.get("type", "text") not in TEXT_PARTS]
            text = _part_text(text, field)
        if isinstance(text, str):  # other values are wrong_type below
            _check_other_names(turn, role_key, text_key, text, field)
        skip = (role_key, text_key, _OTHER_NAME[role_key], _OTHER_NAME[text_key])
        tools = {k: val for k, val in turn.items() if k not in skip and val is not None}
        if parts:
            tools[CONTENT_PARTS] = parts  # images, audio, files: no text to score, kept with their turn
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
    prompt_fields, response_fields = (
        json.dumps(turns[i][2], ensure_ascii=False, sort_keys=True) if turns[i][2] else None
        for i in (user_at, reply_at)
    )
    if any(tools for _, _, tools in turns) and any(
        v.undecodable(text) for text in (rendered, prompt_fields or "", response_fields or "")
    ):
        raise v.RecordRejected(v.invalid_text(field))
    return Sample(
        instruction=turns[user_at][1],
        input="",
        response=turns[reply_at][1],
        history=rendered,
        prompt_fields=prompt_fields,
        response_fields=response_fields,
    )


def sharegpt(record: dict[str, Any], s: AdapterSettings) -> list[Sample]:
    turns = _turns(record.get(s.columns.conversations), "from", "value", "conversations", s)
    return [dataclasses.replace(_first_exchange(turns, "conversations"), **_record_level(record, s))]


def openai(record: dict[str, Any], s: AdapterSettings) -> list[Sample]:
    turns = _turns(record.get(s.columns.messages), "role", "content", "messages", s)
    return [dataclasses.replace(_first_exchange(turns, "messages"), **_record_level(record, s))]


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


def consumed_keys(fmt: str, columns: ColumnsConfig) -> frozenset[str]:
    """The top-level keys a shape's adapter maps to sample columns; every other key is kept in `extra`."""
    level = {SYSTEM_KEY, TOOLS_KEY}
    keys = {
        "alpaca": {columns.instruction, columns.input, columns.response, *level},
        "sharegpt": {columns.conversations, *level},
        "openai": {columns.messages, *level},
        "midb": set(MIDB_KEYS),
    }
    return frozenset(keys[fmt])


def extra_fields(record: dict[str, Any], fmt: str, columns: ColumnsConfig, passthrough: tuple[str, ...]) -> str | None:
    """Every other top-level key of the record with a value, as one JSON object in the record's order."""
    used = consumed_keys(fmt, columns) | set(passthrough)
    extra = {k: val for k, val in record.items() if k not in used and val is not None}
    return json.dumps(extra, ensure_ascii=False) if extra else None


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
