"""One local[2] SparkSession for the whole test run, and the shared MIDB data the real-data tests read.

The MIDB files live outside the repository: $MDAQ_SHARED_DATA, else ../shared/data beside
the checkout, holds midb_train/<Language>.json. Without them the tests that need them skip,
all under one notice naming where the data was looked for; under CI=true they fail instead,
so a CI machine that lost its data never passes quietly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA_VARIABLE = "MDAQ_SHARED_DATA"
SHARED_DATA = Path(os.environ.get(SHARED_DATA_VARIABLE) or REPO.parent / "shared" / "data")
MIDB_DIR = SHARED_DATA / "midb_train"
MISSING_MIDB = f"MIDB data not found in {MIDB_DIR}: set {SHARED_DATA_VARIABLE} to the folder that holds midb_train/"
MISSING_JARS = (
    "the delta-spark / hadoop-aws jars are not in the jar folder: run `mdaq jars fetch` (scripts/install.sh does)"
)
DEMO_CORPUS = REPO / "mdaq_spark" / "demo" / "corpus"

# The files that take longest, longest first (measured with --durations): under pytest-xdist's
# --dist loadfile a file runs whole on one process, so starting these early keeps one long file
# from running alone at the end while the other process idles
HEAVY_FIRST = (
    "test_standalone_cluster.py",
    "test_gpu_cluster.py",
    "test_pipeline.py",
    "test_scoring.py",
    "io/test_s3.py",
    "io/test_delta_spark.py",
    "train/test_qsm_training.py",
    "test_resume.py",
    "test_wheel.py",
    "test_copies.py",
    "io/test_hostile.py",
    "report/test_diff.py",
    "test_refresh.py",
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark():
    from mdaq_spark.config import SparkConfig
    from mdaq_spark.session import build_session

    session = build_session(SparkConfig(master="local[2]", shuffle_partitions=4, driver_memory="3g"))
    yield session
    session.stop()


def skip_or_fail(reason: str) -> None:
    """Skip a test whose outside ingredient is missing; under CI=true a missing ingredient is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def lake_spark(spark):
    """The shared session, after checking it loaded delta-spark and hadoop-aws from the jar folder."""
    from mdaq_spark.io import delta

    jvm = spark.sparkContext._jvm
    try:
        jvm.java.lang.Class.forName("org.apache.hadoop.fs.s3a.S3AFileSystem")
    except Exception:  # py4j: ClassNotFoundException
        skip_or_fail(MISSING_JARS)
    if not delta.spark_has_delta(spark):
        skip_or_fail(MISSING_JARS)
    return spark


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 for this test process."""
    from tests import s3_server as server

    running = server.start()
    yield running
    running.stop()


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


def pytest_collection_modifyitems(config, items) -> None:
    """Heavy files first, each file's tests in their own order (a stable sort)."""
    tests = Path(__file__).parent

    def rank(item) -> int:
        path = Path(str(item.fspath))
        name = path.relative_to(tests).as_posix() if path.is_relative_to(tests) else ""
        return HEAVY_FIRST.index(name) if name in HEAVY_FIRST else len(HEAVY_FIRST)

    items.sort(key=rank)


def pytest_report_header(config) -> str:
    found = (
        "found"
        if MIDB_DIR.is_dir()
        else f"NOT FOUND: tests that need it skip (fail under CI=true); set {SHARED_DATA_VARIABLE}"
    )
    return f"MIDB data: {MIDB_DIR} ({found})"


def require_midb(*languages: str) -> Path:
    """MIDB_DIR, after checking it holds these languages' files: else skip (fail under CI=true), one reason for all."""
    if not MIDB_DIR.is_dir() or any(not (MIDB_DIR / f"{lang}.json").is_file() for lang in languages):
        skip_or_fail(MISSING_MIDB)
    return MIDB_DIR


def write_midb_subset(folder: Path, records_per_lang: dict[str, int]) -> Path:
    """The first records of real MIDB files, written under their own names (the name gives the language)."""
    import json

    require_midb(*records_per_lang)
    folder.mkdir(parents=True, exist_ok=True)
    for lang, n in records_per_lang.items():
        src = MIDB_DIR / f"{lang}.json"
        data = json.loads(src.read_text(encoding="utf-8"))[:n]
        (folder / f"{lang}.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return folder
