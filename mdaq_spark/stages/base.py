"""What a stage is: frozen settings, the columns it needs and makes, a key, and a body.

A stage never drives the job: the runner (mdaq_spark.pipeline.runner) decides whether it
runs (its key against the marker of a finished run), checks the tables it requires before
and the tables it produces after, times it and writes its marker. A stage's key is
everything that determines its output (settings, upstream keys, input files), so an
unchanged key means the output on disk is still the right one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from pyspark.resource import ResourceProfile
    from pyspark.sql import SparkSession

    from mdaq_spark.rundir import RunDir


def digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8") + b"\x1f")
    return h.hexdigest()[:16]


def section(model) -> str:
    """A config section as it enters a key: its JSON (or "null" when the section is absent)."""
    return model.model_dump_json() if model is not None else "null"


@dataclass(frozen=True)
class Table:
    """A table of the run directory (or the store) and the columns a stage relies on in it.

    `fingerprint` names the model rows of a store table the stage means (the store keeps
    every model's rows).
    """

    name: str
    columns: tuple[str, ...]
    fingerprint: str | None = None


@dataclass
class StageContext:
    """What a running stage may use: the session, the run directory, and where progress goes."""

    spark: SparkSession
    rundir: RunDir
    overwrite: bool = False
    # called with (stage, rows done, rows to do) as model batches commit: the CLI's progress bar
    on_progress: Callable[[str, int, int], None] | None = None
    # the ResourceProfile model stages (encode, embed) run under: the GPU is theirs alone
    # (mdaq_spark.resources); None: Spark's default task resources, as in local runs
    model_profile: ResourceProfile | None = None


@dataclass(frozen=True)
class Stage:
    """One step of the job. Subclasses are frozen dataclasses of their settings."""

    name: ClassVar[str]

    @property
    def requires(self) -> tuple[Table, ...]:
        return ()

    @property
    def produces(self) -> tuple[Table, ...]:
        return ()

    def key(self) -> str:
        raise NotImplementedError

    def run(self, ctx: StageContext) -> dict:
        """Write the stage's tables; return what its marker records (counts, fingerprints)."""
        raise NotImplementedError
