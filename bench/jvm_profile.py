"""Where a Spark run's JVM time goes: run a command under Java Flight Recorder, sort its stack samples.

    python bench/jvm_profile.py --out bench/results/kmeans_stage_100k_jvm_profile.json -- \
        python bench/kmeans.py --stage --vectors runs/scale_100k/scores --fit-sample-max 20000 \
        --iters 30 --backends spark:block --parallel-fits 4 --driver-memory 4g --out runs/stage.json

The command's Spark driver (in local mode the executors too) is started with a recording
(`SPARK_SUBMIT_OPTS=-XX:StartFlightRecording=...,settings=profile`, read by Spark's launch
scripts), and `jfr print` turns its execution samples into stacks. Each sample goes to the
first category (in the order given) whose marker appears anywhere in its stack, so a
category is inclusive of everything it calls; the rest is "other". The default categories
are those of the cluster stage's Spark ML fits; `--category NAME=MARKER` replaces them.
Samples are of Java code only (native and idle threads are not sampled): shares, not seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from mdaq_spark.report.stats import code_commit

# Spark ML KMeans (block solver, k-means|| start), in the order a sample is tested against them
KMEANS_CATEGORIES = [
    ("init: weight each candidate centre (one row at a time)", "initKMeansParallel$11"),
    ("init: update each row's cost (one row at a time)", "initKMeansParallel$3"),
    ("init: other (local k-means++ on the candidates)", "initKMeansParallel"),
    ("iterations: block distances (dgemm)", "gemm"),
    ("iterations: per-row centre sums and counts", "KMeansAggregator"),
    ("cluster sizes for the model summary (one row at a time)", "KMeansModel.predict"),
    ("per task: closure and result serialisation", "Serializ"),
    ("per task: SQL configuration copies", "ConfigReader"),
    ("per task: cached block size estimation", "SizeEstimator"),
    ("class loading", "ClassLoader"),
    ("scheduling", "Scheduler"),
    ("array to vector conversion", "arrayToVector"),
]

_FRAME = re.compile(r"^\s+([\w$.<>]+)\(.*?\)\s+line:", re.M)


def stacks(recording: Path, depth: int) -> list[list[str]]:
    """Every execution sample's frames, innermost first."""
    printed = subprocess.run(
        ["jfr", "print", "--stack-depth", str(depth), "--events", "jdk.ExecutionSample", str(recording)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [_FRAME.findall(event) for event in printed.split("jdk.ExecutionSample")[1:]]


def categorise(samples: list[list[str]], categories: list[tuple[str, str]]) -> tuple[Counter, Counter]:
    """Samples per category, and the innermost frames of the uncategorised ones."""
    counts: Counter = Counter()
    other: Counter = Counter()
    for frames in samples:
        text = " ".join(frames)
        name = next((name for name, marker in categories if marker in text), None)
        if name is None:
            name = "other"
            if frames:
                other[frames[0]] += 1
        counts[name] += 1
    return counts, other


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--depth", type=int, default=64, help="frames kept per sample")
    ap.add_argument("--category", action="append", default=None, metavar="NAME=MARKER")
    ap.add_argument("--keep", default=None, help="keep the recording (.jfr) here")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("no command given (put it after --)")
    if shutil.which("jfr") is None:
        print("jvm_profile: the JDK's `jfr` tool is not on PATH", file=sys.stderr)
        return 2
    categories = KMEANS_CATEGORIES
    if args.category:
        categories = [tuple(c.split("=", 1)) for c in args.category]
    with tempfile.TemporaryDirectory() as tmp:
        recording = Path(args.keep or Path(tmp) / "run.jfr")
        env = dict(os.environ)
        env["SPARK_SUBMIT_OPTS"] = (
            env.get("SPARK_SUBMIT_OPTS", "") + f" -XX:StartFlightRecording=filename={recording},settings=profile"
        ).strip()
        started = time.perf_counter()
        done = subprocess.run(command, env=env)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            print(f"jvm_profile: the command exited with {done.returncode}", file=sys.stderr)
            return 1
        samples = stacks(recording, args.depth)
    counts, other = categorise(samples, categories)
    total = sum(counts.values())
    order = [name for name, _ in categories] + ["other"]
    markers = dict(categories)
    result = {
        "benchmark": "jvm_profile",
        "command": " ".join(command),
        "commit": code_commit(),
        "wall_seconds_under_recording": round(wall, 1),
        "samples": total,
        "note": "shares of the JVM's Java execution samples; a category includes everything it calls",
        "categories": [
            {
                "name": name,
                "marker": markers.get(name),
                "samples": counts[name],
                "share": round(counts[name] / total, 3) if total else 0.0,
            }
            for name in order
        ],
        "other_top_frames": [{"frame": frame, "samples": n} for frame, n in other.most_common(15)],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for row in result["categories"]:
        print(f"{row['share']:6.1%}  {row['name']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
