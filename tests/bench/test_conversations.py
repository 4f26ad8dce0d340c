"""The conversation benchmarks' pure parts: exchanges, sibling pairs split by tree, the corruption of turn p."""

from __future__ import annotations

import importlib
import re
import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
conversations = importlib.import_module("conversations")
multiturn = importlib.import_module("multiturn_midb")


def spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"\S+", text)]


def count(text: str) -> int:
    """Words, plus a prefix and two special tokens, as the encoder would count a prompt."""
    return len(spans(text)) + 3


def test_a_single_turn_exchange_is_the_sample_itself():
    turns = [{"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "Seven."}]
    (ex,) = conversations.exchange_texts(turns, count, spans, limit=64)
    assert (ex.turn, ex.instruction, ex.response) == (0, "Name a prime.", "Seven.")


def test_context_is_cut_from_the_left_and_the_question_kept_whole():
    long_answer = " ".join(f"w{i}" for i in range(100))
    question = "and the last one? " + " ".join(f"q{i}" for i in range(20))
    turns = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": long_answer},
        {"role": "user", "content": question},
        {"role": "assistant", "content": "done"},
    ]
    first, second = conversations.exchange_texts(turns, count, spans, limit=50)
    assert first.instruction == "first question"  # the bi-encoder does not read the system prompt
    assert second.instruction.endswith("\n" + question) and count(second.instruction) <= 50
    context = second.instruction[: -len(question) - 1]
    assert context.endswith("w99") and "first question" not in context
    assert count(second.instruction) >= 49  # as much context as fits (one token kept for the newline)
    assert first.id != second.id
    # a question longer than the limit leaves no context at all
    assert conversations.exchange_texts(turns, count, spans, limit=10)[1].instruction == question


def test_replacing_turn_p_changes_that_answer_only():
    turns = multiturn.turns_of(["a1", "a2", "a3"], ["q1", "q2", "q3"])
    out = conversations.replace_answer(turns, 2, "bad")
    assert [t["content"] for t in out] == ["q1", "a1", "q2", "bad", "q3", "a3"]
    assert turns[3]["content"] == "a2"  # the input is not changed
    with pytest.raises(ValueError):
        conversations.replace_answer(turns, 4, "bad")


def test_every_corruption_of_turn_p_replaces_only_turn_p():
    records = pd.DataFrame(
        {
            "lang": ["de"] * 5,
            "source": [1, 2, 3, 4, 5],
            "revised_prompt": [f"Frage {i}" for i in range(5)],
            "revised_response": [f"Die gute Antwort Nummer {i} mit einigen weiteren Worten hier." for i in range(5)],
            "raw_response": [f"MT Antwort {i}" for i in range(5)],
        }
    )
    conv, other = {"lang": "de", "records": [0, 1, 2]}, {"lang": "de", "records": [3, 4]}
    versions = multiturn.variants(conv, records, other)
    assert versions[0][:2] == (0, "intact")
    intact = [t["content"] for t in versions[0][2]]
    assert len(versions) == 1 + 3 * len(conversations.CORRUPTIONS)
    for p, kind, turns in versions[1:]:
        got = [t["content"] for t in turns]
        changed = [i for i, (a, b) in enumerate(zip(intact, got, strict=True)) if a != b]
        assert changed == [2 * p - 1], (p, kind)
        new = got[2 * p - 1]
        if kind == "raw_mt":
            assert new == f"MT Antwort {p - 1}"
        elif kind == "other_answer":  # the other conversation's answer at p, or its last one
            assert new == records.at[[3, 4][min(p, 2) - 1], "revised_response"]
        else:
            assert intact[2 * p - 1].startswith(new) and len(new) < len(intact[2 * p - 1])


def _msg(mid, role, text, rank=None, replies=()):
    return {"message_id": mid, "role": role, "text": text, "rank": rank, "replies": list(replies)}


def test_sibling_pairs_rank_order_depth_and_context():
    inner = _msg(
        "p2",
        "prompter",
        "follow-up",
        replies=[_msg("c1", "assistant", "late good", 0), _msg("c2", "assistant", "late bad", 1)],
    )
    tree = {
        "message_tree_id": "t1",
        "prompt": _msg(
            "p1",
            "prompter",
            "hello",
            replies=[
                _msg("a2", "assistant", "second", 1, [inner]),
                _msg("a1", "assistant", "best", 0),
                _msg("a3", "assistant", "third", 2),
                _msg("a4", "assistant", "unranked"),
            ],
        ),
    }
    pairs = conversations.sibling_pairs(tree)
    assert [(p["better"], p["worse"], p["depth"]) for p in pairs] == [
        ("best", "second", 1),
        ("best", "third", 1),
        ("second", "third", 1),
        ("late good", "late bad", 2),
    ]
    assert [t["content"] for t in pairs[-1]["context"]] == ["hello", "second", "follow-up"]
    assert [t["role"] for t in pairs[-1]["context"]] == ["user", "assistant", "user"]
    assert {p["tree"] for p in pairs} == {"t1"}


def test_tree_split_is_disjoint_complete_and_seeded():
    ids = [f"tree{i}" for i in range(99)]
    train, test = conversations.split_trees(ids, seed=42)
    assert train.isdisjoint(test) and train | test == set(ids) and len(test) == 50
    assert conversations.split_trees(list(reversed(ids)), seed=42) == (train, test)
    assert conversations.split_trees(ids, seed=7)[1] != test


def test_aggregates():
    s = [0.9, 0.8, 0.95]
    assert conversations.AGGREGATES["first"](s) == 0.9
    assert conversations.AGGREGATES["min"](s) == 0.8
    assert min(s) < conversations.softmin(s) < sum(s) / 3
    assert conversations.softmin(s, temperature=1e-4) == pytest.approx(0.8, abs=1e-3)
    assert list(conversations.rank_normalise([3.0, 1.0, 1.0, 2.0])) == [1.0, 0.0, 0.0, 2 / 3]


def test_combination_ranks_each_scorer_within_its_language():
    qsm = [0.9, 0.8, 100.0, 200.0]
    length = [10.0, 30.0, 5.0, 1.0]
    out = conversations.combine_ranked([qsm, length], [0.5, 0.5], ["de", "de", "fr", "fr"])
    # de: qsm ranks (1, 0), length (0, 1); fr: qsm (0, 1), length (1, 0): units and languages drop out
    assert list(out) == [0.5, 0.5, 0.5, 0.5]
    assert list(conversations.combine_ranked([qsm, length], [1.0, 0.0], ["de", "de", "fr", "fr"])) == [1, 0, 0, 1]


def test_conversations_keep_one_language_and_never_repeat_a_record():
    records = pd.DataFrame(
        {"lang": ["de"] * 20 + ["fr"] * 20, "source": list(range(20)) * 2, "revised_prompt": ["q"] * 40}
    )
    convs = multiturn.build_conversations(records, per_length=2, seed=42)
    assert [len(c["records"]) for c in convs] == [2, 2, 3, 3, 4, 4] * 2
    for c in convs:
        assert set(records.loc[c["records"], "lang"]) == {c["lang"]}
    used = [r for c in convs for r in c["records"]]
    assert len(used) == len(set(used))  # no record in two conversations, none twice in one
    assert multiturn.build_conversations(records.iloc[::-1], per_length=2, seed=42) == convs
    with pytest.raises(ValueError, match="too few records"):
        multiturn.build_conversations(records, per_length=3, seed=42)


def test_z_combination_is_a_runs_weighted_mean_of_z_scores_per_language():
    qsm, length = [0.2, 0.4, 0.9, 0.9], [100.0, 300.0, 5.0, 7.0]
    out = conversations.combine_z([qsm, length], [3.0, 1.0], ["de", "de", "fr", "fr"])
    # de: both z-scores are (-1, 1); fr: qsm ties (std 0 -> 0), length (-1, 1), weights scaled to sum to one
    assert out == pytest.approx([-1.0, 1.0, -0.25, 0.25])


def test_fitted_weights_follow_the_contrasts_and_ship_as_a_runs_weights():
    weights = importlib.import_module("preference_weights")
    rng = np.random.default_rng(0)
    # feature 0 decides the first contrast, feature 2 the second, feature 1 is noise in both
    a = rng.normal(size=(200, 3)) + [2.0, 0.0, 0.0]
    b = rng.normal(size=(200, 3)) + [0.0, 0.0, 2.0]
    coef = weights.fit_weights([a, b])
    assert coef[0] > 0.5 and coef[2] > 0.5 and abs(coef[1]) < 0.3
    shipped = weights.shipped_weights(np.array([3.0, -1.0, 1.0]))
    assert shipped == {"qsm": 0.75, "length": 0.25}  # a negative coefficient drops its scorer
