"""Canonical sample schema and column names.

Every stage reads and writes columns through these constants, so a rename happens in one
place and a typo is an ImportError rather than a silently empty column.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from pyspark.sql import types as T

# identity and provenance
SAMPLE_ID = "sample_id"
SOURCE = "source"
RECORD_FORMAT = "record_format"
VARIANT = "variant"  # MIDB: "raw" (machine-translated) or "revised" (expert-revised); null elsewhere

# content
INSTRUCTION = "instruction"
INPUT = "input"
RESPONSE = "response"
HISTORY = "history"  # JSON list of further turns ({"role","content"}), "[]" when none
LANG_HINT = "lang_hint"  # language given by the input record or file, if any

# validation
QUARANTINE_REASON = "quarantine_reason"
RAW_RECORD = "raw_record"

# language id
LANG = "lang"
LANG_INSTRUCTION = "lang_instruction"
LANG_RESPONSE = "lang_response"
LANG_MISMATCH = "lang_mismatch"

# model outputs
PROMPT_EMBEDDING = "prompt_embedding"  # frozen encoder, instruction (+input) side, L2-normalised
RESPONSE_EMBEDDING = "response_embedding"  # frozen encoder, response side, L2-normalised
ENCODER_FINGERPRINT = "encoder_fingerprint"
QSM_SCORE = "qsm_score"
EMBEDDING = "embedding"
MODEL_FINGERPRINT = "model_fingerprint"

# clustering
CLUSTER_ID = "cluster_id"
CENTROID_DISTANCE = "centroid_distance"

# selection
QUALITY_RANK = "quality_rank"
SELECTION_REASON = "selection_reason"

# selection reasons
REASON_QUALITY = "quality"
REASON_DIVERSITY = "diversity"
REASON_CLUSTER_TOP_K = "cluster_top_k"
REASON_MMR = "mmr"

# quarantine reason for an exact duplicate of a sample that was kept
DUPLICATE_REASON = "exact_duplicate"

# quarantine reasons of the reader beyond the per-field ones (missing_/wrong_type_/empty_/too_long_/invalid_utf8_)
REASON_UNPARSABLE_JSON = "unparsable_json"  # a line (or a whole .json file) that is not JSON
REASON_TRUNCATED_JSON_DOCUMENT = "truncated_json_document"  # the broken tail of a .json array, after its good records
REASON_TOO_DEEP_JSON = "too_deeply_nested_json"  # nested deeper than the parser's recursion allows
REASON_NOT_AN_OBJECT = "not_an_object"
REASON_UNKNOWN_RECORD_FORMAT = "unknown_record_format"
REASON_NO_USER_TURN = "no_user_turn"
REASON_NO_ASSISTANT_TURN = "no_assistant_turn"
# reader-internal column: true on the first row of each input record (MIDB records give two rows), so the
# records a file gave can be counted after parsing and checked against the units read from it
RECORD_START = "_record_start"
# reader-internal column: on a tally row (no sample, no reason), how many line units of its source the
# reader was handed; counted before parsing, so a record the parser drops still counts as read
UNITS_READ = "_units_read"

CONTENT_FIELDS = (INSTRUCTION, INPUT, RESPONSE, HISTORY)

_PARSED_FIELDS: tuple[tuple[str, T.DataType], ...] = (
    (SAMPLE_ID, T.StringType()),
    (SOURCE, T.StringType()),
    (RECORD_FORMAT, T.StringType()),
    (VARIANT, T.StringType()),
    (INSTRUCTION, T.StringType()),
    (INPUT, T.StringType()),
    (RESPONSE, T.StringType()),
    (HISTORY, T.StringType()),
    (LANG_HINT, T.StringType()),
    (QUARANTINE_REASON, T.StringType()),
    (RAW_RECORD, T.StringType()),
)


def parsed_schema(passthrough: tuple[str, ...] = ()) -> T.StructType:
    """Schema of the reader's output: canonical fields, then passthrough columns as strings.

    Passthrough values are kept as strings (JSON for non-strings) because their types differ
    from corpus to corpus and a stable output schema matters more than typed extras.
    """
    fields = [T.StructField(name, dtype, True) for name, dtype in _PARSED_FIELDS]
    fields += [T.StructField(name, T.StringType(), True) for name in passthrough]
    return T.StructType(fields)


_WHITESPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """NFC plus collapsed whitespace: two copies that differ only in spacing or Unicode
    composition are the same sample for training purposes."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def compute_sample_id(instruction: str, input_text: str, response: str, history: str) -> str:
    """Stable 128-bit content hash; the same content gives the same id on every run and machine."""
    payload = "\x1f".join(normalise_text(part) for part in (instruction, input_text, response, history))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]
