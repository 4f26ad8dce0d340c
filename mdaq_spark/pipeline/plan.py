"""What `mdaq run --dry-run` reports: the plan of a run, checked without starting Spark.

A dry run answers the questions a scheduled job should settle before it asks a cluster for
executors: is the config valid, are the inputs there and parseable (the first records of
each file go through the job's own parser), which model and QSM head will score, and which
stages will run and which will be skipped because a finished run already holds their output.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from mdaq_spark import schema as S
from mdaq_spark.config import JobConfig, scorer_names
from mdaq_spark.io import file_types, inputs, readers
from mdaq_spark.models import registry
from mdaq_spark.rundir import RunDir, is_local

STAGES = ("ingest", "encode", "score", "embed", "cluster", "select")


def _previews(path: str, file_type: str, files: list[str], cfg: JobConfig, peek: int, max_files: int):
    """The parsed first rows of each checked file: of a Delta table, of its current version's first files."""
    if file_type == "delta" and not files and "://" not in path:
        return [readers.preview_delta(path, cfg.input, peek)], 1
    return [readers.preview(f, file_type, cfg.input, peek) for f in files[:max_files]], min(len(files), max_files)


def _inputs(cfg: JobConfig, peek: int, max_files: int) -> list[dict]:
    """Per input path and file type: the files the job would read, those it skips and why, and a parse of each."""
    out = []
    for path in cfg.input.paths:
        found = inputs.discover(path, cfg.input.file_type)
        for file_type, files in found.files.items():
            formats: Counter[str] = Counter()
            rejected: Counter[str] = Counter()
            previews, checked = _previews(path, file_type, files, cfg, peek, max_files)
            for rows in previews:
                for row in rows:
                    if row[S.QUARANTINE_REASON]:
                        rejected[row[S.QUARANTINE_REASON]] += 1
                    else:
                        formats[row[S.RECORD_FORMAT]] += 1
            compressed = Counter(c.name for f in files if (c := file_types.compression_of(f)) is not None)
            out.append(
                {
                    "path": path,
                    "file_type": file_type,
                    "read_as": file_types.FILE_TYPES[file_type].description,
                    "files": len(files) if files else f"{file_type} at the path itself",
                    "compressed": dict(sorted(compressed.items())),
                    "bytes": sum(Path(f).stat().st_size for f in files),
                    "checked_files": checked,
                    f"first_{peek}_records_per_file": {"record_formats": dict(formats), "rejected": dict(rejected)},
                }
            )
        if found.skipped:
            out.append({"path": path, "skipped": {x.path: x.reason for x in found.skipped}})
    return out


def _stages(cfg: JobConfig) -> dict[str, str]:
    """Stages a finished run in output.path already holds (their marker exists); keys are checked at run time."""
    wanted = [s for s in STAGES if s != "embed" or cfg.embedding.source == "model"]
    if not is_local(cfg.output.path):
        return dict.fromkeys(wanted, "a remote run directory: its markers are read when the job runs")
    rundir = RunDir(cfg.output.path)
    state = {}
    for stage in wanted:
        if cfg.output.overwrite or not rundir.files.exists(rundir.marker_path(stage)):
            state[stage] = "runs"
        else:
            state[stage] = "finished earlier: skipped if its inputs and config are unchanged"
    return state


def _scoring(cfg: JobConfig) -> dict:
    """The scorers a run combines, each kind looked up in the registry: an unknown kind or plug-in fails here."""
    from mdaq_spark.scoring.base import kind_class

    s = cfg.scoring
    entries = s.scorers
    scorers = [
        {"name": name, "kind": e.kind, "from": kind_class(e.kind).__module__, "model": e.model, "weight": e.weight}
        for e, name in zip(entries, scorer_names(entries), strict=True)
    ]
    out = {"turns": s.turns, "aggregate": s.aggregate, "scorers": scorers}
    if len(entries) > 1:
        out["normalise"] = s.normalise
    return out


def build_plan(cfg: JobConfig, peek: int = 20, max_files: int = 20) -> dict:
    location = registry.resolve(cfg.model.name, cfg.model.cache_dir)
    head = registry.resolve_head(cfg.model.qsm_head, cfg.model.name)
    return {
        "inputs": _inputs(cfg, peek, max_files),
        "output": {
            "run_dir": cfg.output.path,
            "format": cfg.output.format,
            "store": cfg.output.store or "run dir",
            "exports": {e.format: e.path or RunDir(cfg.output.path).export_path(e.format) for e in cfg.output.export},
        },
        "model": {
            "encoder": cfg.model.name,
            "location": location,
            "prepared": registry.is_prepared(Path(location)) or Path(location).is_dir(),
            "qsm_head": head or "none: untrained encoder cosine",
            "device": cfg.model.device,
            "max_seq_length": cfg.model.max_seq_length,
        },
        "scoring": _scoring(cfg),
        "selection": {
            "strategy": cfg.selection.strategy,
            "budget": cfg.selection.budget_count or f"{cfg.selection.budget_fraction:.0%} per language",
            "quality:diversity": f"{cfg.selection.quality_parts}:{cfg.selection.diversity_parts}",
            "filters": f"{cfg.filters.action} on {', '.join(cfg.filters.rules)}",
        },
        "stages": _stages(cfg),
        "config": json.loads(cfg.to_json()),
    }
