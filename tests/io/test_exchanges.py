"""Exchanges of a sample: which answers are judged, with which question and context, under which id."""

from __future__ import annotations

import json

from mdaq_spark import schema as S
from mdaq_spark.config import ColumnsConfig
from mdaq_spark.io import records
from mdaq_spark.io.exchanges import (
    TURNS_FIRST,
    chat,
    encoder_context,
    exchanges,
    fit_context,
    sample_exchanges,
)


def _sample(turns: list[dict]) -> records.Sample:
    return records.openai({"messages": turns}, records.AdapterSettings(ColumnsConfig(), 10_000))[0]


def _of(turns: list[dict], mode: str = "all"):
    s = _sample(turns)
    return s, sample_exchanges(s.instruction, s.input, s.response, s.history, mode)


SYSTEM = {"role": "system", "content": "Answer briefly."}
U1, A1 = {"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4."}
U2, A2 = {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6."}
U3, A3 = {"role": "user", "content": "And 4+4?"}, {"role": "assistant", "content": "8."}


def test_single_turn_sample_is_one_exchange_with_its_sample_id_and_text():
    sample = records.Sample(instruction="Translate", input="Hallo", response="Hello")
    (ex,) = sample_exchanges(sample.instruction, sample.input, sample.response, sample.history)
    assert ex.turn == 0 and ex.user == "Translate\nHallo" and ex.response == "Hello"
    assert ex.id == S.compute_sample_id(sample.instruction, sample.input, sample.response, sample.history)
    # an empty input joins as SQL concat_ws does: the text the encoder always read
    (bare,) = sample_exchanges("Q", "", "A", "[]")
    assert bare.user == "Q\n" and encoder_context(bare) == ""


def test_a_system_prompt_is_context_not_read_by_the_encoder_and_the_id_is_the_sample_id():
    s, (ex,) = _of([SYSTEM, U1, A1])
    assert ex.context == (SYSTEM,) and ex.user == "What is 2+2?\n"
    assert encoder_context(ex) == ""  # the bi-encoder reads the question alone, as before
    assert ex.id == S.compute_sample_id(s.instruction, s.input, s.response, s.history)
    assert chat(ex)[0] == {"role": "system", "content": "Answer briefly."}
    assert chat(ex, system=False) == [{"role": "user", "content": ex.user}, {"role": "assistant", "content": "4."}]


def test_every_answer_is_an_exchange_in_turn_order_with_the_turns_before_it():
    _, found = _of([SYSTEM, U1, A1, U2, A2, U3, A3])
    assert [e.turn for e in found] == [0, 1, 2]
    assert [(e.user.strip(), e.response) for e in found] == [
        ("What is 2+2?", "4."),
        ("And 3+3?", "6."),
        ("And 4+4?", "8."),
    ]
    assert [t["content"] for t in found[2].context] == ["Answer briefly.", "What is 2+2?", "4.", "And 3+3?", "6."]
    assert encoder_context(found[2]) == "user: What is 2+2?\nassistant: 4.\nuser: And 3+3?\nassistant: 6."
    assert len({e.id for e in found}) == 3
    _, first = _of([SYSTEM, U1, A1, U2, A2, U3, A3], TURNS_FIRST)
    assert first == found[:1]


def test_a_conversation_that_grows_keeps_its_earlier_exchange_ids():
    _, short = _of([U1, A1, U2, A2])
    _, grown = _of([U1, A1, U2, A2, U3, A3])
    assert [e.id for e in grown[:2]] == [e.id for e in short]
    # the same opening in a conversation of its own is the same exchange
    _, single = _of([U1, A1])
    assert single[0].id == short[0].id
    # a different earlier answer is a different context: a different later exchange
    _, other = _of([U1, {"role": "assistant", "content": "Five."}, U2, A2])
    assert other[1].id != short[1].id and other[1].user == short[1].user


def test_tool_turns_sit_between_question_and_answer_and_greetings_answer_nothing():
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]}
    result = {"role": "tool", "content": "4", "tool_call_id": "c1"}
    greeting = {"role": "assistant", "content": "Hi! Ask me anything."}
    _, (ex, ex2) = _of([greeting, U1, call, result, A1, U2, A2])
    assert ex.context == (greeting,) and [t["role"] for t in ex.between] == ["assistant", "tool"]
    assert ex2.context[-1]["content"] == "4." and ex2.between == ()
    assert [m["role"] for m in chat(ex)] == ["assistant", "user", "tool", "assistant"]
    # the encoder reads from the first question on: the greeting is not read
    assert encoder_context(ex2).startswith("user: What is 2+2?")


def test_a_trailing_question_and_plain_turn_lists_follow_the_same_rules():
    turns = [json.loads(json.dumps(t)) for t in (U1, A1, U2)]
    (ex,) = exchanges(turns)
    assert ex.user == "What is 2+2?" and ex.id == S.compute_sample_id("What is 2+2?", "", "4.", "[]")


def _spans(text: str) -> list[tuple[int, int]]:
    """Whitespace tokens."""
    import re

    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def _count(text: str) -> int:
    return len(_spans(text)) + 2  # the special tokens a real tokenizer adds


def test_fit_context_keeps_the_question_whole_and_cuts_the_context_from_the_left():
    question = "why is the sky blue"
    context = "user: one two three four five\nassistant: six seven"
    assert fit_context("", question, 8, _count, _spans) == question
    assert fit_context(context, question, 100, _count, _spans) == f"{context}\n{question}"
    fitted = fit_context(context, question, 10, _count, _spans)
    assert fitted == f"six seven\n{question}" and _count(fitted) <= 10
    # no room for any context: the question alone, whole, even past the limit
    assert fit_context(context, question, 4, _count, _spans) == question
