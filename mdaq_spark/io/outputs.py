"""Is the run directory writable? Asked before Spark starts, so a typo costs a second, not an ingest.

Spark would find out only when the first stage writes, after reading the whole corpus, and
say so in a few hundred lines of Java trace. A local path is checked by writing a probe
file where the run directory is (or in the nearest folder that exists above it), which
also catches a read-only mount that permission bits alone do not show.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mdaq_spark.errors import ConfigError


def check_output_path(path: str) -> None:
    """Raises ConfigError naming `path` when a run cannot write there; cluster URIs are left to Spark."""
    if "://" in path and not path.startswith("file:"):
        return
    target = Path(path.removeprefix("file://").removeprefix("file:"))
    if target.exists() and not target.is_dir():
        raise ConfigError(f"output path {path} is a file, not a directory")
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"output path {path}: {existing} is a file, so no directory can be made under it")
    try:
        fd, probe = tempfile.mkstemp(prefix=".mdaq-write-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"output path {path} is not writable: {exc.strerror or exc} ({existing})") from exc
