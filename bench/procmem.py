"""Run a command and sample the resident memory of its whole process tree (Linux /proc).

A Spark job's memory is spread over the driver JVM and its Python workers, all descendants
of the command; the sum over the tree, sampled once a second, is what the machine must hold.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2 :].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            continue
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def run_sampled(
    cmd: list[str], interval: float = 1.0, timeout: float | None = None, **popen
) -> tuple[int, float, list[tuple[float, int]]]:
    """(exit code, wall seconds, [(unix time, tree rss bytes)]) of `cmd`; past `timeout` it is
    interrupted (SIGINT, so Spark shuts down cleanly) and the exit code is 124."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, **popen)
    samples: list[tuple[float, int]] = []
    timed_out = False

    def sample() -> None:
        nonlocal timed_out
        while proc.poll() is None:
            samples.append((time.time(), tree_rss(proc.pid)))
            elapsed = time.perf_counter() - started
            if timeout is not None and not timed_out and elapsed > timeout:
                timed_out = True
                proc.send_signal(signal.SIGINT)
            elif timed_out and elapsed > timeout + 60:
                proc.kill()  # did not stop on SIGINT; its JVM exits when the driver's pipe closes
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rc = proc.wait()
    wall = time.perf_counter() - started
    sampler.join()
    return (124 if timed_out else rc), wall, samples
