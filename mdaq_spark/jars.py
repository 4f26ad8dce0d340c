"""The JVM packages a run adds to Spark (delta-spark, hadoop-aws): fetched once, loaded from a local folder.

pyspark ships neither Delta Lake nor the S3A file system. On a cluster they come from
`spark-submit --packages` or from the executor image; a local run, the tests and CI load them
from a jar folder that the install step fills once through Spark's own Ivy resolver
(`mdaq jars fetch`), so nothing is fetched while a job runs and a second install fetches
nothing at all.

The versions follow what is installed, never a second pin: delta-spark's jar is the release of
the installed `delta-spark` Python package built for the installed Spark's major.minor, and
hadoop-aws is the version of pyspark's own `jars/hadoop-client-api-*.jar` (an S3A connector of
another Hadoop release fails at class loading). Transitive jars that pyspark already ships
(Hadoop's client, Parquet, Jackson, log4j...) are left out of the folder: two versions of one
library on a classpath fail in ways no error message explains.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mdaq_spark.errors import DependencyError

log = logging.getLogger(__name__)

JARS_ENV = "MDAQ_JARS_DIR"
MANIFEST = "manifest.json"
DELTA = "delta"
S3A = "s3a"
PACKAGES = (DELTA, S3A)
# what each package adds to a session besides its jars
SESSION_CONF = {
    DELTA: {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    },
    S3A: {},
}
# an Ivy jar is saved as <group>_<artifact>-<version>.jar; pyspark's own as <artifact>-<version>.jar
_VERSIONED_JAR = re.compile(r"^(?P<artifact>.+?)-(?P<version>\d[^-]*(?:-[A-Za-z0-9.]+)*)\.jar$")
FETCH_TIMEOUT_S = 900


def pyspark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def spark_jars() -> list[str]:
    return sorted(p.name for p in (pyspark_home() / "jars").glob("*.jar"))


def hadoop_version() -> str:
    """The Hadoop release pyspark was built with, read off its own client jar."""
    for name in spark_jars():
        match = re.fullmatch(r"hadoop-client-api-(.+)\.jar", name)
        if match:
            return match.group(1)
    raise DependencyError(f"pyspark at {pyspark_home()} has no jars/hadoop-client-api-*.jar: reinstall pyspark")


def coordinates() -> dict[str, str]:
    """Maven coordinates of each package, matched to the installed pyspark and delta-spark."""
    import pyspark

    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    try:
        delta_version = importlib.metadata.version("delta-spark")
    except importlib.metadata.PackageNotFoundError:
        delta_version = None
    found = {S3A: f"org.apache.hadoop:hadoop-aws:{hadoop_version()}"}
    if delta_version:
        found[DELTA] = f"io.delta:delta-spark_{spark_minor}_2.13:{delta_version}"
    return found


def jars_dir(configured: str | None = None) -> Path:
    if configured:
        return Path(configured).expanduser()
    if os.environ.get(JARS_ENV):
        return Path(os.environ[JARS_ENV]).expanduser()
    return Path.home() / ".cache" / "mdaq_spark" / "jars"


def artifact_of(jar_name: str) -> str:
    """The artifact id in a jar's file name, without its Maven group (Ivy's prefix) and version."""
    match = _VERSIONED_JAR.match(jar_name)
    stem = match.group("artifact") if match else jar_name.removesuffix(".jar")
    return stem.split("_", 1)[1] if "_" in stem and "." in stem.split("_", 1)[0] else stem


@dataclass(frozen=True)
class Fetched:
    """One package in the jar folder: the coordinate it was resolved for and its jars."""

    name: str
    coordinate: str
    jars: tuple[Path, ...]


def fetched(folder: Path) -> dict[str, Fetched]:
    """The packages whose jars are in `folder` (complete ones only: each listed jar is there)."""
    found = {}
    for name in PACKAGES:
        manifest = folder / name / MANIFEST
        if not manifest.is_file():
            continue
        record = json.loads(manifest.read_text(encoding="utf-8"))
        jars = tuple(folder / name / j for j in record["jars"])
        if jars and all(j.is_file() for j in jars):
            found[name] = Fetched(name, record["coordinate"], jars)
    return found


def fetch(names: list[str], folder: Path, wanted: dict[str, str] | None = None) -> dict[str, str]:
    """Resolve each package (and its dependencies) from Maven Central into `folder`, once.

    Returns name -> "cached" or "fetched". A package already there for the same coordinate is
    not resolved again; Ivy's own cache lives in the folder too, so a version change fetches
    only what changed.
    """
    wanted = wanted or coordinates()
    have = fetched(folder)
    outcome = {}
    for name in names:
        if name not in wanted:
            raise DependencyError(f"jar package '{name}' needs its Python package: pip install 'mdaq-spark[{name}]'")
        if name in have and have[name].coordinate == wanted[name]:
            outcome[name] = "cached"
            continue
        jars = _resolve(wanted[name], folder / ".ivy")
        target = folder / name
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        shipped = {artifact_of(j) for j in spark_jars()}
        kept = sorted(j for j in jars if artifact_of(j.name) not in shipped)
        for jar in kept:
            _link_or_copy(jar, target / jar.name)
        shutil.rmtree(folder / ".ivy" / "jars", ignore_errors=True)  # Ivy's copies; its cache stays
        manifest = {"coordinate": wanted[name], "jars": [j.name for j in kept]}
        (target / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        outcome[name] = "fetched"
        log.info("%s: %d jars for %s in %s", name, len(kept), wanted[name], target)
    return outcome


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link where the file system allows one: the AWS SDK bundle alone is 650 MB."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _resolve(coordinate: str, ivy_dir: Path) -> list[Path]:
    """Spark's own resolver (spark-submit --packages) on a script that does nothing: the jars it resolved."""
    ivy_dir.mkdir(parents=True, exist_ok=True)
    jars_out = ivy_dir / "jars"
    shutil.rmtree(jars_out, ignore_errors=True)
    submit = pyspark_home() / "bin" / "spark-submit"
    with tempfile.TemporaryDirectory() as tmp:
        noop = Path(tmp) / "noop.py"
        noop.write_text("", encoding="utf-8")
        cmd = [str(submit), "--master", "local[1]", "--packages", coordinate, "--conf", f"spark.jars.ivy={ivy_dir}"]
        try:
            proc = subprocess.run(
                [*cmd, str(noop)], capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise DependencyError(f"fetching {coordinate} from Maven Central timed out after {exc.timeout} s") from exc
    if proc.returncode != 0 or not jars_out.is_dir():
        raise DependencyError(f"fetching {coordinate} from Maven Central failed: {fetch_failure(proc.stderr)}")
    return sorted(jars_out.glob("*.jar"))


def fetch_failure(stderr: str) -> str:
    """The one line of Ivy's report that says why: the first unresolved module, else the last error."""
    missing = re.findall(r"module not found: (\S+)", stderr) or re.findall(r"::\s+(\S+#\S+;\S+): not found", stderr)
    if missing:
        return f"{missing[0]} not found (is Maven Central reachable?)"
    lines = [line.strip() for line in stderr.splitlines() if "Exception" in line or "Error" in line]
    return lines[-1] if lines else "spark-submit exited without resolving it"


def session_conf(packages: list[str] | str, folder: Path, local: bool) -> dict[str, str]:
    """Spark settings that put the packages' jars and session extensions into a session being built.

    `packages` is "auto" (whatever the folder holds) or a list that must all be there. A local
    session puts the jars on the driver's class path (nothing copied per task); a session for a
    cluster master ships them to the executors with `spark.jars`.
    """
    have = fetched(folder)
    if packages == "auto":
        chosen = [have[name] for name in PACKAGES if name in have]
    else:
        missing = [name for name in packages if name not in have]
        if missing:
            fix = f"mdaq jars fetch {' '.join(missing)}"
            raise DependencyError(f"spark.packages {missing} are not in the jar folder {folder}: run `{fix}`")
        chosen = [have[name] for name in packages]
    if not chosen:
        return {}
    jars = [str(j) for package in chosen for j in package.jars]
    conf = {"spark.driver.extraClassPath": os.pathsep.join(jars)}
    if not local:
        conf["spark.jars"] = ",".join(jars)
    for package in chosen:
        conf.update(SESSION_CONF[package.name])
    return conf


def submit_args(packages: list[str] | str, folder: Path) -> list[str]:
    """spark-submit arguments for a cluster whose nodes see `folder` at the same path (a shared disk, an image)."""
    conf = session_conf(packages, folder, local=True)
    if not conf:
        return []
    classpath = conf.pop("spark.driver.extraClassPath")
    args = ["--driver-class-path", classpath, "--conf", f"spark.executor.extraClassPath={classpath}"]
    for key, value in conf.items():
        args += ["--conf", f"{key}={value}"]
    return args
