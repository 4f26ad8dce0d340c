"""A reward model reads an exchange ending with its answer, however long the conversation before it.

Real tiny models (tests/tiny_models.py): a one-label BERT with a word-level tokenizer, once with
a chat template and once without (a text pair).
"""

from __future__ import annotations

import pytest

from mdaq_spark.config import load_config
from mdaq_spark.scoring.sequence_classifier import SequenceClassifierScorer, _keep_end, fit_chat
from tests.tiny_models import tiny_reward_model

WORDS = "one two three four five six seven eight nine ten eleven twelve be brief answer question".split()


def _chat(turns: int, answer: str, system: str | None = "be brief") -> list[dict]:
    chat = [{"role": "system", "content": system}] if system else []
    for i in range(turns):
        chat += [{"role": "user", "content": f"question {WORDS[i]} {WORDS[i]}"},
                 {"role": "assistant", "content": f"answer {WORDS[i]}"}]  # fmt: skip
    chat += [{"role": "user", "content": "question twelve"}, {"role": "assistant", "content": answer}]
    return chat


def _words(messages: list[dict]) -> int:
    return sum(len(m["content"].split()) + 2 for m in messages)  # a role and a separator each, as the template


def test_fit_chat_drops_the_earliest_turns_whole_then_the_system_prompt():
    chat = _chat(4, "eleven twelve")
    assert fit_chat(chat, 100, _words) == chat  # fits: untouched
    fitted = fit_chat(chat, 20, _words)
    assert fitted[0] == chat[0] and fitted[-2:] == chat[-2:] and _words(fitted) <= 20
    assert fitted[1:] == chat[len(chat) - len(fitted) + 1 :]  # a suffix of the turns: the earliest went first
    assert _words(chat[:1] + chat[len(chat) - len(fitted) :]) > 20  # and no more than needed
    assert fit_chat(chat, 7, _words) == chat[-2:]  # the system prompt goes last; question and answer stay
    assert fit_chat(chat, 3, _words) == chat[-2:]  # nothing fits: the shortest, cut later by tokens
    tools = [*chat[:-1], {"role": "tool", "content": "nine"}, chat[-1]]
    assert fit_chat(tools, 10, _words)[-3:] == tools[-3:]  # turns between question and answer are kept


def test_keep_end_keeps_the_answer_and_a_leading_bos():
    assert _keep_end([7, 1, 2, 3, 4], 3, bos=7) == [7, 3, 4]
    assert _keep_end([1, 2, 3, 4], 3, bos=7) == [2, 3, 4]
    assert _keep_end([1, 2], 3, bos=None) == [1, 2]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("reward")
    return {
        "chat": str(tiny_reward_model(root / "chat", WORDS)),
        "pair": str(tiny_reward_model(root / "pair", WORDS, chat_template=None)),
        "short": str(tiny_reward_model(root / "short", WORDS, positions=32)),
    }


def _scorer(location: str, max_length: int) -> SequenceClassifierScorer:
    return SequenceClassifierScorer(name="rm", weight=1.0, location=location, max_length=max_length, device="cpu")


def _tokens(scorer, loaded, chat) -> list[str]:
    ids = scorer.inputs(loaded, [chat])["input_ids"][0].tolist()
    return loaded.tokenizer.convert_ids_to_tokens(ids)


def test_a_long_chat_is_read_up_to_its_answer(models):
    scorer = _scorer(models["chat"], 24)
    loaded = scorer.load()
    chat = _chat(6, "eleven twelve")
    tokens = _tokens(scorer, loaded, chat)
    assert len(tokens) <= 24 and tokens[-4:] == ["assistant", "eleven", "twelve", "[SEP]"]
    assert tokens[:4] == ["system", "be", "brief", "[SEP]"]  # the system prompt stays while earlier turns go
    # the answer decides the score: two answers after the same long conversation score apart
    # (cut from the right, the model saw only the conversation's opening, the same for both)
    other = _chat(6, "ten ten ten")
    a, b = scorer.score(loaded, _batch([chat, other]))
    assert a != b
    # and the score is the fitted chat's: the cut is exactly the dropped turns
    fitted = fit_chat(chat, 24, lambda m: len(_tokens(_scorer(models["chat"], 10_000), loaded, m)))
    assert scorer.score(loaded, _batch([fitted]))[0] == pytest.approx(a, abs=1e-6)


def test_question_and_answer_alone_too_long_lose_tokens_from_the_left(models):
    scorer = _scorer(models["chat"], 8)
    loaded = scorer.load()
    tokens = _tokens(scorer, loaded, _chat(2, "one two three four five"))
    assert len(tokens) == 8 and tokens[-6:] == ["one", "two", "three", "four", "five", "[SEP]"]


def test_a_text_pair_keeps_the_answer_and_the_end_of_its_prompt(models):
    scorer = _scorer(models["pair"], 12)
    loaded = scorer.load()
    tokens = _tokens(scorer, loaded, _chat(4, "eleven twelve ten"))
    assert tokens[0] == "[CLS]" and len(tokens) == 12
    assert tokens[-5:] == ["[SEP]", "eleven", "twelve", "ten", "[SEP]"]
    assert tokens[-7:-5] == ["question", "twelve"]  # the question, right before the answer
    long_answer = " ".join(WORDS[:12])
    tokens = _tokens(scorer, loaded, _chat(1, long_answer))
    assert len(tokens) == 12 and tokens[-2:] == ["twelve", "[SEP]"]  # an answer alone too long: its end kept


def test_max_length_is_capped_by_the_model_and_part_of_the_fingerprint(models):
    def built(**settings):
        entry = {"kind": "sequence_classifier", "model": models["short"], **settings}
        job = load_config(None, ["model.batch_size=8"], **{"scoring.scorers": [entry]})
        return SequenceClassifierScorer.from_config(job.scoring.scorers[0], job, "rm")

    assert built().max_length == 32 and built(max_length=128).max_length == 32
    assert built(max_length=20).max_length == 20
    assert built(max_length=20).fingerprint("") != built().fingerprint("")
    # exchanges per forward pass: the scorer's own, else the encoder's; the scores' identity ignores it
    assert (built().batch_size, built(batch_size=2).batch_size) == (8, 2)
    assert built(batch_size=2).fingerprint("") == built().fingerprint("")


def _batch(chats: list[list[dict]]):
    import json

    import pyarrow as pa

    from mdaq_spark import schema as S

    return pa.RecordBatch.from_arrays([pa.array([json.dumps(c) for c in chats])], names=[S.MESSAGES])


def test_a_worker_without_the_drivers_directory_loads_the_configured_model(models, tmp_path):
    scorer = SequenceClassifierScorer(
        name="rm", weight=1.0, location=str(tmp_path / "not-here"), model_id=models["chat"], device="cpu"
    )
    batch = _batch([_chat(1, "eleven twelve")])
    reference = _scorer(models["chat"], scorer.max_length)
    assert (scorer.score(scorer.load(), batch) == reference.score(reference.load(), batch)).all()
