"""The jar folder: versions matched to what is installed, fetched once, a failed fetch in one line."""

from __future__ import annotations

import importlib.metadata
import json

import pyspark
import pytest

from mdaq_spark import jars
from mdaq_spark.errors import DependencyError
from tests.conftest import MISSING_JARS, skip_or_fail


def test_artifact_names_of_ivy_and_pyspark_jars():
    assert jars.artifact_of("org.apache.hadoop_hadoop-aws-3.5.0.jar") == "hadoop-aws"
    assert jars.artifact_of("io.delta_delta-spark_4.2_2.13-4.4.0.jar") == "delta-spark_4.2_2.13"
    assert jars.artifact_of("com.github.luben_zstd-jni-1.5.7-3.jar") == "zstd-jni"
    assert jars.artifact_of("hadoop-client-api-3.5.0.jar") == "hadoop-client-api"
    assert jars.artifact_of("scala-library-2.13.18.jar") == "scala-library"
    assert jars.artifact_of("org.wildfly.openssl_wildfly-openssl-2.2.5.Final.jar") == "wildfly-openssl"


def test_coordinates_follow_the_installed_pyspark_and_delta_spark():
    wanted = jars.coordinates()
    hadoop = next(n for n in jars.spark_jars() if n.startswith("hadoop-client-api-"))
    assert wanted["s3a"] == f"org.apache.hadoop:hadoop-aws:{hadoop.removeprefix('hadoop-client-api-')[:-4]}"
    minor = ".".join(pyspark.__version__.split(".")[:2])
    assert wanted["delta"] == f"io.delta:delta-spark_{minor}_2.13:{importlib.metadata.version('delta-spark')}"


def test_the_fetched_folder_is_reused_and_holds_no_second_copy_of_sparks_jars():
    folder = jars.jars_dir()
    if set(jars.fetched(folder)) != set(jars.PACKAGES):
        skip_or_fail(MISSING_JARS)
    assert jars.fetch(list(jars.PACKAGES), folder) == {"delta": "cached", "s3a": "cached"}
    shipped = {jars.artifact_of(n) for n in jars.spark_jars()}
    for package in jars.fetched(folder).values():
        names = [j.name for j in package.jars]
        assert not {jars.artifact_of(n) for n in names} & shipped, package.name
    delta_jars = [j.name for j in jars.fetched(folder)["delta"].jars]
    assert any(n.startswith("io.delta_delta-spark_") for n in delta_jars)
    assert any("hadoop-aws" in j.name for j in jars.fetched(folder)["s3a"].jars)


def test_a_failed_fetch_is_one_line_naming_the_module(tmp_path):
    missing = "io.delta:delta-spark_4.2_2.13:0.0.0-no-such-release"
    with pytest.raises(DependencyError) as failed:
        jars.fetch(["delta"], tmp_path / "jars", wanted={"delta": missing})
    message = str(failed.value)
    assert failed.value.exit_code == 5
    assert "\n" not in message and "io.delta#delta-spark_4.2_2.13;0.0.0-no-such-release" in message
    assert not (tmp_path / "jars" / "delta" / jars.MANIFEST).exists()  # nothing half-fetched counts as fetched


def _folder_with(tmp_path, name: str, jar_names: list[str]):
    target = tmp_path / name
    target.mkdir(parents=True)
    for jar in jar_names:
        (target / jar).write_bytes(b"PK")
    manifest = {"coordinate": f"test:{name}:1", "jars": jar_names}
    (target / jars.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return tmp_path


def test_session_conf_loads_what_the_folder_holds(tmp_path):
    assert jars.session_conf("auto", tmp_path, local=True) == {}
    folder = _folder_with(tmp_path, "delta", ["a.jar", "b.jar"])
    local = jars.session_conf("auto", folder, local=True)
    assert local["spark.driver.extraClassPath"].split(":") == [str(folder / "delta" / j) for j in ("a.jar", "b.jar")]
    assert local["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert "spark.jars" not in local  # local mode: on the class path, nothing copied per task
    cluster = jars.session_conf(["delta"], folder, local=False)
    assert cluster["spark.jars"] == ",".join(str(folder / "delta" / j) for j in ("a.jar", "b.jar"))
    with pytest.raises(DependencyError, match=r"mdaq jars fetch s3a"):
        jars.session_conf(["delta", "s3a"], folder, local=True)
    (folder / "delta" / "b.jar").unlink()  # an incomplete package is not there at all
    assert jars.session_conf("auto", folder, local=True) == {}


def test_submit_args_put_the_jars_on_both_class_paths(tmp_path):
    folder = _folder_with(tmp_path, "s3a", ["aws.jar"])
    args = jars.submit_args(["s3a"], folder)
    path = str(folder / "s3a" / "aws.jar")
    assert args == ["--driver-class-path", path, "--conf", f"spark.executor.extraClassPath={path}"]
