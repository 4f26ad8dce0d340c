"""A real Spark standalone cluster (one master, N workers) on 127.0.0.1 for tests, started with pyspark's own scripts.

Why a real cluster: ``local[N]`` runs every task as a thread of the driver JVM, so it never exercises what breaks
only when work is spread out: executors in their own JVMs with their own Python workers, UDF closures and Arrow
batches pickled over the wire, a driver that must ship everything it uses, workers that die mid-job.

Why ``sbin/spark-daemon.sh``: the pip pyspark package has no ``start-master.sh`` / ``start-worker.sh``, but it ships
``sbin/spark-daemon.sh``, which is exactly what those scripts call; using it means pid files, log files and the
launch command are the ones a real deployment gets. The ``bin/spark-class`` fallback was not needed: the daemon
script works with the pip layout (it only needs ``SPARK_HOME`` pointing at the pyspark package, ``bash``, ``nohup``,
``nice`` and ``ps``).

Isolation: every cluster gets free ports picked at runtime and its own temporary SPARK_CONF_DIR / SPARK_LOG_DIR /
SPARK_PID_DIR / SPARK_WORKER_DIR / SPARK_LOCAL_DIRS / SPARK_IDENT_STRING, and every inherited ``SPARK_*`` /
``PYSPARK_*`` variable is dropped (``SPARK_MASTER`` would make spark-daemon.sh rsync, ``SPARK_NO_DAEMONIZE`` would
make it block, ``SPARK_REMOTE`` would turn the driver into a Spark Connect client), so concurrent runs cannot collide.
Only 127.0.0.1 is used: master and workers get ``--host 127.0.0.1`` and ``SPARK_LOCAL_IP``, the UIs advertise it
via ``SPARK_PUBLIC_DNS``, and the master's REST submission server (on by default, fixed port 6066) is switched off.

Usage from a test module (``tests/conftest.py`` belongs to someone else, so each module builds its own fixture)::

    import pytest

    from tests.standalone_cluster import start_cluster

    @pytest.fixture(scope="module")
    def standalone_cluster():
        cluster = start_cluster(workers=2)  # blocks until both workers are ALIVE in the master
        try:
            yield cluster
        finally:
            cluster.stop()  # always runs, also when a test failed

    @pytest.mark.cluster
    def test_select_on_cluster(standalone_cluster, tmp_path):
        proc = standalone_cluster.spark_submit(
            [str(REPO / "jobs" / "run_select.py"), "--out", str(tmp_path / "out")],
            env={"HF_HUB_OFFLINE": "1"},
            timeout=900,
        )
        assert proc.returncode == 0, proc.stderr[-5000:]

    # fault tolerance: standalone_cluster.kill_worker(0); standalone_cluster.wait_for_workers(1)

or, outside pytest, ``with StandaloneCluster(workers=2) as cluster: cluster.spark_submit([...])``.

``spark_submit`` puts its small-machine defaults first, so a caller's own ``--conf k=v`` in ``args`` wins. It also
sets ``spark.cores.max`` and ``spark.scheduler.minRegisteredResourcesRatio=1`` so that a job waits for every executor
before its first task (otherwise the first executor to register takes all the early tasks). Set
``MDAQ_KEEP_CLUSTER_DIR=1`` to keep the temporary directory (logs, executor work dirs) after ``stop()``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)

HOST = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
# Every process of a cluster (daemons, executors, their Python workers) inherits this variable, so leftovers can be
# found even though only the daemons have pid files.
MARKER_ENV = "MDAQ_TEST_SPARK_CLUSTER"
KEEP_DIR_ENV = "MDAQ_KEEP_CLUSTER_DIR"

# A plain opener: urllib honours http_proxy/HTTP_PROXY, and a proxy must never see the loopback status page.
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ClusterStartError(RuntimeError):
    """Raised when the cluster does not come up; the message carries the tail of the daemon logs."""


def spark_home() -> Path:
    """The pip pyspark package is a complete SPARK_HOME (bin/, sbin/, jars/); never trust an inherited SPARK_HOME."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def java_available() -> bool:
    """Lets test modules skip instead of error where no JVM is installed."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return True
    return shutil.which("java") is not None


def free_ports(n: int) -> list[int]:
    """Ports the kernel considers free now; all sockets stay open until all are chosen, so the ports are distinct.

    There is an unavoidable window between closing and the JVM binding; on a test machine that race is rare, and a
    lost race shows up as a clear bind error in the daemon log.
    """
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def pid_alive(pid: int | None) -> bool:
    """``os.kill(pid, 0)`` also succeeds for zombies, and an unreaped daemon is as dead as a missing one."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:  # no procfs (macOS): the zombie caveat does not matter there, daemons are reparented and reaped
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state = stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3]
    return state not in (b"Z", b"X")


def _wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if pid_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if pid_alive(p)]
    return alive


def _signal(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class StandaloneCluster:
    """One master and ``workers`` workers, each worker with ``cores_per_worker`` cores and ``worker_memory``.

    The defaults (1 core, 2g per worker, 512m daemon heaps) fit two workers plus a 1g driver on a 2-core, small-RAM
    machine; executors get 1g (see ``spark_submit``), leaving room in each worker's 2g for the executor only.
    """

    def __init__(
        self,
        workers: int = 2,
        *,
        cores_per_worker: int = 1,
        worker_memory: str = "2g",
        daemon_memory: str = "512m",
        start_timeout: float = 120.0,
        base_dir: str | os.PathLike[str] | None = None,
        keep_dir: bool | None = None,
        worker_resources: Mapping[str, int] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("a standalone cluster needs at least one worker")
        self.workers = workers
        self.cores_per_worker = cores_per_worker
        self.worker_memory = worker_memory
        self.daemon_memory = daemon_memory
        # custom resources each worker offers (e.g. {"gpu": 1}), found by a discovery script that reports
        # addresses 0..n-1: stage-level scheduling can be tested on machines without the real device
        self.worker_resources = dict(worker_resources or {})
        self.start_timeout = start_timeout
        self.keep_dir = os.environ.get(KEEP_DIR_ENV) == "1" if keep_dir is None else keep_dir
        self._base_dir = base_dir
        self.spark_home = spark_home()
        self.daemon_script = self.spark_home / "sbin" / "spark-daemon.sh"
        self.submit_script = self.spark_home / "bin" / "spark-submit"
        self.ident = f"mdaq-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.root: Path | None = None
        self.master_port: int | None = None
        self.master_ui_port: int | None = None
        self.worker_ui_ports: list[int] = []
        self.start_seconds: float | None = None
        self._daemon_env: dict[str, str] = {}
        self._started = False
        self._stopped = False

    # ------------------------------------------------------------------ addresses

    @property
    def master_url(self) -> str:
        self._require_ports()
        return f"spark://{HOST}:{self.master_port}"

    @property
    def ui_url(self) -> str:
        self._require_ports()
        return f"http://{HOST}:{self.master_ui_port}"

    def _require_ports(self) -> None:
        if self.master_port is None:
            raise RuntimeError("cluster not started")

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> StandaloneCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> StandaloneCluster:
        """Master first and only then the workers, in parallel.

        A worker that cannot reach the master retries only after 5-15 s, and each spark-daemon.sh start sleeps at
        least 2.5 s, so waiting for the master and then starting the workers together is the fast order.
        """
        if self._started:
            raise RuntimeError("a StandaloneCluster can be started once")
        self._started = True
        t0 = time.monotonic()
        atexit.register(self.stop)  # a crashed or interrupted session must not leave JVMs behind
        try:
            self._prepare()
            self._start_daemons(MASTER_CLASS, [(1, self._master_args())])
            self._wait(lambda s: s.get("status") == "ALIVE", "master ALIVE")
            self._start_daemons(WORKER_CLASS, [(i + 1, self._worker_args(i)) for i in range(self.workers)])
            self.wait_for_workers(self.workers, timeout=self.start_timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        LOG.info(
            "standalone cluster %s up in %.1fs: %d workers, master %s, UI %s, dir %s",
            self.ident,
            self.start_seconds,
            self.workers,
            self.master_url,
            self.ui_url,
            self.root,
        )
        return self

    def _prepare(self) -> None:
        if not self.daemon_script.is_file():
            raise ClusterStartError(f"{self.daemon_script} missing: this pyspark install cannot start daemons")
        self.root = Path(tempfile.mkdtemp(prefix="mdaq-spark-cluster-", dir=self._base_dir))
        # spark-daemon.sh leaves $log and $pid unquoted in places; a path with blanks would break stop/status.
        if any(c.isspace() for c in str(self.root)):
            raise ClusterStartError(f"temporary directory {self.root} has whitespace; spark-daemon.sh cannot cope")
        for sub in ("conf", "logs", "pids", "work", "local"):
            (self.root / sub).mkdir()
        self.master_port, self.master_ui_port, *self.worker_ui_ports = free_ports(2 + self.workers)
        env = self._base_env()
        env.update(
            {
                "SPARK_LOG_DIR": str(self.root / "logs"),
                "SPARK_PID_DIR": str(self.root / "pids"),
                "SPARK_WORKER_DIR": str(self.root / "work"),
                "SPARK_IDENT_STRING": self.ident,
                "SPARK_DAEMON_MEMORY": self.daemon_memory,
                # Off by default in older releases, on in 4.x: it would bind the fixed port 6066.
                "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
                MARKER_ENV: self.ident,
            }
        )
        opts = []
        for name, amount in sorted(self.worker_resources.items()):
            script = self.root / "conf" / f"discover-{name}.sh"
            addresses = ", ".join(f'"{i}"' for i in range(amount))
            script.write_text(f'#!/usr/bin/env bash\necho \'{{"name": "{name}", "addresses": [{addresses}]}}\'\n')
            script.chmod(0o755)
            opts += [
                f"-Dspark.worker.resource.{name}.amount={amount}",
                f"-Dspark.worker.resource.{name}.discoveryScript={script}",
            ]
        if opts:
            env["SPARK_WORKER_OPTS"] = " ".join(opts)
        self._daemon_env = env

    def _base_env(self) -> dict[str, str]:
        """What the daemons and the driver share: the same SPARK_HOME/conf, loopback only, this very Python."""
        assert self.root is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_", "_SPARK_"))}
        env.pop(MARKER_ENV, None)
        env.update(
            {
                "SPARK_HOME": str(self.spark_home),
                "SPARK_CONF_DIR": str(self.root / "conf"),
                "SPARK_LOCAL_IP": HOST,
                "SPARK_LOCAL_HOSTNAME": HOST,
                "SPARK_PUBLIC_DNS": HOST,
                "SPARK_LOCAL_DIRS": str(self.root / "local"),
                "PYSPARK_PYTHON": sys.executable,
                "PYSPARK_DRIVER_PYTHON": sys.executable,
            }
        )
        return env

    def _master_args(self) -> list[str]:
        return ["--host", HOST, "--port", str(self.master_port), "--webui-port", str(self.master_ui_port)]

    def _worker_args(self, i: int) -> list[str]:
        assert self.root is not None
        work = self.root / "work" / f"worker-{i}"
        work.mkdir(exist_ok=True)
        return [
            "--host",
            HOST,
            "--webui-port",
            str(self.worker_ui_ports[i]),
            "--cores",
            str(self.cores_per_worker),
            "--memory",
            self.worker_memory,
            "--work-dir",
            str(work),
            self.master_url,
        ]

    def _daemon(self, action: str, cls: str, instance: int, args: Sequence[str] = ()) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["bash", str(self.daemon_script), action, cls, str(instance), *args],
            env=self._daemon_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def _start_daemons(self, cls: str, instances: Sequence[tuple[int, Sequence[str]]]) -> None:
        """spark-daemon.sh exits 0 even when the JVM died at once ("failed to launch"), so check the pid ourselves."""
        procs = [(instance, self._daemon("start", cls, instance, args)) for instance, args in instances]
        for instance, proc in procs:
            out, _ = proc.communicate(timeout=60)
            LOG.debug("spark-daemon.sh start %s %d: %s", cls, instance, out.strip())
            pid = self._pid(cls, instance)
            if proc.returncode != 0 or not pid_alive(pid):
                raise ClusterStartError(
                    f"{cls} {instance} did not start (rc={proc.returncode}, pid={pid}):\n{out}\n{self.log_tail()}"
                )

    def stop(self) -> None:
        """Workers, then master, through spark-daemon.sh stop (SIGTERM, so workers kill their executors), then SIGKILL.

        Idempotent and safe after a partial start. Whatever the daemons leave (executors of a SIGKILLed worker, Python
        workers) is found through the marker variable and killed too.
        """
        if self._stopped or not self._started:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        try:
            if self.root is not None and self._daemon_env:
                self._stop_daemons(WORKER_CLASS, range(1, self.workers + 1), grace=20.0)
                self._stop_daemons(MASTER_CLASS, [1], grace=15.0)
                leftovers = self.cluster_processes()
                if leftovers:
                    LOG.warning("killing leftover processes of cluster %s: %s", self.ident, leftovers)
                    _signal(leftovers, signal.SIGTERM)
                    _signal(_wait_gone(leftovers, 5.0), signal.SIGKILL)
                    still = _wait_gone(leftovers, 5.0)
                    if still:
                        LOG.error("processes of cluster %s survived SIGKILL: %s", self.ident, still)
        finally:
            if self.root is not None:
                if self.keep_dir:
                    LOG.info("kept cluster directory %s", self.root)
                else:
                    shutil.rmtree(self.root, ignore_errors=True)
            LOG.info("standalone cluster %s stopped", self.ident)

    def _stop_daemons(self, cls: str, instances: Sequence[int] | range, grace: float) -> None:
        pids = {i: self._pid(cls, i) for i in instances}
        procs = [self._daemon("stop", cls, i) for i in instances if pid_alive(pids[i])]
        for proc in procs:
            try:
                out, _ = proc.communicate(timeout=30)
                LOG.debug("spark-daemon.sh stop %s: %s", cls, out.strip())
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        alive = _wait_gone([p for p in pids.values() if p], grace)
        if alive:
            LOG.warning("%s did not stop within %.0fs, SIGKILL %s", cls, grace, alive)
            _signal(alive, signal.SIGKILL)
            _wait_gone(alive, 5.0)

    # ------------------------------------------------------------------ inspection

    def _pid(self, cls: str, instance: int) -> int | None:
        """Read the pid file spark-daemon.sh wrote; the name pattern is the script's own."""
        if self.root is None:
            return None
        path = self.root / "pids" / f"spark-{self.ident}-{cls}-{instance}.pid"
        try:
            return int(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def master_pid(self) -> int | None:
        return self._pid(MASTER_CLASS, 1)

    def worker_pids(self) -> list[int | None]:
        """The pid of worker ``i`` at index ``i`` as started, dead or alive, so indices stay stable after a kill."""
        return [self._pid(WORKER_CLASS, i + 1) for i in range(self.workers)]

    def kill_worker(self, i: int) -> int:
        """SIGKILL worker ``i`` (0-based) as a crash would: no shutdown hook; its executors notice on their own."""
        pid = self.worker_pids()[i]
        if not pid_alive(pid):
            raise RuntimeError(f"worker {i} (pid {pid}) is not running")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        if _wait_gone([pid], 10.0):
            raise RuntimeError(f"worker {i} (pid {pid}) survived SIGKILL")
        LOG.info("killed worker %d (pid %d) of cluster %s", i, pid, self.ident)
        return pid

    def cluster_processes(self) -> list[int]:
        """Every live process of this cluster: daemons, executors and their Python workers (not spark-submit drivers).

        Executors are children of the workers and have no pid files; they inherit the marker variable instead.
        """
        pids = {p for p in [self.master_pid(), *self.worker_pids()] if pid_alive(p)}
        proc = Path("/proc")
        if proc.is_dir():
            marker = f"{MARKER_ENV}={self.ident}".encode()
            me = os.getpid()
            for entry in proc.iterdir():
                if not entry.name.isdigit() or int(entry.name) == me:
                    continue
                try:
                    environ = (entry / "environ").read_bytes()
                except OSError:  # gone meanwhile, or not ours
                    continue
                if marker in environ.split(b"\0") and pid_alive(int(entry.name)):
                    pids.add(int(entry.name))
        return sorted(pids)

    def status(self) -> dict[str, Any]:
        """The master's JSON status page (workers with their state, apps, ...)."""
        with _NO_PROXY_OPENER.open(f"{self.ui_url}/json/", timeout=5) as resp:
            return json.loads(resp.read().decode())

    def alive_workers(self) -> int:
        return sum(1 for w in self.status().get("workers", []) if w.get("state") == "ALIVE")

    def wait_for_workers(self, n: int, timeout: float = 60.0) -> None:
        """Until the master sees exactly ``n`` ALIVE workers (after ``kill_worker`` the master needs a moment)."""
        self._wait(
            lambda s: sum(1 for w in s.get("workers", []) if w.get("state") == "ALIVE") == n,
            f"{n} ALIVE workers",
            timeout,
        )

    def _wait(self, ok: Callable[[dict[str, Any]], bool], what: str, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        last: object = None
        while True:
            if not pid_alive(self.master_pid()):
                raise ClusterStartError(f"master died while waiting for {what}\n{self.log_tail()}")
            try:
                last = self.status()
                if ok(last):
                    return
            except (urllib.error.URLError, OSError, ValueError) as e:  # UI not bound yet
                last = e
            if time.monotonic() > deadline:
                raise ClusterStartError(f"timed out waiting for {what}; last status: {last}\n{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of every daemon log, for error messages: a failed start is otherwise a silent timeout."""
        if self.root is None:
            return "(no log directory)"
        parts = []
        for log in sorted((self.root / "logs").glob("*.out")):
            text = log.read_text(errors="replace").splitlines()
            parts.append(f"==> {log.name} <==\n" + "\n".join(text[-lines:]))
        return "\n".join(parts) or "(no daemon logs)"

    # ------------------------------------------------------------------ jobs

    def default_submit_conf(self) -> dict[str, str]:
        """Small-machine settings; ``spark.cores.max`` plus the ratio make the driver wait for every executor."""
        (ui_port,) = free_ports(1)
        return {
            "spark.driver.host": HOST,
            "spark.driver.bindAddress": HOST,
            "spark.ui.port": str(ui_port),
            "spark.ui.showConsoleProgress": "false",
            "spark.driver.memory": "1g",
            "spark.executor.memory": "1g",
            "spark.executor.cores": str(self.cores_per_worker),
            "spark.cores.max": str(self.cores_per_worker * self.workers),
            "spark.scheduler.minRegisteredResourcesRatio": "1.0",
            "spark.scheduler.maxRegisteredResourcesWaitingTime": "60s",
            "spark.sql.shuffle.partitions": "4",
        }

    def spark_submit(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        timeout: float = 600.0,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``bin/spark-submit --master <master_url> <defaults> <args>`` and capture its output.

        The driver runs in its own session so a timeout can kill the whole tree (the java launcher and the Python
        driver it forks) instead of orphaning the Python side; TimeoutExpired is re-raised with the output so far.
        """
        if not self._started or self._stopped:
            raise RuntimeError("cluster is not running")
        conf = [a for k, v in self.default_submit_conf().items() for a in ("--conf", f"{k}={v}")]
        cmd = ["bash", str(self.submit_script), "--master", self.master_url, *conf, *args]
        run_env = self._base_env()
        if env:
            run_env.update(env)
        LOG.info("spark-submit %s", " ".join(args))
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            env=run_env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException as e:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
            LOG.error("spark-submit killed after %.1fs; stderr tail:\n%s", time.monotonic() - t0, err[-3000:])
            if isinstance(e, subprocess.TimeoutExpired):
                raise subprocess.TimeoutExpired(cmd, timeout, output=out, stderr=err) from None
            raise
        LOG.info("spark-submit finished rc=%d in %.1fs", proc.returncode, time.monotonic() - t0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def start_cluster(workers: int = 2, **kwargs: Any) -> StandaloneCluster:
    """A started cluster for a fixture to yield and stop; on a failed start nothing is left running."""
    return StandaloneCluster(workers, **kwargs).start()
