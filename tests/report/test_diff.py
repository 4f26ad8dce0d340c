"""`mdaq diff` on a scheduled refresh: what the grown corpus added to and removed from the selection, and why."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from mdaq_spark import schema as S
from mdaq_spark.cli import main
from mdaq_spark.config import JobConfig
from mdaq_spark.report import diff as D
from mdaq_spark.rundir import NORMALIZED, SELECTED
from tests.conftest import require_midb
from tests.test_pipeline import _run, _table
from tests.test_refresh import _write


@pytest.mark.parametrize(
    ("change", "in_other", "pruned", "budget", "reason"),
    [
        (D.ADDED, False, None, True, D.NEW_SAMPLE),
        (D.REMOVED, False, None, False, D.REMOVED_SAMPLE),
        (D.REMOVED, True, "near_duplicate", True, D.PRUNED),
        (D.ADDED, True, "flagged", False, D.NO_LONGER_PRUNED),
        (D.ADDED, True, None, True, D.BUDGET_CHANGE),
        (D.REMOVED, True, None, False, D.SCORE_CHANGE),
    ],
)
def test_each_change_has_one_reason(change, in_other, pruned, budget, reason):
    assert D.classify(change, in_other, pruned, budget) == reason


def test_budget_settings_are_per_language():
    a = JobConfig.model_validate({"selection": {"budget_fraction": 0.2, "budget_per_lang": {"de": 5}}})
    b = JobConfig.model_validate({"selection": {"budget_fraction": 0.2, "budget_per_lang": {"de": 6}}})
    assert D.budget_settings(a, "de") != D.budget_settings(b, "de")
    assert D.budget_settings(a, "ms") == D.budget_settings(b, "ms")


def _ids(df) -> set[str]:
    return set(df[S.SAMPLE_ID])


def _cli(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(argv)) == 0
    return out.getvalue()


def test_diff_of_a_refresh_names_every_change(spark, model_cache, tmp_path):
    midb = require_midb("German", "Malay")
    source = {lang: json.loads((midb / f"{lang}.json").read_text(encoding="utf-8")) for lang in ("German", "Malay")}
    corpus, store = tmp_path / "corpus", tmp_path / "store"
    run_a, run_b, run_c = tmp_path / "2026-11-24", tmp_path / "2026-12-01", tmp_path / "2026-12-01-wider"
    _write(corpus, {lang: records[:20] for lang, records in source.items()})
    first = _run(spark, model_cache, [corpus], run_a, f"output.store={store}")
    assert first["previous_run"] is None
    _write(corpus, {lang: records[:21] for lang, records in source.items()})
    second = _run(spark, model_cache, [corpus], run_b, f"output.store={store}")

    diff = D.diff_runs(spark, str(run_a), str(run_b))
    sel_a, sel_b = _ids(_table(spark, run_a, SELECTED)), _ids(_table(spark, run_b, SELECTED))
    new = _ids(_table(spark, run_b, NORMALIZED)) - _ids(_table(spark, run_a, NORMALIZED))
    added = {s[S.SAMPLE_ID]: s for s in diff["samples"] if s["change"] == D.ADDED}
    removed = {s[S.SAMPLE_ID]: s for s in diff["samples"] if s["change"] == D.REMOVED}
    assert set(added) == sel_b - sel_a and set(removed) == sel_a - sel_b
    assert {i for i, s in added.items() if s["reason"] == D.NEW_SAMPLE} == set(added) & new
    # the corpus only grew and nothing is pruned by default; the budgets' settings did not change
    assert {s["reason"] for s in diff["samples"]} <= {D.NEW_SAMPLE, D.SCORE_CHANGE}
    assert any(s["reason"] == D.NEW_SAMPLE for s in diff["samples"]) or not (new & sel_b)
    for lang, entry in diff["per_language"].items():
        assert entry["selected_b"] == second["per_language"][lang]["selected_total"]
        assert entry["selected_a"] == first["per_language"][lang]["selected_total"]
        assert (
            entry["selected_a"] + sum(entry[D.ADDED].values()) - sum(entry[D.REMOVED].values()) == entry["selected_b"]
        )

    # the later run over the shared store links the earlier one, with the same summary, in stats and the page
    assert second["previous_run"]["path"] == str(run_a)
    assert second["previous_run"]["diff"]["totals"] == diff["totals"]
    page = (run_b / "report" / "report.html").read_text(encoding="utf-8")
    assert f"previous run: {run_a}" in page
    index = json.loads((store / "_runs.json").read_text(encoding="utf-8"))
    assert [r["path"] for r in index["runs"]] == [str(run_a), str(run_b)]

    # the command: the same diff as JSON, and a table naming each language
    assert json.loads(_cli("diff", str(run_a), str(run_b), "--json")) == json.loads(json.dumps(diff))
    table = _cli("diff", str(run_a), str(run_b))
    assert all(lang in table for lang in diff["per_language"])

    # a wider budget over the same corpus: every change is the budget's
    third = _run(spark, model_cache, [corpus], run_c, f"output.store={store}", "selection.budget_fraction=0.4")
    assert third["previous_run"]["path"] == str(run_b)
    wider = D.diff_runs(spark, str(run_b), str(run_c))
    assert wider["totals"][D.ADDED] > 0
    assert {s["reason"] for s in wider["samples"]} == {D.BUDGET_CHANGE}
