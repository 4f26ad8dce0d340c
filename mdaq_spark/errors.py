"""One small error hierarchy, so the CLI can map each kind to an exit code and a hint."""

from __future__ import annotations


class MdaqError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = 1


class ConfigError(MdaqError):
    """The configuration or the command line is wrong; nothing has started yet."""

    exit_code = 2


class InputError(MdaqError):
    """The input cannot be read at all (missing path, unknown file type)."""

    exit_code = 3


class ModelLoadError(MdaqError):
    """A model named in the config cannot be found or loaded offline."""

    exit_code = 4


class DependencyError(MdaqError):
    """An optional dependency is missing; the message carries the pip command that fixes it."""

    exit_code = 5


class NoUsableRecords(MdaqError):
    """Every record read was quarantined: the run stops after ingest, with stats.json and the report written."""

    exit_code = 6


def missing_dependency(package: str, extra: str | None = None, needed_by: str = "this feature") -> DependencyError:
    hint = f"pip install 'mdaq-spark[{extra}]'" if extra else f"pip install {package}"
    return DependencyError(f"{needed_by} needs the package '{package}': {hint}")
