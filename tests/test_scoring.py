"""Scoring exchanges end to end: every turn judged, stores per exchange and per scorer, scorers as plug-ins.

One sequence of real runs on one small multi-turn corpus, shared by the tests (module fixture):
  a: the default scorer (the QSM) on conversations of one to three exchanges;
  b: one conversation grown by a turn: only the new exchange is encoded and scored;
  c: three scorers added (length, a real tiny reward model through its chat template, a kind this
     test registers): only they compute, the QSM reuses every stored score;
  d: the same scorers reweighted: no scorer computes anything.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mdaq_spark import schema as S
from mdaq_spark.config import load_config
from mdaq_spark.pipeline.runner import run_pipeline
from mdaq_spark.rundir import SCORES, SELECTED
from mdaq_spark.scoring.base import Scorer, kind_class, register
from mdaq_spark.stages.base import digest
from tests.tiny_models import tiny_reward_model

ENGLISH = [
    (
        "How do I boil an egg so the yolk stays soft?",
        "Boil the egg for six minutes, then cool it.",
    ),
    ("What is the capital of Australia?", "The capital of Australia is Canberra, not Sydney."),
    ("Name three primary colours.", "Red, yellow and blue are the traditional primary colours."),
    ("Why is the sea salty?", "Rivers carry dissolved minerals into the sea, and evaporation leaves the salt."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What does a thermometer measure?", "A thermometer measures temperature."),
]
FOLLOW_UPS = [
    ("And how long for a hard yolk?", "About ten minutes gives a firm, fully set yolk."),
    ("Can I cool it in cold tap water?", "Yes, cold running water for a minute stops the cooking."),
]


def _conversation(pairs: list[tuple[str, str]], system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    for question, answer in pairs:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages}


def _corpus(folder: Path, grown: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    first = [ENGLISH[0], *FOLLOW_UPS[: 2 if grown else 1]]
    records = [
        _conversation(first, "You are a careful cook."),
        _conversation([ENGLISH[1], ("And of New Zealand?", "Wellington is the capital of New Zealand.")]),
        *[_conversation([pair]) for pair in ENGLISH[2:]],
    ]
    path = folder / "chats.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# ---------------------------------------------------------------------- a scorer kind defined here


@register("answer_words")
@dataclass(frozen=True)
class AnswerWords(Scorer):
    """Words in the answer: a plug-in kind, registered by this module alone."""

    def fingerprint(self, encodings: str) -> str:
        return digest("answer_words", "1")

    def score(self, model: Any, batch: pa.RecordBatch) -> np.ndarray:
        return np.array([len(t.split()) for t in batch.column(S.RESPONSE).to_pylist()], dtype=np.float64)


def _run(spark, model_cache, corpus: Path, out: Path, scorers: list[dict] | None = None) -> dict:
    fields = {"input.paths": [str(corpus)], "output.path": str(out)}
    if scorers is not None:
        fields["scoring.scorers"] = scorers
    overrides = ["spark.shuffle_partitions=2", f"model.cache_dir={model_cache}", "clustering.max_k=2"]
    return run_pipeline(spark, load_config(None, overrides, **fields))


@pytest.fixture(scope="module")
def runs(spark, model_cache, tmp_path_factory):
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers need not import the tests package
    root = tmp_path_factory.mktemp("scoring")
    words = {w for q, a in ENGLISH + FOLLOW_UPS for w in f"{q} {a}".lower().split()}
    reward = str(tiny_reward_model(root / "reward", words))
    small, grown = _corpus(root / "v1", grown=False), _corpus(root / "v2", grown=True)
    out = root / "run"
    added = [
        {"kind": "qsm"},
        {"kind": "length", "weight": 0.5},
        {"kind": "sequence_classifier", "model": reward, "weight": 1.0},
        {"kind": "answer_words", "weight": 0.25},
    ]
    reweighted = [{**s, "weight": 2.0} if s["kind"] == "length" else s for s in added]
    kept = spark.sparkContext._jsc.getPersistentRDDs().size()
    stats = {
        "a": _run(spark, model_cache, small, out),
        "b": _run(spark, model_cache, grown, out),
    }
    stats["b_selected"] = spark.read.parquet(str(out / SELECTED)).toPandas()
    stats["b_scores"] = spark.read.parquet(str(out / SCORES)).toPandas()
    stats["c"] = _run(spark, model_cache, grown, out, added)
    stats["c_selected"] = spark.read.parquet(str(out / SELECTED)).toPandas()
    stats["d"] = _run(spark, model_cache, grown, out, reweighted)
    stats["kept_after"] = spark.sparkContext._jsc.getPersistentRDDs().size() - kept
    return stats


def test_every_answer_is_scored_and_the_sample_scores_their_mean(runs):
    scores = runs["b_scores"]
    scores = scores[scores[S.MODEL_FINGERPRINT] == runs["b"]["stage_info"]["score"][S.MODEL_FINGERPRINT]]
    turns = {len(t) for t in scores[S.TURN_SCORES]}
    assert turns == {1, 2, 3}  # the grown conversation has three answers
    for _, row in scores.iterrows():
        t = list(row[S.TURN_SCORES])
        # scoring.aggregate: mean by default; the weakest turn is named whatever the aggregate
        assert row[S.QSM_SCORE] == pytest.approx(sum(t) / len(t), abs=1e-12) and t[row[S.WEAKEST_TURN]] == min(t)
        assert dict(row[S.SCORER_SCORES]) == {"qsm": row[S.QSM_SCORE]}
    selected = runs["b_selected"]
    assert {S.TURN_SCORES, S.WEAKEST_TURN, S.SCORER_SCORES} <= set(selected.columns)
    assert runs["b"]["turns"]["samples_by_turns"] == {"1": 4, "2": 1, "3": 1}


def test_the_stages_release_the_exchanges_they_split_once(runs):
    # encode and score keep their split conversations for their own jobs only
    assert runs["kept_after"] == 0


def test_a_grown_conversation_encodes_and_scores_only_its_new_turn(runs):
    a, b = runs["a"]["stage_info"], runs["b"]["stage_info"]
    assert a["encode"]["computed"] == 4 + 2 + 2  # four single-turn samples, two conversations of two
    assert b["encode"]["computed"] == 1 and b["encode"]["rows_through_model_udf"] == 1
    assert b["score"]["scorers"]["qsm"]["computed"] == 1


def test_adding_scorers_computes_only_them_and_reweighting_computes_nothing(runs):
    c, d = runs["c"]["stage_info"], runs["d"]["stage_info"]
    assert runs["c"]["stages_skipped"][:2] == ["ingest", "encode"]
    exchanges = 4 + 2 + 3
    assert c["score"]["scorers"]["qsm"]["computed"] == 0
    for name in ("length", "sequence_classifier", "answer_words"):
        assert c["score"]["scorers"][name]["computed"] == exchanges
        assert c["score"]["scorers"][name]["rows_through_model_udf"] == exchanges
        assert d["score"]["scorers"][name]["rows_through_model_udf"] == 0
    assert d["score"][S.MODEL_FINGERPRINT] != c["score"][S.MODEL_FINGERPRINT]  # the combination changed


def test_each_scorers_raw_score_is_kept_and_combined_by_rank(runs):
    selected = runs["c_selected"]
    for _, row in selected.iterrows():
        raw = dict(row[S.SCORER_SCORES])
        assert set(raw) == {"qsm", "length", "sequence_classifier", "answer_words"}
        assert np.isfinite(list(raw.values())).all()
        # rank-normalised and weighted: the combined score lies in [0, 1]
        assert 0.0 <= row[S.QSM_SCORE] <= 1.0 and row[S.QSM_SCORE] == min(row[S.TURN_SCORES])
    answers = {r[S.SAMPLE_ID]: r for _, r in selected.iterrows()}
    for row in answers.values():
        assert dict(row[S.SCORER_SCORES])["answer_words"] >= 1
    # stats.json and the report: each scorer's mean raw score over the selection, in config order
    summary = runs["c"]["scorers"]
    assert list(summary) == ["qsm", "length", "sequence_classifier", "answer_words"]
    assert (summary["length"]["kind"], summary["length"]["weight"]) == ("length", 0.5)
    for name, entry in summary.items():
        raw = [dict(r)[name] for r in selected[S.SCORER_SCORES]]
        assert entry["mean_selected"] == pytest.approx(np.mean(raw), rel=1e-9), name
        assert entry["mean_scored"] is not None


def test_a_scorer_kind_is_one_registration():
    assert kind_class("answer_words") is AnswerWords
    from mdaq_spark.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown scorer kind 'no_such_kind'"):
        kind_class("no_such_kind")


def test_aggregates_min_mean_and_softmin(spark):
    from pyspark.sql import functions as F

    from mdaq_spark.scoring.aggregate import aggregate_array

    df = spark.createDataFrame([([0.7],), ([0.9, 0.5, 0.8],)], ["t"])
    got = df.select(*[aggregate_array(F.col("t"), how, 0.05).alias(how) for how in ("min", "mean", "softmin")])
    one, three = got.collect()
    assert one["min"] == one["mean"] == one["softmin"] == 0.7  # one exchange: its own score, exactly
    assert three["min"] == 0.5 and abs(three["mean"] - 2.2 / 3) < 1e-12
    assert three["min"] < three["softmin"] < three["mean"]  # a smooth minimum, near the weakest turn
    hot = df.select(aggregate_array(F.col("t"), "softmin", 100.0).alias("s")).collect()[1]["s"]
    assert abs(hot - 2.2 / 3) < 1e-3  # a high temperature tends to the mean
