"""Row checks: each answers "fine" (None) or "reject for reason X".

The reasons are a small closed vocabulary so quarantine counts group cleanly in stats and
in the report; the field name is part of the reason so a user knows which column to fix.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from mdaq_spark import schema as S

UNPARSABLE_JSON = S.REASON_UNPARSABLE_JSON
TRUNCATED_JSON_DOCUMENT = S.REASON_TRUNCATED_JSON_DOCUMENT
TOO_DEEP_JSON = S.REASON_TOO_DEEP_JSON
NOT_AN_OBJECT = S.REASON_NOT_AN_OBJECT
UNKNOWN_RECORD_FORMAT = S.REASON_UNKNOWN_RECORD_FORMAT
NO_USER_TURN = S.REASON_NO_USER_TURN
NO_ASSISTANT_TURN = S.REASON_NO_ASSISTANT_TURN

# U+FFFD is what Spark's UTF-8 decoder leaves where the bytes were invalid; lone surrogates
# come from JSON escapes of broken UTF-16 and cannot be written out as UTF-8
_UNDECODABLE = re.compile("[\ufffd\ud800-\udfff]")


_INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})  # controls, format characters, spaces


def is_blank(text: str) -> bool:
    """No visible character: a text of zero-width spaces and direction marks (U+200B, U+200F, U+2060) is empty.

    Stops at the first visible character, which in real text is the first one or nearly.
    """
    return all(unicodedata.category(ch) in _INVISIBLE for ch in text)


def missing(field: str) -> str:
    return f"missing_{field}"


def wrong_type(field: str) -> str:
    return f"wrong_type_{field}"


def empty(field: str) -> str:
    return f"empty_{field}"


def too_long(field: str) -> str:
    return f"too_long_{field}"


def invalid_text(field: str) -> str:
    return f"invalid_utf8_{field}"


def malformed_part(field: str) -> str:
    """A content part that is not an object, or a text part whose text is not a string."""
    return f"malformed_content_part_{field}"


def conflicting_turn(field: str) -> str:
    """A turn whose role or text is given under both shapes' names (`from` and `role`) with different values."""
    return f"conflicting_turn_keys_{field}"


def undecodable(text: str) -> bool:
    return _UNDECODABLE.search(text) is not None


class RecordRejected(Exception):
    """Raised by a record adapter; carries the quarantine reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def required_text(record: dict[str, Any], key: str, field: str, max_chars: int) -> str:
    """A text that must be present, a string, non-blank, decodable and not absurdly long."""
    if key not in record or record[key] is None:
        raise RecordRejected(missing(field))
    return checked_text(record[key], field, max_chars, allow_empty=False)


def optional_text(record: dict[str, Any], key: str, field: str, max_chars: int) -> str:
    """A text that may be absent or null (then empty), but if present must be a string."""
    value = record.get(key)
    if value is None:
        return ""
    return checked_text(value, field, max_chars, allow_empty=True)


def checked_text(value: Any, field: str, max_chars: int, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise RecordRejected(wrong_type(field))
    if not allow_empty and is_blank(value):
        raise RecordRejected(empty(field))
    if len(value) > max_chars:
        raise RecordRejected(too_long(field))
    if _UNDECODABLE.search(value):
        raise RecordRejected(invalid_text(field))
    return value
