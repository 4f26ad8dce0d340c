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
