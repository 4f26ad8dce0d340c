"""Canonical sample schema: every column and reason name, and the text helpers stages share.

Every stage reads and writes columns through these constants, so a rename happens in one
place and a typo is an ImportError rather than a silently empty column. Nothing else
spells a column or a reason.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from pyspark.sql import Column
from pyspark.sql import functions as F
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
# the rest of the record, so no field is dropped on the way to selected/ and the exports
SYSTEM = "system"  # top-level system prompt (ShareGPT/LLaMA-Factory, Alpaca `system`); "" when none
TOOLS = "tools"  # top-level tool definitions as JSON text (a string value kept as written); null when none
# JSON objects of the first exchange's turns' keys beyond role and content (`name`, `weight`...); null when none
PROMPT_TURN_FIELDS = "prompt_turn_fields"
RESPONSE_TURN_FIELDS = "response_turn_fields"
EXTRA = "extra"  # JSON object of every other top-level key of the record (sorted keys); null when none

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
# the response's mean-pooled states of the layers a QSM layer head reads: float16 bytes,
# (layers x dim) row-major; null when the run's head reads none
RESPONSE_LAYERS = "response_layers"
ENCODER_FINGERPRINT = "encoder_fingerprint"
QSM_SCORE = "qsm_score"
EMBEDDING = "embedding"
MODEL_FINGERPRINT = "model_fingerprint"

# clustering
CLUSTER_ID = "cluster_id"
CENTROID_DISTANCE = "centroid_distance"
CENTROID = "centroid"  # centroids/: the centre's vector
CLUSTER_SIZE = "cluster_size"  # centroids/: rows assigned to the centre

# tags (the select stage's annotations of a sample's content)
FLAGS = "flags"  # array<string> of the rules a sample breaks, empty when clean
CROSSLINGUAL = "crosslingual"  # boolean: the response is in a language the prompt asks for
GROUP = "sample_group"  # monolingual | crosslingual: selection budgets are per (language, group)
MONOLINGUAL_GROUP = "monolingual"
CROSSLINGUAL_GROUP = "crosslingual"
DOMAIN = "domain"  # code | math | general
CODE, MATH, GENERAL = "code", "math", "general"
# true: a flagged sample under filters.action=demote, ranked after every clean sample of its
# language wherever samples are ranked (the score itself is never rewritten)
DEMOTED = "demoted"

# pruning (what leaves the candidate pool before selection, and why)
PRUNE_REASON = "prune_reason"  # null: went on to selection
DUPLICATE_OF = "duplicate_of"  # the kept sample this one duplicates (null: kept)
DUP_SIMILARITY = "dup_similarity"  # cosine to that sample
NEAR_DUP_COUNT = "near_dup_count"  # on a kept sample: how many removed near-duplicates it stands for
COPY_GROUP = "copy_group"  # smallest sample_id of the sample's group of translated copies (null: none found)
COPY_COUNT = "copy_count"  # on a kept sample of a group: how many copies the group pruned
TRANSLATED_COPY = "translated_copy"  # true: a copy in a language its group does not keep

# prune reasons
REASON_FLAGGED = "flagged"
REASON_NEAR_DUPLICATE = "near_duplicate"
REASON_TRANSLATED_COPY = "translated_copy"
REASON_DOMAIN_CAP = "domain_cap"
PRUNE_REASONS = (REASON_FLAGGED, REASON_NEAR_DUPLICATE, REASON_TRANSLATED_COPY, REASON_DOMAIN_CAP)

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
# a compressed file whose stream breaks part-way: its records before the break are read, the rest is this one row
REASON_CORRUPT_COMPRESSED_STREAM = "corrupt_compressed_stream"
# a text file in an encoding the reader does not decode (UTF-16/32 without a byte-order mark): the whole file, one row
REASON_UNSUPPORTED_TEXT_ENCODING = "unsupported_text_encoding"
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
    (SYSTEM, T.StringType()),
    (TOOLS, T.StringType()),
    (PROMPT_TURN_FIELDS, T.StringType()),
    (RESPONSE_TURN_FIELDS, T.StringType()),
    (EXTRA, T.StringType()),
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


def compute_sample_id(
    instruction: str, input_text: str, response: str, history: str, system: str = "", tools: str | None = None
) -> str:
    """Stable 128-bit content hash; the same content gives the same id on every run and machine.

    A top-level system prompt or tool list changes what a model is trained on, so it is part of
    the content; a sample with neither hashes as it always did.
    """
    parts = (instruction, input_text, response, history) + ((system, tools or "") if system or tools else ())
    payload = "\x1f".join(normalise_text(part) for part in parts)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


def best_first(columns) -> list[Column]:
    """The one quality ranking: clean before demoted (when the rows carry `demoted`), then score, then id."""
    order = [F.col(DEMOTED).asc()] if DEMOTED in columns else []
    return [*order, F.col(QSM_SCORE).desc(), F.col(SAMPLE_ID).asc()]


def prompt_text() -> Column:
    """Instruction and input together: the input often carries most of the prompt's words."""
    return F.concat_ws("\n", F.col(INSTRUCTION), F.col(INPUT))


def sample_text() -> Column:
    """The whole sample as one text, for a separate diversity encoder."""
    return F.concat_ws("\n", F.col(INSTRUCTION), F.col(INPUT), F.col(RESPONSE))
