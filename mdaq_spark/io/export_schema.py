"""One Arrow schema per export format: the Parquet files' schema and the features every export's card declares.

JSON Lines carry no types, and `datasets` infers a JSON folder's types from the first rows of
its first file: a language whose samples never call tools would give `tool_calls` the null
type, and the next language's calls could not be cast to it. The card of every export
declares these features, so the folder loads whole with the types below whatever its first
file holds; the Parquet files are written with the same schema.
"""

from __future__ import annotations

import pyarrow as pa

from mdaq_spark import schema as S

DATA_DIR = "data"  # the data files sit below the card, so a trainer can be pointed at a folder of data files only
METADATA_KEY = "mdaq"  # the one key an export's own pipeline fields live under (--with-metadata)

# an OpenAI tool call; `arguments` is the function's arguments as JSON text, as OpenAI sends them
FUNCTION = pa.struct([("name", pa.string()), ("arguments", pa.string())])
TOOL_CALL = pa.struct([("id", pa.string()), ("type", pa.string()), ("function", FUNCTION)])
TOOL_CALLS = pa.list_(TOOL_CALL)
# a turn's keys besides its role and text, the same in every conversational format (null when absent)
TURN_KEYS = (("tool_calls", TOOL_CALLS), ("tool_call_id", pa.string()), ("name", pa.string()))
# the column type of each kind of value a turn key holds (io/turn_keys.py): objects, lists and
# mixed types as their JSON text
JSON_TEXT = "json"
_KIND_TYPES = {
    "bool": pa.bool_(),
    "int": pa.int64(),
    "float": pa.float64(),
    "string": pa.string(),
    JSON_TEXT: pa.string(),
}
# top-level tool definitions, as JSON text (TRL and LLaMA-Factory parse a string); null when none
TOOLS = ("tools", pa.string())

# the role and text of a turn in each conversational format
_TURN_HEAD = {
    "message": [("role", pa.string()), ("content", pa.string())],
    "sharegpt": [("from", pa.string()), ("value", pa.string())],
}
_METADATA = [
    (S.SAMPLE_ID, pa.string()),
    (S.LANG, pa.string()),
    (S.QSM_SCORE, pa.float64()),
    (S.CLUSTER_ID, pa.int64()),
    (S.SELECTION_REASON, pa.string()),
    # each exchange's score in turn order, and the weakest one's turn (0 = the first answer)
    (S.TURN_SCORES, pa.list_(pa.float64())),
    (S.WEAKEST_TURN, pa.int64()),
    # the record's other top-level keys (an `id`, a `meta`), as the JSON object the reader kept
    (S.EXTRA, pa.string()),
]
_FIELDS = {
    "alpaca": [
        ("instruction", pa.string()),
        ("input", pa.string()),
        ("output", pa.string()),
        ("system", pa.string()),
        ("history", pa.list_(pa.list_(pa.string()))),
        TOOLS,
    ],
    "sharegpt": [("conversations", "sharegpt"), ("system", pa.string()), TOOLS],
    "openai": [("messages", "message"), TOOLS],
    "parquet": [("messages", "message"), TOOLS],
}
_DTYPES = {pa.string(): "string", pa.float64(): "float64", pa.int64(): "int64", pa.bool_(): "bool"}


def arrow_type(kind: str) -> pa.DataType:
    return _KIND_TYPES[kind]


def turn_type(turn: str, turn_keys: dict[str, str]) -> pa.DataType:
    """A turn: its role and text, the tool-call keys, then each other key the selection's turns carry."""
    extra = [(key, arrow_type(kind)) for key, kind in turn_keys.items()]
    return pa.struct([*_TURN_HEAD[turn], *TURN_KEYS, *extra])


def metadata_type(scorers: tuple[str, ...]) -> pa.DataType:
    """The `mdaq` struct; `scorer_scores` holds each configured scorer's raw score of the sample, by name."""
    return pa.struct([*_METADATA, (S.SCORER_SCORES, pa.struct([(name, pa.float64()) for name in scorers]))])


def export_schema(
    file_format: str,
    with_metadata: bool,
    turn_keys: dict[str, str] | None = None,
    scorers: tuple[str, ...] = ("qsm",),
) -> pa.Schema:
    """The schema of every record of `file_format`: each key present in every record, null where empty.

    `turn_keys`: the other keys of the selection's turns and their kinds (io/turn_keys.py);
    `scorers`: the run's scorer names (config.scorer_names), the fields of `scorer_scores`.
    """
    fields = [
        (name, pa.list_(turn_type(t, turn_keys or {})) if isinstance(t, str) else t)
        for name, t in _FIELDS[file_format]
    ]
    if with_metadata:
        fields.append((METADATA_KEY, metadata_type(scorers)))
    return pa.schema(fields)


def _inner(t: pa.DataType):
    if pa.types.is_struct(t):
        return [_feature(t.field(i)) for i in range(t.num_fields)]
    if pa.types.is_list(t):
        return {"list": _inner(t.value_type)}
    return _DTYPES[t]


def _feature(field: pa.Field) -> dict:
    t = field.type
    if pa.types.is_struct(t):
        return {"name": field.name, "struct": _inner(t)}
    if pa.types.is_list(t):
        return {"name": field.name, "list": _inner(t.value_type)}
    return {"name": field.name, "dtype": _DTYPES[t]}


def features_yaml(schema: pa.Schema) -> list[dict]:
    """`schema` as a dataset card's `dataset_info.features` (the YAML form `datasets` reads)."""
    return [_feature(field) for field in schema]
