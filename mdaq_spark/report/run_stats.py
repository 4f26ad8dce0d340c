"""stats.json as one typed document: the only code that writes it or reads it.

The report page, `mdaq inspect`, `mdaq diff` and the exports' dataset cards read a run's
numbers through RunStats, never through the JSON's keys. Reading is strict: a key missing
from the file, or one the class does not know, fails with the key's path, so a renamed key
cannot reach a page as a quiet 0. The one exception keeps older runs readable after an
upgrade (a scheduled refresh diffs against the run before it): a key added in a later version
has a default, and a file written before it reads with that default. A section with nothing in
it is written as such (an empty map, null), never left out.

`stage_info` stays free-form (each stage records what it did in its own words); the few of
its values that pages show are read through the accessors at the end, which fail the same way.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel

from mdaq_spark import schema as S
from mdaq_spark.config import JobConfig
from mdaq_spark.errors import InputError


@dataclass(frozen=True)
class Counts:
    records_read: int
    kept: int
    quarantined: int
    exact_duplicates: int
    selected: int
    identity_holds: bool
    # each input file: records read = records parsed, and its rows all written (see io/accounting)
    per_file_identity_holds: bool | None


@dataclass(frozen=True)
class InputFiles:
    read: int
    skipped: list[Any]


@dataclass(frozen=True)
class CopyGroups:
    groups: int
    grouped_samples: int
    largest_group: int
    groups_by_size: dict[str, int]
    groups_by_languages: dict[str, int]


@dataclass(frozen=True)
class Pruning:
    candidates: int
    pruned_by_reason: dict[str, int]
    to_selection: int
    candidates_are_all_clustered: bool
    copy_groups: CopyGroups | None  # null for a run from before translated-copy grouping


@dataclass(frozen=True)
class LanguageStats:
    """One language's counts; 0 (or an empty map) where the run's tables hold no row of it."""

    samples: int
    lang_mismatch: int
    scored: int
    score_mean: float | None
    score_min: float | None
    score_max: float | None
    clusters: int
    largest_cluster_share: float
    selected: dict[str, int]  # per selection reason
    selected_total: int
    flags: dict[str, int]  # per heuristic flag
    candidates: int
    pruned: dict[str, int]  # per prune reason
    domains: dict[str, int]
    crosslingual: int
    largest_near_dup_group: int
    selected_by_group: dict[str, int]


@dataclass(frozen=True)
class Environment:
    python: str
    spark: str
    spark_master: str


@dataclass(frozen=True)
class Histogram:
    lo: float
    hi: float
    all: list[int]
    selected: list[int]


@dataclass(frozen=True)
class Example:
    sample_id: str
    qsm_score: float
    selected: bool
    instruction: str
    response: str


@dataclass(frozen=True)
class Examples:
    top: list[Example]
    bottom: list[Example]


@dataclass(frozen=True)
class Point:
    lang: str
    x: float
    y: float
    selected: bool


@dataclass(frozen=True)
class Figures:
    score_histograms: dict[str, Histogram]
    cluster_sizes: dict[str, list[int]]
    examples: dict[str, Examples]
    projection: list[Point]


@dataclass(frozen=True)
class LanguageDiff:
    selected_a: int
    selected_b: int
    budget_changed: bool
    added: dict[str, int]  # per reason
    removed: dict[str, int]


@dataclass(frozen=True)
class DiffTotals:
    added: int
    removed: int
    unchanged: int


@dataclass(frozen=True)
class DiffSummary:
    """Two runs' selections compared (report/diff.py), without the per-sample list."""

    run_a: str
    run_b: str
    totals: DiffTotals
    per_language: dict[str, LanguageDiff]


@dataclass(frozen=True)
class PreviousRun:
    path: str
    diff: DiffSummary | None  # null when the previous run could not be compared


@dataclass(frozen=True)
class ExportResult:
    format: str
    path: str
    files: int
    rows_per_language: dict[str, int]
    # the turns' other keys written, with their kinds (io/turn_keys.py), and those the format has
    # no place for (alpaca's turns); empty in a file from before they were exported
    turn_keys: dict[str, str] = field(default_factory=dict)
    turn_keys_not_written: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Turns:
    """How many exchanges (answers) the samples have, and at which turn (0 = the first) each one's weakest sits."""

    samples_by_turns: dict[str, int]
    weakest_turn_by_turns: dict[str, dict[str, int]]


@dataclass(frozen=True)
class ScorerStats:
    """One configured scorer and its raw aggregate score of the samples, on average (null where none)."""

    kind: str
    weight: float
    mean_scored: float | None  # over every sample the run scored
    mean_selected: float | None  # over the selection: how it leans on this scorer


@dataclass(frozen=True)
class RunStats:
    mdaq_spark_version: str
    finished_at: str
    counts: Counts
    input_files: InputFiles
    quarantine_by_reason: dict[str, int]
    pruning: Pruning
    per_language: dict[str, LanguageStats]
    turns: Turns
    stage_seconds: dict[str, float]
    stages_skipped: list[str]
    stage_keys: dict[str, str]
    stage_info: dict[str, dict[str, Any]]
    environment: Environment
    config: JobConfig
    run_dir: str
    command: str
    code_commit: str | None
    report: Figures
    stopped_after: str | None  # why a run ended early (no usable record after ingest); null for a whole run
    previous_run: PreviousRun | None  # the last other run over a shared store
    exports: list[ExportResult]
    # keys added since the first version: a stats.json from before them reads with these defaults
    scorers: dict[str, ScorerStats] = field(default_factory=dict)  # by scorer name, in config order

    # ------------------------------------------------------------------ the file

    @classmethod
    def from_json(cls, data: dict, where: str = "stats.json") -> RunStats:
        return _load(cls, data, where)

    def to_json(self) -> dict:
        return _dump(self)

    @classmethod
    def read(cls, files, path: str) -> RunStats:
        """The stats.json at `path` (through `files`, a LocalFiles or HadoopFiles)."""
        return cls.from_json(json.loads(files.read_text(path)), path)

    @staticmethod
    def read_config(files, path: str) -> JobConfig:
        """Only the config the run was made with, for a command that needs nothing else (compact).

        The config is validated as strictly as any other section; the rest of the file is not
        read, so a run directory whose figures came from another version can still be compacted.
        """
        data = json.loads(files.read_text(path))
        if "config" not in data:
            raise _fail(path, "missing keys ['config']")
        return _load(JobConfig, data["config"], f"{path}.config")

    def write(self, files, path: str) -> None:
        files.write_text(path, json.dumps(self.to_json(), indent=2, ensure_ascii=False))

    # ------------------------------------------------------------------ what pages show of stage_info

    def stage(self, name: str, key: str) -> Any:
        """One value a stage recorded; a stage that ran and lacks it fails with the key's path."""
        info = self.stage_info.get(name)
        if info is None or key not in info:
            raise _fail("stats.json", f"missing stage_info.{name}.{key}")
        return info[key]

    def stage_work(self, stage: str) -> str:
        """For a model stage: how many rows it computed and how many it took from the store (a refresh's saving)."""
        info = self.stage_info.get(stage, {})
        if "computed" not in info:
            return ""
        return f"computed {info['computed']}, reused {info['reused']} of {info['rows']}"

    def head_mismatch(self) -> list[str]:
        """Where the QSM head's training settings differ from the run's encoder (empty when they agree)."""
        return list(self.stage("score", "qsm_head_mismatch")) if "score" in self.stage_info else []

    def model_rows(self) -> list[tuple[str, str]]:
        """The encoder and QSM head with their fingerprints: a head directory is named by its last part only."""
        rows = [("encoder", self.config.model.name)]
        if "encode" in self.stage_info:
            rows.append(("encoder fingerprint", self.stage("encode", S.ENCODER_FINGERPRINT)))
        if "score" in self.stage_info:
            rows += [
                ("QSM head", PurePosixPath(self.stage("score", "qsm_head")).name),
                ("QSM fingerprint", self.stage("score", S.MODEL_FINGERPRINT)),
            ]
        return rows


# ---------------------------------------------------------------------- strict (de)serialisation


def typed(tp: type, value: Any, where: str) -> Any:
    """`value` (JSON data) as `tp`, every key checked: how the figures, the diff and stats.json become typed."""
    return _load(tp, value, where)


def _fail(where: str, what: str) -> InputError:
    return InputError(f"{where}: {what} (written by another mdaq-spark version? rerun the job to rewrite it)")


def _load(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _load(inner, value, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _fail(where, "expected an object")
        hints = typing.get_type_hints(tp)
        fields = dataclasses.fields(tp)
        # a key added later has a default: a file from before it reads with the default; any other
        # missing key, and every unknown one, is a rename or a bug and fails
        added = {f.name for f in fields if f.default is not MISSING or f.default_factory is not MISSING}
        missing = [f.name for f in fields if f.name not in value and f.name not in added]
        unknown = [k for k in value if k not in hints]
        if missing or unknown:
            raise _fail(where, f"missing keys {missing}, unknown keys {unknown}")
        return tp(
            **{f.name: _load(hints[f.name], value[f.name], f"{where}.{f.name}") for f in fields if f.name in value}
        )
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp.model_validate(value)
    if origin is dict:
        _, inner = typing.get_args(tp)
        if not isinstance(value, dict):
            raise _fail(where, "expected an object")
        return {k: _load(inner, v, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise _fail(where, "expected a list")
        return [_load(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) if tp is float else isinstance(value, tp)
    if tp is int and isinstance(value, bool):
        ok = False
    if not ok:
        raise _fail(where, f"expected {tp.__name__}, found {type(value).__name__}")
    return value


def _dump(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _dump(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    return value
