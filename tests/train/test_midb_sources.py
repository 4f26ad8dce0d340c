"""MIDB alignment by source record, and splits no translation crosses (real MIDB files)."""

from __future__ import annotations

import json

import pytest

from mdaq_spark.errors import InputError
from mdaq_spark.train import midb
from mdaq_spark.train.triplets import load_triplets, split
from tests.conftest import MIDB_DIR, require_midb, write_midb_subset


def _load(name: str) -> list:
    require_midb(name.removesuffix(".json"))
    return json.loads((MIDB_DIR / name).read_text(encoding="utf-8"))


def test_a_file_missing_one_record_aligns_with_one_gap():
    german, spanish = _load("German.json"), _load("Spanish.json")
    assert len(german) == len(spanish) - 1
    mapping, how = midb.align(german, spanish)
    lo, hi = how["gap"]
    assert mapping[:lo] == list(range(lo)) and all(m == i + 1 for i, m in enumerate(mapping) if i >= hi)
    assert hi - lo < 20  # the gap is pinned down to a few records
    # the numbers of aligned records agree far more often than chance would allow
    known = [(i, m) for i, m in enumerate(mapping) if m is not None]
    same = sum(midb._signature(german[i]) == midb._signature(spanish[m]) for i, m in known)
    signed = sum(midb._signature(german[i]) is not None for i, _ in known)
    assert same > 0.8 * signed


def test_unalignable_files_are_an_input_error():
    spanish = _load("Spanish.json")
    with pytest.raises(InputError):
        midb.align(spanish[::-1], spanish)  # same length, shuffled order: offset 0 does not win


def test_split_of_two_aligned_files_shares_no_source_record(tmp_path):
    folder = write_midb_subset(tmp_path / "two", {"German": 600, "Spanish": 601})
    data = load_triplets([str(folder)])
    by_lang = data.triplets.groupby("lang")["group"].apply(set)
    assert len(by_lang["de"] & by_lang["es"]) > 400  # the files translate one list: their sources coincide
    train, seen, unseen = split(data.triplets, 0.25, [], seed=3)
    assert len(unseen) == 0 and len(seen) > 50
    assert not set(train["group"]) & set(seen["group"])
    # a held-out language loses its trained sources too: nothing of it shares a source with training
    train, seen, unseen = split(data.triplets, 0.25, ["es"], seed=3)
    assert set(unseen["lang"]) == {"es"} and not set(train["group"]) & set(unseen["group"])


def test_a_single_file_gets_its_sources_from_its_folder():
    """Reading one language file alone gives the sources it has when its folder is read."""
    require_midb("German")
    alone = load_triplets([str(MIDB_DIR / "German.json")]).triplets
    together = midb.load_midb(MIDB_DIR)
    de = together[together["lang"] == "de"].dropna(subset=["source"])
    by_prompt = dict(zip(de["revised_prompt"], "midb:" + de["source"].astype(str), strict=True))
    common = alone[alone["prompt"].isin(by_prompt)]
    assert len(common) > 2000
    assert (common["group"] == common["prompt"].map(by_prompt)).mean() > 0.99  # repeated prompts aside


def test_eval_qsm_leaves_out_the_heads_training_records(tmp_path, model_cache):
    """A head's manifest names its training source records; eval-qsm scores only the others."""
    import numpy as np
    from safetensors.numpy import save_file

    from mdaq_spark.config import ModelConfig
    from mdaq_spark.models.qsm import HEAD_MANIFEST, HEAD_WEIGHTS
    from mdaq_spark.train.qsm_training import eval_qsm

    folder = write_midb_subset(tmp_path / "midb", {"German": 30, "Spanish": 30})
    triplets = load_triplets([str(folder)]).triplets
    trained = sorted(set(triplets["group"]))[:10]
    head = tmp_path / "head"
    head.mkdir()
    eye, zero = np.eye(384, dtype=np.float32), np.zeros(384, dtype=np.float32)
    save_file(
        {"prompt.weight": eye, "prompt.bias": zero, "response.weight": eye, "response.bias": zero},
        str(head / HEAD_WEIGHTS),
    )
    (head / HEAD_MANIFEST).write_text(json.dumps({"data": {"train_groups": trained}}))
    model = ModelConfig(qsm_head=str(head), cache_dir=model_cache)
    result = eval_qsm([str(folder)], model, str(tmp_path / "enc"), None, seed=1)
    expected_out = int(triplets["group"].isin(trained).sum())
    assert expected_out > 0 and result["excluded_trained"] == expected_out
    assert result["evaluated"] == len(triplets) - expected_out
    assert result["metrics"]["all"]["qsm"]["overall"]["pairs"] == result["evaluated"]
    everything = eval_qsm([str(folder)], model, str(tmp_path / "enc"), None, seed=1, include_trained=True)
    assert everything["excluded_trained"] == 0 and everything["evaluated"] == len(triplets)


def test_the_shipped_head_lists_every_source_record_its_training_drew_on():
    from mdaq_spark.models import registry
    from mdaq_spark.models.qsm import QsmHead
    from mdaq_spark.train.qsm_training import trained_groups

    require_midb("German")
    shipped = registry.resolve_head("auto", "multilingual-e5-small")
    listed = trained_groups(shipped)
    data = QsmHead.load(shipped).manifest["data"]
    everything = load_triplets([str(MIDB_DIR)]).triplets
    # every triplet of a listed source record, in any language, was trained on: none is evaluated
    assert int(everything["group"].isin(listed).sum()) == data["train"]
    unseen = everything[everything["group"].notna() & ~everything["group"].isin(listed)]
    assert len(unseen) == data["eval_seen_languages"] > 0.05 * len(everything)
