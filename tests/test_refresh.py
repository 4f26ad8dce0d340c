"""A scheduled refresh over a grown corpus computes only the new samples, then re-clusters and re-selects."""

from __future__ import annotations

import json

import numpy as np

from mdaq_spark import schema as S
from mdaq_spark.io.delta import read_delta
from mdaq_spark.rundir import ENCODINGS, SELECTED
from tests.conftest import require_midb
from tests.test_pipeline import _run, _scores, _table


def _write(folder, records_by_lang: dict[str, list]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for lang, records in records_by_lang.items():
        (folder / f"{lang}.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")


def test_refresh_encodes_only_new_samples(spark, model_cache, tmp_path):
    midb = require_midb("German", "Malay")
    source = {lang: json.loads((midb / f"{lang}.json").read_text(encoding="utf-8")) for lang in ("German", "Malay")}
    corpus, out = tmp_path / "corpus", tmp_path / "run"
    _write(corpus, {lang: records[:20] for lang, records in source.items()})
    first = _run(spark, model_cache, [corpus], out, "output.format=delta")
    old_n = first["counts"]["kept"]
    assert first["stage_info"]["encode"]["rows_through_model_udf"] == old_n
    old_encodings = _table(spark, out, ENCODINGS).set_index(S.EXCHANGE_ID)  # single-turn: one exchange a sample

    # the corpus grows by one record per language (two samples each: raw and revised)
    _write(corpus, {lang: records[:21] for lang, records in source.items()})
    second = _run(spark, model_cache, [corpus], out, "output.format=delta")
    new_n = second["counts"]["kept"] - old_n
    assert 0 < new_n <= 4
    for stage in ("encode", "score"):
        info = second["stage_info"][stage]
        assert info["rows_through_model_udf"] == info["computed"] == new_n, (stage, info)
        assert info["reused"] == old_n
    assert second["stages_skipped"] == []  # cluster and select ran again over the whole corpus
    assert sum(e["samples"] for e in second["per_language"].values()) == old_n + new_n

    # stored encodings of the old samples were not touched; no sample is stored twice
    encodings = _table(spark, out, ENCODINGS)
    assert encodings[S.EXCHANGE_ID].is_unique and len(encodings) == old_n + new_n
    kept = encodings.set_index(S.EXCHANGE_ID).loc[old_encodings.index]
    assert all(
        np.array_equal(a, b)
        for a, b in zip(kept[S.RESPONSE_EMBEDDING], old_encodings[S.RESPONSE_EMBEDDING], strict=True)
    )

    # the reused results agree with a fresh run over the grown corpus (the batches differ, so the
    # floats may differ in the last bits, never more)
    fresh = _run(spark, model_cache, [corpus], tmp_path / "fresh")
    ours, theirs = _scores(spark, out, second), _scores(spark, tmp_path / "fresh", fresh)
    assert set(ours.index) == set(theirs.index)
    assert np.allclose(ours.loc[theirs.index].to_numpy(), theirs.to_numpy(), atol=1e-5)
    # selected/ is one Delta table: the refresh MERGEd into it, and it now equals this run's selection
    assert first["stage_info"]["select"]["delta"]["version"] == 0
    assert second["stage_info"]["select"]["delta"]["version"] == 1
    selected = read_delta(spark, str(out / SELECTED)).toPandas()
    assert len(selected) == second["counts"]["selected"] and selected[S.SAMPLE_ID].is_unique
    assert set(selected[S.SAMPLE_ID]) <= set(ours.index)
    fresh_selected = _table(spark, tmp_path / "fresh", SELECTED)
    assert len(fresh_selected) == len(selected)
