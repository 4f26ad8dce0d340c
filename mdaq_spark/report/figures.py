"""The report's figures, computed where the data is: Spark aggregates, small results only.

Histograms, cluster sizes and extreme examples are grouped in Spark and only their
summaries reach the driver; the 2-D map takes a seeded sample of at most
`report.projection_sample` embeddings, projected with PCA on the driver. Nothing here
grows with the corpus.
"""

from __future__ import annotations

import numpy as np
from pyspark.sql import Window
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.config import JobConfig
from mdaq_spark.report.run_stats import Figures, typed
from mdaq_spark.rundir import CLUSTERS, NORMALIZED, SCORES, RunDir

_SNIPPET = 280  # characters of instruction/response shown per example


def score_histograms(scored_flagged, bins: int) -> dict[str, dict]:
    """Per language: bin edges and counts of all / selected samples over the language's score range."""
    ranges = scored_flagged.groupBy(S.LANG).agg(F.min(S.QSM_SCORE).alias("lo"), F.max(S.QSM_SCORE).alias("hi"))
    width = F.greatest(F.col("hi") - F.col("lo"), F.lit(1e-12)) / bins
    binned = scored_flagged.join(ranges, on=S.LANG).withColumn(
        "bin", F.least(F.floor((F.col(S.QSM_SCORE) - F.col("lo")) / width).cast("int"), F.lit(bins - 1))
    )
    rows = (
        binned.groupBy(S.LANG, "lo", "hi", "bin")
        .agg(F.count(F.lit(1)).alias("n"), F.sum(F.col("_selected").cast("int")).alias("kept"))
        .collect()
    )
    out: dict[str, dict] = {}
    for r in rows:
        h = out.setdefault(r[S.LANG], {"lo": r["lo"], "hi": r["hi"], "all": [0] * bins, "selected": [0] * bins})
        h["all"][r["bin"]] = r["n"]
        h["selected"][r["bin"]] = r["kept"] or 0
    return dict(sorted(out.items()))


def cluster_sizes(clusters) -> dict[str, list[int]]:
    rows = clusters.groupBy(S.LANG, S.CLUSTER_ID).count().collect()
    out: dict[str, list[int]] = {}
    for r in rows:
        out.setdefault(r[S.LANG], []).append(r["count"])
    return {lang: sorted(sizes, reverse=True) for lang, sizes in sorted(out.items())}


def extreme_examples(scored_content, per_lang: int) -> dict[str, dict[str, list[dict]]]:
    best = Window.partitionBy(S.LANG).orderBy(F.col(S.QSM_SCORE).desc(), S.SAMPLE_ID)
    worst = Window.partitionBy(S.LANG).orderBy(F.col(S.QSM_SCORE).asc(), S.SAMPLE_ID)
    ranked = scored_content.withColumn("_top", F.row_number().over(best)).withColumn(
        "_bottom", F.row_number().over(worst)
    )
    rows = (
        ranked.where((F.col("_top") <= per_lang) | (F.col("_bottom") <= per_lang))
        .select(
            S.LANG,
            S.SAMPLE_ID,
            S.QSM_SCORE,
            "_top",
            "_bottom",
            "_selected",
            F.substring(S.INSTRUCTION, 1, _SNIPPET).alias("instruction"),
            F.substring(S.RESPONSE, 1, _SNIPPET).alias("response"),
        )
        .collect()
    )
    out: dict[str, dict[str, list[dict]]] = {}
    for r in rows:
        entry = {
            "sample_id": r[S.SAMPLE_ID],
            "qsm_score": r[S.QSM_SCORE],
            "selected": bool(r["_selected"]),
            "instruction": r["instruction"],
            "response": r["response"],
        }
        lang = out.setdefault(r[S.LANG], {"top": [], "bottom": []})
        if r["_top"] <= per_lang:
            lang["top"].append((r["_top"], entry))
        if r["_bottom"] <= per_lang:
            lang["bottom"].append((r["_bottom"], entry))
    return {
        lang: {side: [e for _, e in sorted(v[side], key=lambda x: x[0])] for side in ("top", "bottom")}
        for lang, v in sorted(out.items())
    }


def projection(scored_flagged, sample: int, seed: int) -> list[dict]:
    """A seeded sample of embeddings on their first two principal components."""
    total = scored_flagged.count()
    if total == 0:
        return []
    fraction = min(1.0, 1.2 * sample / total)
    rows = (
        scored_flagged.sample(fraction=fraction, seed=seed)
        .orderBy(F.xxhash64(S.SAMPLE_ID, F.lit(seed)))
        .limit(sample)
        .select(S.LANG, S.EMBEDDING, "_selected")
        .collect()
    )
    if len(rows) < 3:
        return []
    x = np.asarray([r[S.EMBEDDING] for r in rows], dtype=np.float64)
    x -= x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    return [
        {"lang": r[S.LANG], "x": round(float(p[0]), 5), "y": round(float(p[1]), 5), "selected": bool(r["_selected"])}
        for r, p in zip(rows, xy, strict=True)
    ]


def collect_report_data(rundir: RunDir, cfg: JobConfig, score_fingerprint: str) -> Figures:
    report = cfg.report
    selected_ids = rundir.selected_table(cfg.output.format).select(S.SAMPLE_ID, F.lit(True).alias("_selected"))
    scored = (
        rundir.model_table(SCORES, score_fingerprint)
        .select(S.SAMPLE_ID, S.LANG, S.QSM_SCORE, S.EMBEDDING)
        .join(selected_ids, on=S.SAMPLE_ID, how="left")
        .withColumn("_selected", F.coalesce(F.col("_selected"), F.lit(False)))
    )
    content = rundir.table(NORMALIZED).select(S.SAMPLE_ID, S.INSTRUCTION, S.RESPONSE)
    figures = {
        "score_histograms": score_histograms(scored.drop(S.EMBEDDING), report.histogram_bins),
        "cluster_sizes": cluster_sizes(rundir.table(CLUSTERS)),
        "examples": extreme_examples(scored.drop(S.EMBEDDING).join(content, on=S.SAMPLE_ID), report.examples_per_lang),
        "projection": projection(scored, report.projection_sample, cfg.seed),
    }
    return typed(Figures, figures, "report")
