"""The keys a selection's turns carry beyond role, text and tool calls, and the type each is exported with.

A turn of an input conversation may carry more than its role and text: OpenAI's fine-tuning
format marks an assistant turn the trainer must not learn from with `"weight": 0`, reasoning
datasets keep the model's thinking in `reasoning_content`, a multimodal turn keeps its images
in `content_parts`. The reader keeps them all (io/records.py); an export that wrote only the
keys it knows would train on turns the user masked. So the export writes every key, and since
one schema must hold every file of an export (io/export_schema.py), the keys and their types
are read from the selection in one pass before the first file is written.

A key keeps its JSON type where all its values share one scalar type (integers mixed with
other numbers become float64); objects, lists and mixed types are written as their JSON text,
so nothing is lost and the column still has one type.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from mdaq_spark.io.export_schema import JSON_TEXT, TURN_KEYS

# the keys every exported turn has already: its role and text, and the tool-call keys
FIXED = frozenset({"role", "content", *(key for key, _ in TURN_KEYS)})
_INT64 = (-(2**63), 2**63 - 1)


def value_kind(value: Any) -> str | None:
    """The JSON type of one value (None for null, which fits any type)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if _INT64[0] <= value <= _INT64[1] else JSON_TEXT
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return JSON_TEXT


def merged_kind(kinds: Iterable[str]) -> str:
    """One type for every value of a key: the shared one, float64 for numbers, else JSON text."""
    found = set(kinds)
    if len(found) == 1:
        return found.pop()
    return "float" if found == {"int", "float"} else JSON_TEXT


def exported_value(value: Any, kind: str) -> Any:
    """A value as its key's column holds it."""
    if value is None:
        return None
    if kind == JSON_TEXT:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return float(value) if kind == "float" else value


def turn_extras(turn: dict) -> Iterator[tuple[str, str]]:
    """(key, kind) of each key of one turn beyond the fixed ones, null values left out."""
    for key, value in turn.items():
        kind = value_kind(value)
        if key not in FIXED and kind is not None:
            yield key, kind


def row_extras(history: str | None, *fields: str | None) -> set[tuple[str, str]]:
    """(key, kind) over a stored sample's history turns and its first exchange's turn fields."""
    out: set[tuple[str, str]] = set()
    turns = json.loads(history) if history else []
    turns += [json.loads(f) for f in fields if f]
    for turn in turns:
        out.update(turn_extras(turn))
    return out


def selection_turn_keys(selected) -> dict[str, str]:
    """key -> kind over every turn of a selection (a Spark DataFrame of selected/), keys sorted.

    Only samples that can have turn keys are read; each Arrow batch sends back its distinct pairs.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from mdaq_spark import schema as S

    fields = [c for c in (S.PROMPT_TURN_FIELDS, S.RESPONSE_TURN_FIELDS) if c in selected.columns]
    has_keys = F.col(S.HISTORY).isNotNull() & (F.col(S.HISTORY) != "[]")
    for c in fields:
        has_keys = has_keys | F.col(c).isNotNull()
    schema = T.StructType([T.StructField("key", T.StringType()), T.StructField("kind", T.StringType())])

    def pairs(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            found: set[tuple[str, str]] = set()
            for row in zip(*(batch.column(i).to_pylist() for i in range(batch.num_columns)), strict=True):
                found |= row_extras(*row)
            keys, kinds = zip(*sorted(found), strict=True) if found else ((), ())
            yield pa.RecordBatch.from_arrays(
                [pa.array(keys, pa.string()), pa.array(kinds, pa.string())], ["key", "kind"]
            )

    rows = selected.where(has_keys).select(S.HISTORY, *fields).mapInArrow(pairs, schema).distinct().collect()
    kinds: dict[str, list[str]] = {}
    for r in rows:
        kinds.setdefault(r["key"], []).append(r["kind"])
    return {key: merged_kind(kinds[key]) for key in sorted(kinds)}
