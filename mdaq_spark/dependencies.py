"""The optional packages a configured run needs, checked before Spark starts.

A missing extra found inside an executor, after minutes of encoding, costs the run; found
here it costs a second and says which `pip install` fixes it (exit 5). Each entry names the
module, the package that provides it and the extra of this package that installs it.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from mdaq_spark.config import JobConfig
from mdaq_spark.errors import missing_dependency
from mdaq_spark.io import file_types, inputs


@dataclass(frozen=True)
class Requirement:
    module: str
    package: str
    extra: str
    why: str


FAISS = Requirement("faiss", "faiss-cpu", "faiss", "clustering.backend: faiss")
RAPIDS = Requirement("spark_rapids_ml", "spark-rapids-ml", "rapids", "clustering.backend: rapids")
DELTA_RS = Requirement("deltalake", "deltalake", "delta", "Delta without delta-spark in the session")
DELTA_SPARK = Requirement("delta", "delta-spark", "delta", "Delta through the session's DeltaSparkSessionExtension")


def _delta(cfg: JobConfig) -> Requirement:
    """delta-spark's Python API when the session is configured with its extension, else delta-rs (io/delta.py)."""
    extensions = cfg.spark.conf.get("spark.sql.extensions", "")
    return DELTA_SPARK if "DeltaSparkSessionExtension" in extensions else DELTA_RS


def requirements(cfg: JobConfig) -> list[tuple[Requirement, str]]:
    """(requirement, what in the config or input asks for it) for this run."""
    out: list[tuple[Requirement, str]] = []
    if cfg.clustering.backend == "faiss":
        out.append((FAISS, FAISS.why))
    if cfg.clustering.backend == "rapids":
        out.append((RAPIDS, RAPIDS.why))
    if cfg.output.format == "delta":
        out.append((_delta(cfg), "output.format: delta"))
    for path in cfg.input.paths:
        found = inputs.discover(path, cfg.input.file_type)
        if "delta" in found.files and "://" not in path:
            out.append((_delta(cfg), f"the Delta table {path}"))
        for f in inputs.local_files(found):
            codec = file_types.compression_of(f)
            if codec is not None and codec.module:
                need = Requirement(codec.module, codec.package or codec.module, codec.extra or "", codec.name)
                out.append((need, f"{codec.name}-compressed input ({f})"))
    return out


def _importable(module: str) -> bool:
    """Imported, not just found: a package whose import fails (a broken build, a missing native library) is missing."""
    if module == RAPIDS.module:  # importing it needs the GPU libraries; its presence is what can be checked here
        return importlib.util.find_spec(module) is not None
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def require(need: Requirement, asked_by: str) -> None:
    if not _importable(need.module):
        raise missing_dependency(need.package, need.extra or None, asked_by)


def check_dependencies(cfg: JobConfig) -> None:
    """Raise DependencyError (exit 5) for the first optional package the run needs and cannot import."""
    checked: set[str] = set()
    for need, asked_by in requirements(cfg):
        if need.module not in checked:
            checked.add(need.module)
            require(need, asked_by)
