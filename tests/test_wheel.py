"""Installed from a wheel into a fresh venv, with no repository beside it, the CLI and the demo work.

An editable install hides packaging mistakes: a default config read from the checkout, a
data file left out of the wheel. Here the wheel is built from the package alone, installed
without dependencies into a new venv (its third-party packages come from this interpreter's
site-packages through a .pth file), and run from an empty folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    shutil.copytree(REPO / "mdaq_spark", src / "mdaq_spark", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    wheels = root / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), "."]
    subprocess.run(build, cwd=src, check=True, capture_output=True, timeout=600)
    (wheel,) = wheels.glob("mdaq_spark-*.whl")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # the third-party packages of this interpreter, after the venv's own (a plain path: its .pth files,
    # among them any editable install of this project, are not processed)
    (Path(purelib) / "third_party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=600)
    return env_dir


def _env(env_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "PYSPARK_PYTHON": str(env_dir / "bin" / "python"), "HF_HUB_OFFLINE": "1"}


def test_installed_package_comes_from_the_wheel(fresh_venv, tmp_path):
    where = subprocess.run(
        [str(fresh_venv / "bin" / "python"), "-c", "import mdaq_spark; print(mdaq_spark.__file__)"],
        cwd=tmp_path,
        env=_env(fresh_venv),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert where.startswith(str(fresh_venv)), where


def test_run_help_and_the_demo_without_a_repository(fresh_venv, model_cache, tmp_path):
    mdaq = str(fresh_venv / "bin" / "mdaq")
    env = _env(fresh_venv)
    helped = subprocess.run([mdaq, "run", "--help"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert helped.returncode == 0 and "--dry-run" in helped.stdout
    demo = [
        mdaq, "demo", "--output", "runs/demo", "--master", "local[2]",
        "--set", f"model.cache_dir={model_cache}", "--set", "model.name=multilingual-e5-small-static",
        "--set", "spark.shuffle_partitions=4",
    ]  # fmt: skip
    done = subprocess.run(demo, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert summary["counts"]["identity_holds"] and summary["counts"]["selected"] > 0
    stats = json.loads((tmp_path / "runs" / "demo" / "report" / "stats.json").read_text())
    assert stats["counts"] == summary["counts"]
    # the corpus it read is the one inside the installed package
    assert stats["config"]["input"]["paths"][0].startswith(str(fresh_venv))
