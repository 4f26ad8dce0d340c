"""A run and a QSM evaluation as terminal tables, and live progress bars for a running job."""

from __future__ import annotations

import contextlib
import sys

from rich.console import Console
from rich.table import Table

from mdaq_spark import schema as S
from mdaq_spark.report.run_stats import DiffSummary, RunStats


@contextlib.contextmanager
def progress_bar():
    """A live bar per model stage on an interactive terminal; log lines alone anywhere else (cron, CI, YARN)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bars: dict[str, int] = {}
    with Progress(
        TextColumn("{task.description:>8}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), transient=False,
    ) as progress:  # fmt: skip

        def update(stage: str, done: int, total: int) -> None:
            if stage not in bars:
                bars[stage] = progress.add_task(stage, total=total)
            progress.update(bars[stage], completed=done, total=total)

        yield update


def print_metrics(metrics: dict, rows) -> None:
    """QSM pairwise accuracies, one table per split; `rows` turns a split's results into table rows."""
    for split_name, results in metrics.items():
        table = Table(title=f"{split_name}: pairwise accuracy, revised > raw (length-matched pairs in brackets)")
        for col in ("split", "lang", "pairs", *results):
            table.add_column(col)
        for row in rows(results, split_name):
            table.add_row(*row)
        Console().print(table)


def _counts_table(title: str, unit: str, counts: dict[str, int]) -> Table:
    table = Table(title=title)
    table.add_column("reason")
    table.add_column(unit, justify="right")
    for reason, n in sorted(counts.items()):
        table.add_row(reason, str(n))
    return table


def print_run(run_dir: str, stats: RunStats) -> None:
    """`mdaq inspect`: the identity of counts, per-language selection, reasons, stages."""
    c = stats.counts
    console = Console()
    console.print(f"[bold]{run_dir}[/bold]  finished {stats.finished_at}")
    console.print(
        f"read {c.records_read} = kept {c.kept} + quarantined {c.quarantined} + duplicates "
        f"{c.exact_duplicates}  ({'identity holds' if c.identity_holds else 'IDENTITY BROKEN'}); "
        f"selected {c.selected}"
    )
    table = Table(title="per language")
    for col in (
        "lang",
        "samples",
        "clusters",
        "largest cluster",
        "quality",
        "diversity",
        "top-k",
        "kept",
        "score mean",
    ):
        table.add_column(col, justify="right")
    for lang, e in stats.per_language.items():
        table.add_row(
            lang,
            str(e.samples),
            str(e.clusters),
            f"{100 * e.largest_cluster_share:.1f}%",
            # a reason no sample was selected for has no entry: that count is 0
            *[str(e.selected.get(r, 0)) for r in (S.REASON_QUALITY, S.REASON_DIVERSITY, S.REASON_CLUSTER_TOP_K)],
            str(e.selected_total),
            "-" if e.score_mean is None else f"{e.score_mean:.4f}",
        )
    console.print(table)
    console.print(_counts_table("quarantine by reason", "rows", stats.quarantine_by_reason))
    pruning = stats.pruning
    console.print(f"{pruning.candidates} candidates, {pruning.to_selection} went on to selection")
    console.print(_counts_table("pruned before selection", "samples", pruning.pruned_by_reason))
    copies = pruning.copy_groups
    if copies and copies.groups:
        console.print(
            f"translated copies: {copies.groups} groups, {copies.grouped_samples} samples, "
            f"largest {copies.largest_group}"
        )
    if len(stats.scorers) > 1:  # one scorer's mean is the score mean above
        scorers = Table(title="scorers (mean raw score)")
        for col in ("scorer", "kind", "weight", "scored", "selected"):
            scorers.add_column(col, justify="right")
        for name, s in stats.scorers.items():
            means = ["-" if x is None else f"{x:.4f}" for x in (s.mean_scored, s.mean_selected)]
            scorers.add_row(name, s.kind, f"{s.weight:g}", *means)
        console.print(scorers)
    stages = Table(title="stages")
    stages.add_column("stage")
    stages.add_column("seconds", justify="right")
    stages.add_column("skipped")
    stages.add_column("model work")
    for stage, seconds in stats.stage_seconds.items():
        stages.add_row(
            stage, f"{seconds:.1f}", "yes" if stage in stats.stages_skipped else "", stats.stage_work(stage)
        )
    console.print(stages)


def print_diff(diff: DiffSummary) -> None:
    """`mdaq diff`: per language, the selection's size in each run and what changed, by reason."""
    console = Console()
    t = diff.totals
    console.print(f"[bold]{diff.run_a}[/bold] -> [bold]{diff.run_b}[/bold]")
    console.print(f"added {t.added}, removed {t.removed}, kept {t.unchanged}")
    table = Table(title="selection changes per language")
    for col in ("lang", "selected A", "selected B", "added (reason: n)", "removed (reason: n)"):
        table.add_column(col, justify="left" if col == "lang" or "reason" in col else "right")
    for lang, e in diff.per_language.items():
        table.add_row(
            lang,
            str(e.selected_a),
            str(e.selected_b),
            ", ".join(f"{k}: {v}" for k, v in e.added.items()) or "-",
            ", ".join(f"{k}: {v}" for k, v in e.removed.items()) or "-",
        )
    console.print(table)
