"""What a scorer of exchanges is, the registry of scorer kinds, and the Spark map that runs one.

A scorer turns exchanges into one number each. It names what it reads (the exchanges' texts,
or their stored encodings), says whether it needs the model resource profile (a GPU), and
has a fingerprint: its rows in the exchange_scores store are keyed by (exchange_id,
fingerprint), so adding a scorer computes that scorer only, and reweighting computes none.

Kinds are registered, as Spark ML and NeMo Curator register theirs: a module defines a
`Scorer` subclass and decorates it with `@register("kind")`; a config entry
`scoring.scorers: [{kind: ..., model: ..., weight: ...}]` then builds it. The built-in kinds
are imported on first use from `BUILTIN`; others from the module that registers them (import
it before the job starts, or name it as an entry point of group `mdaq_spark.scorers`).

Running follows `pyspark.ml.functions.predict_batch_udf` as the encoders do (stages/udfs.py):
the map closes over the small, picklable scorer; `load()` builds its model the first time a
Python worker needs it and the worker keeps it for every later task.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from mdaq_spark import schema as S
from mdaq_spark.errors import ConfigError
from mdaq_spark.stages.base import digest

if TYPE_CHECKING:
    from pyspark import Accumulator

    from mdaq_spark.config import JobConfig, ScorerConfig

EXCHANGES = "exchanges"  # the scorer reads exchange texts (stages.exchanges.EXCHANGE_COLUMNS)
ENCODINGS = "encodings"  # the scorer reads the encode stage's stored embeddings of each exchange
ENTRY_POINT_GROUP = "mdaq_spark.scorers"


@dataclass(frozen=True)
class Scorer:
    """One configured scorer. Subclasses are frozen dataclasses of what determines their scores.

    `reads`: EXCHANGES or ENCODINGS; `columns`: the columns of that source `score` reads;
    `on_device`: run under the model resource profile (a model that wants the GPU).
    """

    kind: ClassVar[str]
    reads: ClassVar[str] = EXCHANGES
    on_device: ClassVar[bool] = False

    name: str
    weight: float

    @classmethod
    def from_config(cls, entry: ScorerConfig, job: JobConfig, name: str) -> Scorer:
        """Build from a config entry; raise ConfigError for a setting that cannot work."""
        return cls(name=name, weight=entry.weight)

    @property
    def columns(self) -> tuple[str, ...]:
        return (S.RESPONSE,)

    @property
    def encoder_layers(self) -> tuple[int, ...]:
        """Encoder layer states this scorer reads from the encodings (a QSM layer head's)."""
        return ()

    def fingerprint(self, encodings: str) -> str:
        """Which stored scores are this scorer's: everything its scores depend on, not its weight.

        `encodings` is the encode stage's fingerprint (for scorers that read encodings).
        """
        raise NotImplementedError

    def load(self) -> Any:
        """The scorer's model, built once per Python worker (None when it has none)."""
        return None

    def place(self, model: Any, gpus: list[str]) -> Any:
        """Move `model` to the GPU this task holds; a scorer without a device model keeps it."""
        return model

    def score(self, model: Any, batch: pa.RecordBatch) -> np.ndarray:
        """One float per row of `batch` (its `columns`), in row order; a row's float must not depend on its batch."""
        raise NotImplementedError

    def info(self) -> dict:
        """What the score stage's marker and the report say about this scorer besides its counts."""
        return {}


# ---------------------------------------------------------------------- the registry of kinds

KINDS: dict[str, type[Scorer]] = {}
# built-in kinds: the module that registers each, imported when a config names it
BUILTIN = {
    "qsm": "mdaq_spark.scoring.qsm",
    "cosine": "mdaq_spark.scoring.qsm",
    "length": "mdaq_spark.scoring.length",
    "sequence_classifier": "mdaq_spark.scoring.sequence_classifier",
}


def register(kind: str) -> Callable[[type[Scorer]], type[Scorer]]:
    """Class decorator: make `kind` a scorer kind that `scoring.scorers` entries may name."""

    def add(cls: type[Scorer]) -> type[Scorer]:
        cls.kind = kind
        KINDS[kind] = cls
        return cls

    return add


def kind_class(kind: str) -> type[Scorer]:
    if kind not in KINDS and kind in BUILTIN:
        importlib.import_module(BUILTIN[kind])
    if kind not in KINDS:
        for point in entry_points(group=ENTRY_POINT_GROUP, name=kind):
            point.load()
    if kind not in KINDS:
        known = sorted(set(KINDS) | set(BUILTIN))
        raise ConfigError(f"scoring.scorers: unknown scorer kind {kind!r}; known kinds: {', '.join(known)}")
    return KINDS[kind]


def build_scorers(job: JobConfig) -> tuple[Scorer, ...]:
    from mdaq_spark.config import scorer_names

    entries = job.scoring.scorers
    return tuple(
        kind_class(e.kind).from_config(e, job, name) for e, name in zip(entries, scorer_names(entries), strict=True)
    )


def combination_fingerprint(job: JobConfig, scorers: tuple[Scorer, ...], fingerprints: list[str], content: str) -> str:
    """The fingerprint of the sample scores: the scorers, their weights, how turns and scorers combine.

    Several scorers are combined after a per-language normalisation, which depends on the whole
    corpus: then the corpus content is part of it. One scorer over every turn with the mean
    (the default, the reference combination) keeps the scorer's own fingerprint: a single-turn corpus's
    scores are then the scorer's, under its name, as before exchanges existed.
    """
    s = job.scoring
    if len(scorers) == 1 and s.turns == "all" and s.aggregate == "mean":
        return fingerprints[0]
    parts = [s.turns, s.aggregate, repr(s.softmin_temperature)]
    parts += [f"{x.name}={fp}*{x.weight!r}" for x, fp in zip(scorers, fingerprints, strict=True)]
    if len(scorers) > 1:
        parts += [s.normalise, content]
    return digest(*parts)


# ---------------------------------------------------------------------- running one in Spark

_MODELS: dict[str, Any] = {}
_LOCK = threading.Lock()


def _model(scorer: Scorer) -> Any:
    key = f"{type(scorer).__module__}.{type(scorer).__qualname__}:{scorer!r}"
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = scorer.load()
        return _MODELS[key]


def score_map(scorer: Scorer, key: str, counter: Accumulator | None = None):
    """mapInArrow: rows with `key`, lang and the scorer's columns -> key, lang, score."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from mdaq_spark.stages.udfs import assigned_gpus, count_rows

        model = scorer.place(_model(scorer), assigned_gpus())
        for batch in batches:
            count_rows(counter, batch.num_rows)
            scores = scorer.score(model, batch) if batch.num_rows else np.zeros(0)
            yield pa.RecordBatch.from_arrays(
                [batch.column(key), batch.column(S.LANG), pa.array(np.asarray(scores, dtype=np.float64))],
                names=[key, S.LANG, S.SCORE],
            )

    return run
