"""Every key of a selection's turns reaches the export with one type per key, whatever its values are."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from mdaq_spark.io import export_schema
from mdaq_spark.io import turn_keys as K


@pytest.mark.parametrize(
    ("values", "kind"),
    [([0, 1, None], "int"), ([0, 0.5], "float"), ([True, False], "bool"), (["low", None], "string"),
     ([{"a": 1}], "json"), ([[1, 2]], "json"), ([1, "1"], "json"), ([True, 1], "json"), ([2**70], "json")],
)  # fmt: skip
def test_a_key_keeps_its_json_type_when_its_values_share_one(values, kind):
    assert K.merged_kind(k for x in values if (k := K.value_kind(x)) is not None) == kind


def test_values_are_written_as_their_column_holds_them():
    assert K.exported_value(1, "float") == 1.0 and isinstance(K.exported_value(1, "float"), float)
    assert K.exported_value({"b": 1, "a": "é"}, "json") == '{"a": "é", "b": 1}'
    assert K.exported_value("x", "json") == '"x"'  # a string among other types stays distinguishable from 1
    assert K.exported_value(None, "json") is None
    assert export_schema.arrow_type("json") == pa.string() and export_schema.arrow_type("int") == pa.int64()


def test_a_stored_sample_names_the_keys_beyond_role_text_and_tool_calls():
    history = json.dumps([
        {"role": "assistant", "content": "", "tool_calls": [], "weight": 0},
        {"role": "tool", "content": "21", "tool_call_id": "c1", "name": "weather"},
        {"role": "user", "content": "x", "content_parts": [{"type": "image_url"}], "weight": None},
    ])  # fmt: skip
    found = K.row_extras(history, json.dumps({"reasoning_content": "Let me think."}), None)
    assert found == {("weight", "int"), ("content_parts", "json"), ("reasoning_content", "string")}
    assert K.row_extras("[]", None, None) == set()
