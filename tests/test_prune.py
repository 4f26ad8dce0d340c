"""The select stage with every pre-selection step on, over a constructed run directory (no model needed).

normalized/ comes from the real language-id UDF; scores/ and clusters/ are written by hand so
that the embeddings, hence the near-duplicates, are known. Checks the candidates table, the
selection groups, stats.json and report.html.
"""

from __future__ import annotations

import numpy as np
import pytest

from mdaq_spark import schema as S
from mdaq_spark.config import LanguageConfig, load_config
from mdaq_spark.report.stats import write_stats
from mdaq_spark.rundir import CANDIDATES, CLUSTERS, NORMALIZED, QUARANTINE, SCORES, SELECTED, RunDir, RunLog
from mdaq_spark.stages.base import StageContext
from mdaq_spark.stages.language import add_languages
from mdaq_spark.stages.select import SelectStage

GERMAN = [
    ("Wie beginne ich den Tag gut?", "Mit einem Glas Wasser, etwas Bewegung und einem ruhigen Frühstück am Tisch."),
    ("Was ist ein gutes Hobby?", "Lesen ist ein gutes Hobby, weil es entspannt und man dabei viel Neues lernt."),
    ("Wie pflege ich Pflanzen?", "Gieße sie regelmäßig, stelle sie ans Licht und dünge sie im Frühling ein wenig."),
    ("Wie lerne ich kochen?", "Beginne mit einfachen Rezepten und koche jede Woche ein neues Gericht nach."),
    ("Warum ist Schlaf wichtig?", "Im Schlaf erholt sich der Körper, und das Gehirn ordnet die Erlebnisse des Tages."),
    ("Wie spare ich Strom?", "Schalte Geräte ganz aus, nutze LED-Lampen und wasche mit niedriger Temperatur."),
]
ROWS = [
    # (sample_id, lang hint, instruction, response, score, cluster, embedding direction)
    *[(f"de{i}", "de", ins, resp, 0.5 - 0.05 * i, i % 2, i) for i, (ins, resp) in enumerate(GERMAN)],
    # the raw translation twin of de0: almost the same embedding, lower score -> near_duplicate of de0
    ("de0_raw", "de", GERMAN[0][0], GERMAN[0][1] + " Gut.", 0.3, 0, 0),
    # two maths problems: with a cap of 1 the better one stays
    ("de_math1", "de", "Berechne die Fläche.", "Fläche = 3 * 4 = 12, Umfang = 2 * (3 + 4) = 14.", 0.2, 1, 7),
    ("de_math2", "de", "Berechne das Volumen.", "Volumen = 2 * 3 * 4 = 24, also 24 = 6 * 4 Kubikmeter.", 0.1, 1, 8),
    # the French translation of de_math1, scored lower: with one language per group it is a translated copy
    ("fr_math1", "fr", "Calculez l'aire.", "Aire = 3 * 4 = 12, périmètre = 2 * (3 + 4) = 14.", 0.15, 1, 7),
    # answered in English although German was asked: flagged (and dropped with action=drop)
    ("de_wrong", "de", "Was ist ein guter Rat für den Alltag?", "The most important thing is to stay hydrated "
     "throughout the whole day and to take regular breaks.", 0.45, 0, 9),
    # asked for English and answered in English: cross-lingual, its own group
    ("de_xl", "de", "Übersetze ins Englische: Ich trinke morgens gern Kaffee mit Milch.",
     "I like to drink coffee with milk in the morning.", 0.4, 1, 10),
]  # fmt: skip
DIM = 16


def _embedding(direction: int, sample_id: str) -> list[float]:
    v = np.eye(DIM)[direction] + 0.05 * np.eye(DIM)[15]
    if sample_id.endswith("_raw"):
        v = v + 0.01 * np.eye(DIM)[14]
    if sample_id.startswith("fr_"):
        v = v + 0.02 * np.eye(DIM)[13]
    return [float(x) for x in v / np.linalg.norm(v)]


@pytest.fixture(scope="module")
def finished(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    content = spark.createDataFrame(
        [(sid, "test", "alpaca", None, ins, "", resp, "[]", hint) for sid, hint, ins, resp, *_ in ROWS],
        f"{S.SAMPLE_ID} string, {S.SOURCE} string, {S.RECORD_FORMAT} string, {S.VARIANT} string, "
        f"{S.INSTRUCTION} string, {S.INPUT} string, {S.RESPONSE} string, {S.HISTORY} string, {S.LANG_HINT} string",
    )
    add_languages(content, LanguageConfig()).write.partitionBy(S.LANG).parquet(str(root / NORMALIZED))
    spark.createDataFrame([], f"{S.SAMPLE_ID} string, {S.QUARANTINE_REASON} string").write.parquet(
        str(root / QUARANTINE)
    )
    spark.createDataFrame(
        [
            (sid, hint, score, _embedding(d, sid), "fp", [score], 0, {"qsm": score})
            for sid, hint, _, _, score, _, d in ROWS
        ],
        f"{S.SAMPLE_ID} string, {S.LANG} string, {S.QSM_SCORE} double, {S.EMBEDDING} array<float>, "
        f"{S.MODEL_FINGERPRINT} string, {S.TURN_SCORES} array<double>, {S.WEAKEST_TURN} int, "
        f"{S.SCORER_SCORES} map<string,double>",
    ).write.parquet(str(root / SCORES))
    spark.createDataFrame(
        [(sid, hint, cluster, 0.1) for sid, hint, _, _, _, cluster, _ in ROWS],
        f"{S.SAMPLE_ID} string, {S.LANG} string, {S.CLUSTER_ID} int, {S.CENTROID_DISTANCE} double",
    ).write.parquet(str(root / CLUSTERS))
    cfg = load_config(
        None,
        [
            "filters.action=drop",
            "near_dup.enabled=true",
            "near_dup.threshold=0.99",
            "domains.enabled=true",
            "domains.max_per_lang={math: 1}",
            "copies.enabled=true",
            "copies.max_langs_per_group=1",
            "copies.keep=best_score",
            "crosslingual.separate_budget=true",
            "crosslingual.budget_count=1",
            "crosslingual.budget_fraction=null",
            "selection.budget_fraction=0.5",
        ],
        **{"output.path": str(root)},
    )
    rundir = RunDir.of_job(spark, cfg.output)
    # "fp": which stored scores are this run's (the store adopts scores/)
    SelectStage(cfg, "fp", SCORES, "fp", cluster_key="c", score_key="s").run(StageContext(spark, rundir))
    # what the ingest and score stages record of themselves, as far as stats.json and the report read it
    score = {S.MODEL_FINGERPRINT: "fp", "qsm_head": "none (untrained encoder cosine)", "qsm_head_mismatch": []}
    runlog = RunLog(info={"ingest": {"parsed_rows": len(ROWS)}, "score": score})
    stats = write_stats(spark, rundir, cfg, runlog, score_fingerprint="fp").to_json()
    table = lambda name: {r[S.SAMPLE_ID]: r for r in spark.read.parquet(str(root / name)).collect()}  # noqa: E731
    return root, stats, table(CANDIDATES), table(SELECTED)


def test_each_sample_gets_its_decision(finished):
    _, _, candidates, selected = finished
    assert set(candidates) == {r[0] for r in ROWS}  # every clustered sample, once
    reasons = {sid: r[S.PRUNE_REASON] for sid, r in candidates.items()}
    assert reasons["de0_raw"] == "near_duplicate" and candidates["de0_raw"][S.DUPLICATE_OF] == "de0"
    assert candidates["de0"][S.NEAR_DUP_COUNT] == 1
    assert reasons["de_math2"] == "domain_cap" and reasons["de_math1"] is None
    assert reasons["fr_math1"] == "translated_copy"
    assert candidates["fr_math1"][S.COPY_GROUP] == candidates["de_math1"][S.COPY_GROUP] == "de_math1"
    assert candidates["de_math1"][S.COPY_COUNT] == 1 and candidates["fr_math1"][S.COPY_COUNT] == 0
    # math in two languages, general German samples: only math/code are grouped by default
    assert all(candidates[f"de{i}"][S.COPY_GROUP] is None for i in range(6))
    assert candidates["de_math1"][S.DOMAIN] == "math" and candidates["de1"][S.DOMAIN] == "general"
    assert reasons["de_wrong"] == "flagged"
    assert "response_language_differs" in candidates["de_wrong"]["flags"]
    assert candidates["de_xl"][S.CROSSLINGUAL] and reasons["de_xl"] is None and candidates["de_xl"]["flags"] == []
    assert all(reasons[f"de{i}"] is None for i in range(6))
    # pool: 6 German + de_math1 = 7 monolingual -> budget round(3.5) = 4; cross-lingual: its own 1
    assert {sid for sid, r in selected.items() if r[S.GROUP] == "monolingual"} <= {f"de{i}" for i in range(6)} | {
        "de_math1"
    }
    assert sum(r[S.GROUP] == "monolingual" for r in selected.values()) == 4
    assert [sid for sid, r in selected.items() if r[S.GROUP] == "crosslingual"] == ["de_xl"]
    assert selected["de0"][S.NEAR_DUP_COUNT] == 1
    assert not any(sid.startswith("fr_") for sid in selected)


def test_stats_and_report_show_the_counts(finished):
    root, stats, _, _ = finished
    pruning = stats["pruning"]
    assert pruning["candidates"] == len(ROWS) and pruning["candidates_are_all_clustered"]
    assert pruning["pruned_by_reason"] == {"near_duplicate": 1, "domain_cap": 1, "flagged": 1, "translated_copy": 1}
    assert pruning["to_selection"] == len(ROWS) - 4
    assert pruning["copy_groups"] == {
        "groups": 1,
        "grouped_samples": 2,
        "largest_group": 2,
        "groups_by_size": {"2": 1},
        "groups_by_languages": {"2": 1},
    }
    assert stats["per_language"]["fr"]["pruned"] == {"translated_copy": 1}
    de = stats["per_language"]["de"]
    assert de["pruned"] == {"near_duplicate": 1, "domain_cap": 1, "flagged": 1}
    assert de["crosslingual"] == 1 and de["domains"]["math"] == 2
    assert de["selected_by_group"] == {"crosslingual": 1, "monolingual": 4}
    assert de["flags"]["response_language_differs"] == 1
    html = (root / "report" / "report.html").read_text()
    assert "Before selection: pruning and tags" in html and "near_duplicate: 1" in html
    assert "translated_copy: 1" in html and "pruned: translated_copy" in html


def test_inspect_lists_the_pruning(finished, capsys):
    from mdaq_spark.cli import main

    root, *_ = finished
    assert main(["inspect", str(root)]) == 0
    out = capsys.readouterr().out
    assert "pruned before selection" in out and "translated_copy" in out and "translated copies: 1 groups" in out
