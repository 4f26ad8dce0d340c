"""One local[2] SparkSession for the whole test run, and the shared data beside the checkout."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
MIDB_DIR = SHARED_DATA / "midb_train"
DEMO_CORPUS = REPO / "demo" / "corpus"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark():
    from mdaq_spark.config import SparkConfig
    from mdaq_spark.session import build_session

    session = build_session(SparkConfig(master="local[2]", shuffle_partitions=4, driver_memory="3g"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def model_cache() -> str:
    """The prepared packaged model, built once (CI's install step normally built it already)."""
    from mdaq_spark.models import registry

    registry.ensure_prepared("multilingual-e5-small")
    return str(registry.cache_dir())


@pytest.fixture(scope="session")
def model_dir(model_cache) -> str:
    from mdaq_spark.models import registry

    return registry.resolve("multilingual-e5-small")


def write_midb_subset(folder: Path, records_per_lang: dict[str, int]) -> Path:
    """The first records of real MIDB files, written under their own names (the name gives the language)."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    for lang, n in records_per_lang.items():
        src = MIDB_DIR / f"{lang}.json"
        if not src.exists():
            pytest.skip("shared MIDB data not present")
        data = json.loads(src.read_text(encoding="utf-8"))[:n]
        (folder / f"{lang}.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return folder
