"""report.html: one self-contained page (inline CSS and SVG, no scripts, no network) from stats.json.

Rendering reads only stats.json, so `mdaq report <run>` rebuilds the page without Spark,
and the page can never disagree with the numbers in stats.json.
"""

from __future__ import annotations

import json
from html import escape

from mdaq_spark import schema as S
from mdaq_spark.report.run_stats import Figures, Histogram, Point, PreviousRun, RunStats

PALETTE = [
    "#4269d0",
    "#efb118",
    "#ff725c",
    "#6cc5b0",
    "#3ca951",
    "#ff8ab7",
    "#a463f2",
    "#97bbf5",
    "#9c6b4e",
    "#9498a0",
    "#1f4e79",
    "#b35806",
]
CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1180px;color:#1d1d1f;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#f4f5f7} td.l,th.l{text-align:left}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}
.card{border:1px solid #ddd;border-radius:8px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:20px}
.ok{color:#1a7f37} .bad{color:#cf222e} .warn{background:#fff4ce;border:1px solid #e3b341;padding:6px 10px;border-radius:6px;margin:6px 0}
.grid{display:flex;flex-wrap:wrap;gap:14px} .muted{color:#666} pre{background:#f6f8fa;padding:10px;overflow:auto;font-size:12px}
.ex td{max-width:420px;text-align:left;font-size:12px}
"""


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:.4f}"
    return escape(str(x))


def _table(headers: list[str], rows: list[list], left: int = 1) -> str:
    head = "".join(
        f"<th class='l'>{escape(h)}</th>" if i < left else f"<th>{escape(h)}</th>" for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(f"<td class='l'>{_fmt(c)}</td>" if i < left else f"<td>{_fmt(c)}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _histogram_svg(lang: str, h: Histogram, width: int = 270, height: int = 120) -> str:
    n = len(h.all)
    peak = max(max(h.all), 1)
    bw = width / n
    bars = []
    for i, (a, s) in enumerate(zip(h.all, h.selected, strict=True)):
        ha, hs = height * a / peak, height * s / peak
        bars.append(
            f"<rect x='{i * bw:.1f}' y='{height - ha:.1f}' width='{bw - 1:.1f}' height='{ha:.1f}' fill='#c9ccd1'/>"
        )
        bars.append(
            f"<rect x='{i * bw:.1f}' y='{height - hs:.1f}' width='{bw - 1:.1f}' height='{hs:.1f}' fill='#4269d0'/>"
        )
    return (
        f"<div><h3>{escape(lang)}</h3><svg width='{width}' height='{height + 16}' role='img' "
        f"aria-label='score histogram {escape(lang)}'>{''.join(bars)}"
        f"<text x='0' y='{height + 13}' font-size='10'>{h.lo:.3f}</text>"
        f"<text x='{width}' y='{height + 13}' font-size='10' text-anchor='end'>{h.hi:.3f}</text></svg></div>"
    )


def _cluster_svg(lang: str, sizes: list[int], width: int = 270, height: int = 90) -> str:
    peak = max(sizes) if sizes else 1
    bw = width / max(len(sizes), 1)
    bars = "".join(
        f"<rect x='{i * bw:.2f}' y='{height - height * s / peak:.1f}' width='{max(bw - 0.5, 0.5):.2f}' "
        f"height='{height * s / peak:.1f}' fill='#6cc5b0'/>"
        for i, s in enumerate(sizes)
    )
    return (
        f"<div><h3>{escape(lang)} <span class='muted'>k={len(sizes)}, largest {peak}</span></h3>"
        f"<svg width='{width}' height='{height}'>{bars}</svg></div>"
    )


def _projection_svg(points: list[Point], size: int = 520) -> str:
    if not points:
        return "<p class='muted'>no embeddings to project</p>"
    xs, ys = [p.x for p in points], [p.y for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx, sy = (size - 20) / max(x1 - x0, 1e-9), (size - 20) / max(y1 - y0, 1e-9)
    langs = sorted({p.lang for p in points})
    color = {lang: PALETTE[i % len(PALETTE)] for i, lang in enumerate(langs)}
    dots = []
    for p in sorted(points, key=lambda p: p.selected):  # kept samples drawn last, on top
        cx, cy = 10 + (p.x - x0) * sx, size - 10 - (p.y - y0) * sy
        if p.selected:
            dots.append(
                f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='3.6' fill='{color[p.lang]}' stroke='#000' "
                "stroke-width='0.8'/>"
            )
        else:
            dots.append(f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='2.2' fill='{color[p.lang]}' fill-opacity='0.35'/>")
    legend = " ".join(f"<span style='color:{color[lang]}'>&#9679; {escape(lang)}</span>" for lang in langs)
    return (
        f"<svg width='{size}' height='{size}' style='border:1px solid #eee'>{''.join(dots)}</svg>"
        f"<p>{legend} &nbsp; <span class='muted'>outlined, larger dots: selected; {len(points)} points shown</span></p>"
    )


def render(stats: RunStats) -> str:
    """The page, one section after another; each reads its part of the typed stats (a missing key fails reading)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>mdaq-spark run report</title>",
        f"<style>{CSS}</style></head><body>",
        *_header(stats),
        *_per_language(stats),
        *_previous_run(stats.previous_run),
        *_warnings(stats),
        *_pruning(stats),
        *_quarantine(stats),
        *_turns(stats),
        *_scorers(stats),
        *_figures(stats.report),
        *_stages(stats),
        "</body></html>",
    ]
    return "\n".join(parts)


def _header(stats: RunStats) -> list[str]:
    c = stats.counts
    ident = "<span class='ok'>holds</span>" if c.identity_holds else "<span class='bad'>BROKEN</span>"
    cards = (
        ("records read", c.records_read),
        ("kept", c.kept),
        ("quarantined", c.quarantined),
        ("exact duplicates", c.exact_duplicates),
        ("selected", c.selected),
    )
    return [
        "<h1>mdaq-spark run report</h1>",
        f"<p class='muted'>{escape(stats.run_dir)} &middot; finished {escape(stats.finished_at)}"
        f" &middot; mdaq-spark {escape(stats.mdaq_spark_version)}</p>",
        "<div class='cards'>",
        *[f"<div class='card'>{escape(k)}<b>{v}</b></div>" for k, v in cards],
        "</div>",
        f"<p>Count identity: read = kept + quarantined + duplicates: {ident} "
        f"({c.records_read} = {c.kept} + {c.quarantined} + {c.exact_duplicates}).</p>",
    ]


def _per_language(stats: RunStats) -> list[str]:
    reasons = (S.REASON_QUALITY, S.REASON_DIVERSITY, S.REASON_CLUSTER_TOP_K, S.REASON_MMR)
    headers = ["lang", "samples", "lang mismatch", "clusters", "largest cluster", *[f"kept: {r}" for r in reasons]]
    rows = [
        [
            lang,
            e.samples,
            e.lang_mismatch,
            e.clusters,
            f"{100 * e.largest_cluster_share:.1f}%",
            # a reason no sample of the language was selected for has no entry: that count is 0
            *[e.selected.get(r, 0) for r in reasons],
            e.selected_total,
            "" if e.score_mean is None else e.score_mean,
            ", ".join(f"{k}: {v}" for k, v in sorted(e.flags.items())),
        ]
        for lang, e in stats.per_language.items()
    ]
    return ["<h2>Per language</h2>", _table([*headers, "kept total", "score mean", "flagged (rule: rows)"], rows)]


def _warnings(stats: RunStats) -> list[str]:
    """Cluster skew past the configured factor, and a QSM head trained under other encoder settings."""
    factor = stats.config.report.skew_warning_factor
    parts = []
    skewed = [
        f"{lang} ({100 * e.largest_cluster_share:.0f}% in one of {e.clusters} clusters)"
        for lang, e in stats.per_language.items()
        if e.clusters > 1 and e.largest_cluster_share > factor / e.clusters
    ]
    if skewed:
        parts.append(
            f"<div class='warn'>Cluster skew: a cluster holds more than {factor:g} times the mean cluster "
            f"share in {escape('; '.join(skewed))}. Diversity selection has little to pick from there; "
            "consider a larger k or a different embedding.</div>"
        )
    mismatch = stats.head_mismatch()
    if mismatch:
        parts.append(
            "<div class='warn'>The QSM head was trained under other encoder settings than this run's: "
            f"{escape('; '.join(mismatch))}. Its scores may rank samples worse than the untrained encoder; "
            "retrain the head for these settings or set model.qsm_head_strict to refuse such runs.</div>"
        )
    return parts


def _pruning(stats: RunStats) -> list[str]:
    pruning = stats.pruning
    reasons = list(S.PRUNE_REASONS)
    copies = pruning.copy_groups
    copies_line = (
        f" Translated copies: {copies.groups} groups holding {copies.grouped_samples} samples "
        f"(largest {copies.largest_group}; groups by number of languages: "
        + escape(", ".join(f"{k}: {v}" for k, v in copies.groups_by_languages.items()) or "none")
        + ")."
        if copies and copies.groups
        else ""
    )
    headers = [
        "lang",
        "candidates",
        *[f"pruned: {r}" for r in reasons],
        "largest near-dup group",
        "cross-lingual",
        "math",
        "code",
        "selected: monolingual",
        "selected: cross-lingual",
    ]
    rows = [
        [
            lang,
            e.candidates,
            # maps hold only what occurred: a reason, domain or group without samples counts 0
            *[e.pruned.get(r, 0) for r in reasons],
            e.largest_near_dup_group,
            e.crosslingual,
            e.domains.get(S.MATH, 0),
            e.domains.get(S.CODE, 0),
            e.selected_by_group.get(S.MONOLINGUAL_GROUP, 0),
            e.selected_by_group.get(S.CROSSLINGUAL_GROUP, 0),
        ]
        for lang, e in stats.per_language.items()
    ]
    return [
        "<h2>Before selection: pruning and tags</h2>",
        f"<p>{pruning.candidates} candidates, {pruning.to_selection} went on to selection; pruned: "
        + escape(", ".join(f"{k}: {v}" for k, v in sorted(pruning.pruned_by_reason.items())) or "none")
        + ". Flagged samples are pruned only with filters.action=drop; translated copies only with "
        "copies.enabled; math/code are capped only with domains.enabled." + copies_line + "</p>",
        _table(headers, rows),
    ]


def _quarantine(stats: RunStats) -> list[str]:
    return [
        "<h2>Quarantine by reason</h2>",
        _table(["reason", "rows"], [[r, n] for r, n in sorted(stats.quarantine_by_reason.items())]),
    ]


def _turns(stats: RunStats) -> list[str]:
    """Only for a corpus with conversations: how many exchanges its samples have, where the weakest one sits."""
    turns = stats.turns
    if not any(n != "1" for n in turns.samples_by_turns):
        return []
    rows = [
        [
            n,
            count,
            ", ".join(f"turn {int(t) + 1}: {k}" for t, k in sorted(turns.weakest_turn_by_turns.get(n, {}).items())),
        ]
        for n, count in sorted(turns.samples_by_turns.items(), key=lambda x: int(x[0]))
    ]
    return [
        "<h2>Exchanges per sample</h2><p class='muted'>a sample scores as its exchanges aggregate "
        "(scoring.aggregate); where its weakest exchange sits.</p>",
        _table(["exchanges", "samples", "weakest exchange"], rows),
    ]


def _scorers(stats: RunStats) -> list[str]:
    """Each scorer's weight and raw score, on average over the scored samples and over the selection."""
    if not stats.scorers:
        return []

    def shown(x: float | None) -> str:
        return "" if x is None else f"{x:.4f}"

    rows = [
        [name, s.kind, f"{s.weight:g}", shown(s.mean_scored), shown(s.mean_selected)]
        for name, s in stats.scorers.items()
    ]
    return [
        "<h2>Scorers</h2><p class='muted'>each scorer's raw score of a sample (its exchanges aggregated), "
        "before normalisation and weighting (scoring.scorers); the selection's mean beside the corpus's "
        "shows what it leans on.</p>",
        _table(["scorer", "kind", "weight", "mean, scored samples", "mean, selected"], rows),
    ]


def _figures(report: Figures) -> list[str]:
    parts = []
    if report.score_histograms:
        parts += [
            "<h2>QSM score per language</h2><p class='muted'>grey: all samples; blue: selected.</p><div class='grid'>",
            *[_histogram_svg(lang, h) for lang, h in report.score_histograms.items()],
            "</div>",
        ]
    if report.cluster_sizes:
        parts += [
            "<h2>Cluster sizes (largest first)</h2><div class='grid'>",
            *[_cluster_svg(lang, s) for lang, s in report.cluster_sizes.items()],
            "</div>",
        ]
    parts += ["<h2>Embedding map (PCA of a sample)</h2>", _projection_svg(report.projection)]
    if report.examples:
        parts.append("<h2>Highest and lowest scored samples</h2>")
        for lang, ex in report.examples.items():
            rows = [
                [side, e.qsm_score, "yes" if e.selected else "", e.instruction, e.response]
                for side, examples in (("top", ex.top), ("bottom", ex.bottom))
                for e in examples
            ]
            parts += [
                f"<h3>{escape(lang)}</h3><div class='ex'>",
                _table(["", "score", "kept", "instruction", "response"], rows, left=5),
                "</div>",
            ]
    return parts


def _stages(stats: RunStats) -> list[str]:
    return [
        "<h2>Stages</h2>",
        _table(
            ["stage", "seconds", "skipped (unchanged)", "model work"],
            [
                [s, t, "yes" if s in stats.stages_skipped else "", stats.stage_work(s)]
                for s, t in stats.stage_seconds.items()
            ],
        ),
        "<h2>Models</h2>",
        _table(["what", "value"], [[k, v] for k, v in stats.model_rows()]),
        "<h2>Run configuration</h2>",
        f"<pre>{escape(json.dumps(stats.config.model_dump(mode='json'), indent=2, ensure_ascii=False))}</pre>",
    ]


def _previous_run(previous: PreviousRun | None) -> list[str]:
    """The run before this one over the same store, and what this run's selection changed of it."""
    if previous is None:
        return []
    parts = [f"<p>previous run: {escape(previous.path)}</p>"]
    diff = previous.diff
    if diff is not None:
        t = diff.totals
        parts += [
            f"<p>Since then: {t.added} samples added to the selection, {t.removed} removed, "
            f"{t.unchanged} kept (<code>mdaq diff</code> lists them).</p>",
            _table(
                ["lang", "selected before", "selected now", "added (reason: n)", "removed (reason: n)"],
                [
                    [
                        lang,
                        e.selected_a,
                        e.selected_b,
                        ", ".join(f"{k}: {v}" for k, v in e.added.items()),
                        ", ".join(f"{k}: {v}" for k, v in e.removed.items()),
                    ]
                    for lang, e in diff.per_language.items()
                ],
            ),
        ]
    return parts
