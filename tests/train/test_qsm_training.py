"""QSM training on a few hundred real MIDB triplets: the loss falls, accuracy beats chance, runs repeat exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mdaq_spark.cli import main
from mdaq_spark.config import HeadTrainConfig, TrainQsmConfig
from mdaq_spark.models.qsm import QsmHead, score_and_embed
from mdaq_spark.train.evaluate import evaluate, length_matched
from mdaq_spark.train.head import train_head
from mdaq_spark.train.triplets import load_triplets, split
from tests.conftest import write_midb_subset


@pytest.fixture(scope="module")
def small_midb(tmp_path_factory) -> Path:
    return write_midb_subset(tmp_path_factory.mktemp("midb_small"), {"German": 150, "Spanish": 150, "Korean": 60})


def test_triplets_skip_identical_and_split_by_source_record(small_midb):
    data = load_triplets([str(small_midb)])
    assert data.skipped_identical > 0  # MIDB has records the experts left unchanged
    assert (data.triplets["chosen"].str.strip() != data.triplets["rejected"].str.strip()).all()
    assert data.triplets["group"].str.startswith("midb:").all()
    train, seen, unseen = split(data.triplets, 0.2, ["ko"], seed=7)
    assert set(unseen["lang"]) == {"ko"} and "ko" not in set(train["lang"])
    # no source record (in any language) is both trained on and evaluated
    assert not set(train["group"]) & (set(seen["group"]) | set(unseen["group"]))
    assert set(unseen["group"]) <= set(seen["group"]) | set(unseen["group"]) - set(train["group"])
    # Korean records whose source is trained on in German or Spanish are in no split
    ko = data.triplets[data.triplets["lang"] == "ko"]
    assert len(unseen) < len(ko) and len(unseen) > 0
    assert len(train) + len(seen) + len(unseen) + (len(ko) - len(unseen)) == len(data.triplets)


def test_head_training_is_deterministic_and_learns_a_separable_signal():
    rng = np.random.default_rng(0)
    d, n = 16, 400
    a = rng.normal(size=(n, d)).astype(np.float32)
    direction = rng.normal(size=d).astype(np.float32)
    pos = a + 0.5 * rng.normal(size=(n, d)).astype(np.float32)
    neg = pos + 1.5 * direction  # negatives share a shifted direction the head can learn to push away
    params = HeadTrainConfig(epochs=15, batch_size=64, lr=5e-3, margin=0.1, identity_penalty=0.0)
    first, second = train_head(a, pos, neg, params, seed=3), train_head(a, pos, neg, params, seed=3)
    assert np.array_equal(first.response_weight, second.response_weight)
    assert first.losses[-1] < 0.5 * first.losses[0]
    head = QsmHead(first.prompt_weight, first.prompt_bias, first.response_weight, first.response_bias, {})
    gap = score_and_embed(a, pos, head)[0] - score_and_embed(a, neg, head)[0]
    assert (gap > 0).mean() > 0.95


def test_train_qsm_cli_on_real_midb(small_midb, model_cache, tmp_path):
    """The default mode: a layer head over the frozen encoder's pooled layer states."""
    out = tmp_path / "qsm"
    cache = tmp_path / "enc"
    args = [
        "train-qsm",
        "--data",
        str(small_midb),
        "--output",
        str(out),
        "--holdout-langs",
        "ko",
        "--set",
        f"encoding_cache={cache}",
        "--set",
        f"model.cache_dir={model_cache}",
    ]
    assert main(args) == 0
    manifest = json.loads((out / "qsm_head.json").read_text())
    assert manifest["kind"] == "mdaq-qsm-layer-head" and manifest["layers"] == [2, 4, 6, 8, 10, 12]
    losses = manifest["train_losses"]
    assert len(losses) == manifest["hyperparameters"]["epochs"] and losses[-1] < losses[0]
    seen = manifest["metrics"]["eval_seen_languages"]
    assert seen["qsm"]["pairs"] > 0 and "length" in seen and "untrained_cosine" in seen
    assert set(manifest["relevance_accuracy"]["train"]) >= {"qsm", "untrained_cosine"}
    train_acc = json.loads((out / "metrics.json").read_text())
    assert set(train_acc) == {"train", "eval_seen_languages", "eval_unseen_languages"}
    assert train_acc["train"]["qsm"]["overall"]["accuracy"] > 0.6  # beats a coin on what it learned from
    assert abs(train_acc["train"]["random"]["overall"]["accuracy"] - 0.5) < 0.1

    # retraining from the stored layer states gives the same head, bit for bit, without the encoder
    again = tmp_path / "qsm2"
    assert main([*args[:4], str(again), *args[5:]]) == 0
    assert (out / "qsm_head.safetensors").read_bytes() == (again / "qsm_head.safetensors").read_bytes()

    # the trained head loads into the scorer with its layers
    head = QsmHead.load(out)
    assert head.in_dim == 384 and head.layers == (2, 4, 6, 8, 10, 12)
    assert head.quality["quality.1.weight"].shape == (256, 6 * 384)


def test_train_qsm_head_mode_trains_the_affine_head(model_cache, tmp_path):
    folder = write_midb_subset(tmp_path / "midb", {"German": 40})
    out = tmp_path / "affine"
    args = ["train-qsm", "--data", str(folder), "--output", str(out), "--mode", "head",
            "--set", f"encoding_cache={tmp_path / 'enc'}", "--set", f"model.cache_dir={model_cache}",
            "--set", "head.epochs=20", "--set", "eval_fraction=0.25"]  # fmt: skip
    assert main(args) == 0
    manifest = json.loads((out / "qsm_head.json").read_text())
    assert manifest["kind"] == "mdaq-qsm-head" and "layers" not in manifest
    assert manifest["train_losses"][-1] < manifest["train_losses"][0]
    head = QsmHead.load(out)
    assert head.layers == () and head.quality is None


def test_evaluate_counts_ties_half_and_length_match():
    import pandas as pd

    t = pd.DataFrame(
        {
            "lang": ["de", "de", "es"],
            "prompt": ["a", "b", "c"],
            "chosen": ["x" * 100, "y" * 10, "z"],
            "rejected": ["w" * 95, "v" * 50, "q"],
            "distance": [1.0, 5.0, 2.0],
            "source": ["f"] * 3,
            "group": ["g1", "g2", "g3"],
        }
    )
    assert length_matched(t).tolist() == [True, False, True]
    r = evaluate(t, {"s": np.array([1.0, -1.0, 0.0])})["s"]
    assert r["overall"]["accuracy"] == pytest.approx(0.5)
    assert r["overall"]["accuracy_length_matched"] == pytest.approx(0.75)
    assert r["per_language"]["de"]["accuracy"] == pytest.approx(0.5)


def test_config_rejects_unknown_training_keys():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        TrainQsmConfig.model_validate({"head": {"epoch": 3}})


def test_full_finetune_mode_saves_a_loadable_encoder(model_cache, tmp_path):
    """Mode "full" on a handful of triplets (two optimiser steps): it trains on both contrasts, saves a real
    encoder with its training records, reports relevance, and eval-qsm then leaves those records out."""
    folder = write_midb_subset(tmp_path / "tiny", {"Portuguese": 24})
    out = tmp_path / "qsm-full"
    args = ["train-qsm", "--data", str(folder), "--output", str(out), "--mode", "full",
            "--set", f"model.cache_dir={model_cache}", "--set", f"encoding_cache={tmp_path / 'enc'}",
            "--set", "finetune.max_steps=2", "--set", "finetune.batch_size=4", "--set", "eval_fraction=0.3",
            "--set", "model.max_seq_length=64"]  # fmt: skip
    assert main(args) == 0
    manifest = json.loads((out / "mdaq_model.json").read_text())
    assert manifest["kind"] == "mdaq-qsm-encoder" and manifest["hyperparameters"]["steps"] == 2
    assert len(manifest["train_losses"]) == 2
    metrics = manifest["metrics"]["eval_seen_languages"]
    assert {"qsm", "untrained_cosine", "length", "random"} <= set(metrics)
    data = manifest["data"]
    # one more triplet per training triplet, its negative another instruction's response
    assert data["train_with_relevance"] == 2 * data["train"] > 0
    assert manifest["hyperparameters"]["relevance_negatives"] == 1
    relevance = manifest["relevance_accuracy"]["eval_seen_languages"]
    assert {"qsm", "untrained_cosine", "length", "random"} <= set(relevance)
    assert 0.0 <= relevance["qsm"] <= 1.0

    from sentence_transformers import SentenceTransformer

    tuned = SentenceTransformer(str(out), device="cpu", local_files_only=True)
    assert tuned.encode(["query: Olá"], normalize_embeddings=True).shape == (1, 384)

    from mdaq_spark.config import ModelConfig
    from mdaq_spark.train.qsm_training import eval_qsm
    from mdaq_spark.train.triplets import load_triplets

    triplets = load_triplets([str(folder)]).triplets
    trained = set(data["train_groups"])
    assert len(trained) == data["train"]  # one Portuguese triplet per source record
    model = ModelConfig(name=str(out), qsm_head="none", cache_dir=model_cache, max_seq_length=64)
    result = eval_qsm([str(folder)], model, str(tmp_path / "enc"), None, seed=1)
    assert result["excluded_trained"] == int(triplets["group"].isin(trained).sum()) == data["train"]
    assert result["evaluated"] == len(triplets) - data["train"]


def test_reuse_run_copies_a_runs_encodings_into_the_cache(tmp_path):
    """--reuse-run: a pipeline run's stored encodings stand in for encoding the same texts again."""
    import pandas as pd

    from mdaq_spark.train.encodings import EncodingCache, encode_texts, seed_from_run
    from mdaq_spark.train.triplets import prompt_of

    run = tmp_path / "run"
    (run / "encodings").mkdir(parents=True)
    (run / "normalized").mkdir()
    p, r = np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32)[::-1].copy()
    pd.DataFrame(
        {
            "sample_id": ["a", "b", "c"],
            "prompt_embedding": list(p),
            "response_embedding": list(r),
            "encoder_fingerprint": ["fp1", "fp1", "other"],
        }
    ).to_parquet(run / "encodings" / "part.parquet")
    pd.DataFrame(
        {
            "sample_id": ["a", "b", "c"],
            "instruction": ["Hallo?", "Wer?", "Was?"],
            "input": ["", None, ""],
            "response": ["Hi.", "Ich.", "Das."],
        }
    ).to_parquet(run / "normalized" / "part.parquet")
    cache = EncodingCache(tmp_path / "cache", "fp1")
    assert seed_from_run(cache, run, "query: ", "passage: ") == 4  # two prompts + two responses of encoder fp1
    got = encode_texts(cache, None, [prompt_of("Wer?", None), prompt_of("Hallo?", "")], "query: ")
    assert np.array_equal(got, p[[1, 0]])
    assert np.array_equal(encode_texts(cache, None, ["Ich."], "passage: "), r[[1]])
    with pytest.raises(RuntimeError, match="not in the encoding cache"):
        encode_texts(cache, None, ["Das."], "passage: ")  # another encoder's row was not copied
