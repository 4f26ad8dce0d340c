"""End-to-end job on the MIDB data (10 languages, ~46k samples): wall time per stage, peak memory.

    python bench/midb_end_to_end.py --data ../shared/data/midb_train --run-dir /tmp/midb10 \
        --out bench/results/midb_end_to_end.json [--set key=value ...]

Runs `mdaq run` in a child process (embedded local Spark, every core of this machine),
samples the resident memory of the whole process tree (driver JVM + Python workers) once a
second, and writes the job's own stage timings and counts next to the totals.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from procmem import tree_rss  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "midb_train"))
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "midb_end_to_end.json"))
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()

    cmd = [
        sys.executable,
        "-m",
        "mdaq_spark.cli",
        "run",
        "--input",
        args.data,
        "--output",
        args.run_dir,
        "--overwrite",
    ]
    for item in args.set:
        cmd += ["--set", item]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peak = 0

    def sample() -> None:
        nonlocal peak
        while proc.poll() is None:
            peak = max(peak, tree_rss(proc.pid))
            time.sleep(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rc = proc.wait()
    wall = time.perf_counter() - started
    sampler.join()
    if rc != 0:
        print(f"job failed with exit code {rc}", file=sys.stderr)
        return rc
    stats = json.loads((Path(args.run_dir) / "report" / "stats.json").read_text())
    result = {
        "benchmark": "midb_end_to_end",
        "command": " ".join(cmd),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "wall_seconds": round(wall, 1),
        "peak_rss_gib": round(peak / 2**30, 2),
        "stage_seconds": stats["stage_seconds"],
        "counts": stats["counts"],
        "samples_per_language": {k: v.get("samples") for k, v in stats["per_language"].items()},
        "selected_per_language": {k: v.get("selected") for k, v in stats["per_language"].items()},
        "flags_per_language": {k: v.get("flags", {}) for k, v in stats["per_language"].items()},
        "k_per_language": stats["stage_info"].get("cluster", {}).get("k_per_lang"),
        "config_overrides": args.set,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
