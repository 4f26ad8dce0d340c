"""A sample as a list of exchanges: each answer, the question it answers, and what came before.

Scoring only the first question and answer of a conversation selects one whose third answer
is truncated or pasted from another thread as if it were perfect. So every assistant turn
with text is judged on its own, as one exchange: the user turn it answers (the last user turn
with text before it), the turns between them (tool calls and their results), and the context
before the question (system prompt and earlier turns). Plain Python on one sample, so the
pipeline and the benchmarks build exchanges by the same definition.

An exchange's id hashes its content (question, answer, every turn before it) the way a
sample_id hashes a sample, so it is the same in every corpus, run and refresh that holds the
same conversation prefix: a conversation that grew by a turn keeps its earlier exchanges' ids,
and only the new one is encoded. An exchange with nothing before it and nothing between has
the id a single-turn sample of the same text has (its sample_id).

The bi-encoder (QSM, cosine) reads an exchange's question after its context from the
conversation's first question on, cut from the left to the encoder's limit with the question
kept whole (`fit_context`). It does not read a system prompt or turns before the first
question: its head was trained on questions and answers without them, and a system prompt
shared across a corpus would move every prompt embedding alike. So a single-turn sample's
exchange reads exactly the text a sample was always encoded from. A scorer that takes a whole
chat (a reward model through its chat template) reads every turn (`chat`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mdaq_spark import schema as S
from mdaq_spark.io import validate as v
from mdaq_spark.io.records import ASSISTANT_ROLES, SYSTEM_ROLES, USER_ROLES, role_family

TURNS_ALL, TURNS_FIRST = "all", "first"


@dataclass(frozen=True)
class Exchange:
    turn: int  # position among the sample's exchanges, 0 = the first answer
    user: str  # the question it answers, whole
    response: str
    context: tuple[dict, ...] = ()  # every turn before the question, as the reader keeps turns ({role, content, ...})
    between: tuple[dict, ...] = ()  # turns between question and answer: tool calls and their results
    id: str = ""


def _text(turn: dict) -> str:
    content = turn.get("content")
    return content if isinstance(content, str) else ""


def _is_user(turn: dict) -> bool:
    return turn.get("role") in USER_ROLES and not v.is_blank(_text(turn))


def _is_answer(turn: dict) -> bool:
    return turn.get("role") in ASSISTANT_ROLES and not v.is_blank(_text(turn))


def _render(turns: Sequence[dict]) -> str:
    return json.dumps(list(turns), ensure_ascii=False, sort_keys=True)


def exchange_id(user: str, input_text: str, response: str, context: Sequence[dict], between: Sequence[dict]) -> str:
    """The exchange's content hash: S.compute_sample_id over its texts and the turns before its answer.

    With no turn between question and answer the turns part is the context as a sample's
    history is written, so an exchange with no context is hashed like a single-turn sample.
    """
    turns = _render(context) if not between else _render([list(context), list(between)])
    return S.compute_sample_id(user, input_text, response, turns)


def joined(instruction: str, input_text: str | None) -> str:
    """A sample's question as the encoder always read it: instruction and input joined by a newline (SQL concat_ws)."""
    return instruction if input_text is None else f"{instruction}\n{input_text}"


def exchanges(turns: Sequence[dict], first_user: str | None = None, first_input: str | None = None) -> list[Exchange]:
    """The exchanges of a conversation given as ordered turns ({role, content, ...}).

    An assistant turn with text answers the last user turn with text before it; one with no
    question before it (a greeting) is context, not an exchange. `first_user`/`first_input`
    give the first exchange's question as a sample stores it (instruction and input), for the
    id and the text a single-turn sample always had.
    """
    out: list[Exchange] = []
    asked: int | None = None
    for i, turn in enumerate(turns):
        if _is_user(turn):
            asked = i
        elif _is_answer(turn) and asked is not None:
            context, between = tuple(turns[:asked]), tuple(turns[asked + 1 : i])
            user, input_text = _text(turns[asked]), ""
            if not out and first_user is not None:
                user, input_text = first_user, first_input or ""
            ident = exchange_id(user, input_text, _text(turn), context, between)
            question = joined(first_user, first_input) if not out and first_user is not None else user
            out.append(Exchange(len(out), question, _text(turn), context, between, ident))
    return out


def sample_exchanges(
    instruction: str, input_text: str | None, response: str, history: str | None, turns: str = TURNS_ALL
) -> list[Exchange]:
    """The exchanges of a canonical sample (its first exchange plus `history`), in turn order.

    The first is the sample's own first exchange; `turns="first"` keeps only it.
    """
    from mdaq_spark.io.export import Content, conversation

    if not history or history == "[]":
        ident = exchange_id(instruction, input_text or "", response, (), ())
        found = [Exchange(0, joined(instruction, input_text), response, (), (), ident)]
    else:
        turns_in_order = conversation(Content(instruction, input_text or "", response, history))
        found = exchanges(turns_in_order, instruction, input_text)
    return found[:1] if turns == TURNS_FIRST else found


def _role(turn: dict) -> str:
    return role_family(turn.get("role", ""))


def encoder_context(exchange: Exchange) -> str:
    """The earlier turns the bi-encoder reads: from the conversation's first question on, one "role: text" line each.

    Empty for a first exchange, so its prompt is exactly the question.
    """
    start = next((i for i, t in enumerate(exchange.context) if _is_user(t)), len(exchange.context))
    lines = [f"{_role(t)}: {_text(t)}" for t in exchange.context[start:] if not v.is_blank(_text(t))]
    return "\n".join(lines)


def fit_context(
    context: str,
    question: str,
    limit: int,
    count: Callable[[str], int],
    spans: Callable[[str], list[tuple[int, int]]],
) -> str:
    """The bi-encoder's prompt: the question whole, after as much of the context's end as fits in `limit` tokens.

    `count(text)` is how many tokens the encoder reads for `text` as a prompt (prefix and
    special tokens included); `spans(text)` the (start, end) characters of each token of the
    text alone. The context is cut at a token's first character, so the kept text is the
    original text, never a decoded one; a cut that tokenises longer than counted drops one
    more token until the whole prompt fits.
    """
    if not context:
        return question
    tokens = spans(context)
    keep = min(len(tokens), limit - count(question) - 1)  # -1: the newline joining the two
    while keep > 0:
        start = tokens[len(tokens) - keep][0] if keep < len(tokens) else 0
        prompt = f"{context[start:]}\n{question}"
        if count(prompt) <= limit:
            return prompt
        keep -= 1
    return question


def chat(exchange: Exchange, system: bool = True) -> list[dict]:
    """The exchange as chat messages ({role: system|user|assistant|tool, content}) up to and with its answer.

    What a model with a chat template reads: every turn with text, roles in the OpenAI spelling.
    """
    turns = [*exchange.context, {"role": "user", "content": exchange.user}, *exchange.between]
    messages = [
        {"role": _role(t), "content": _text(t)}
        for t in turns
        if not v.is_blank(_text(t)) and (system or t.get("role") not in SYSTEM_ROLES)
    ]
    return [*messages, {"role": "assistant", "content": exchange.response}]
