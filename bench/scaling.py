"""End-to-end job at growing corpus sizes: wall time and peak memory per stage, and how they grow.

    python bench/make_corpus.py --rows 100000 --out runs/corpus_100k
    python bench/scaling.py run --corpus runs/corpus_100k --label 100k --run-dir runs/scale_100k \
        [--set key=value ...]          # -> bench/results/scaling_100k.json
    python bench/scaling.py summarize [--labels 10k 100k 1m --out scaling_summary.json]  # growth exponents

`run` starts `mdaq run` in a child process (embedded local Spark, every core), samples the
resident memory of the whole process tree once a second, and splits the samples by stage
using the stage markers the job writes (each marker's time and duration). The default
model is the packaged `multilingual-e5-small-static` (token embeddings, no transformer):
the only encoder that embeds a million samples on a 2-core CPU within an hour.
`summarize` fits each stage's cost to c * N^b between consecutive sizes: b ~ 1 is linear.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from procmem import run_sampled  # noqa: E402

RESULTS = Path(__file__).parent / "results"
STATIC_MODEL = "multilingual-e5-small-static"


def _stage_windows(run_dir: Path) -> dict[str, tuple[float, float]]:
    out = {}
    for marker in (run_dir / "_stages").glob("*.json"):
        info = json.loads(marker.read_text())
        end = marker.stat().st_mtime
        out[info["stage"]] = (end - float(info["seconds"]), end)
    return out


def cmd_run(args: argparse.Namespace) -> int:
    cmd = [sys.executable, "-m", "mdaq_spark.cli", "run", "--input", args.corpus, "--output", args.run_dir]
    cmd += ["--overwrite", "--set", f"model.name={args.model}"]
    for item in args.set:
        cmd += ["--set", item]
    rc, wall, samples = run_sampled(cmd, timeout=args.timeout)
    run_dir = Path(args.run_dir)
    windows = _stage_windows(run_dir)
    if rc != 0:
        # a run cut short by --timeout (or failed) still says how far it got and what it held
        partial = {
            "benchmark": "scaling",
            "label": args.label,
            "completed": False,
            "exit_code": rc,
            "command": " ".join(["python", *sys.argv]),
            "wall_seconds": round(wall, 1),
            "peak_rss_gib": round(max((r for _, r in samples), default=0) / 2**30, 2),
            "stages_finished": {
                stage: round(hi - lo, 1) for stage, (lo, hi) in sorted(windows.items(), key=lambda kv: kv[1][0])
            },
        }
        out = RESULTS / f"scaling_{args.label}.partial.json"
        out.write_text(json.dumps(partial, indent=2))
        print(json.dumps(partial, indent=2))
        print(f"job did not finish (exit code {rc})", file=sys.stderr)
        return rc
    stats = json.loads((run_dir / "report" / "stats.json").read_text())
    peak_by_stage = {
        stage: round(max((r for t, r in samples if lo - 1 <= t <= hi + 1), default=0) / 2**30, 2)
        for stage, (lo, hi) in sorted(windows.items(), key=lambda kv: kv[1][0])
    }
    manifest_path = Path(args.corpus) / "MANIFEST"
    result = {
        "benchmark": "scaling",
        "label": args.label,
        "completed": True,
        "command": " ".join(["python", *sys.argv]),
        "job_command": " ".join(cmd),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "platform": platform.platform(),
            "gpu": "none",
        },
        "model": args.model,
        "corpus_manifest": json.loads(manifest_path.read_text()) if manifest_path.is_file() else None,
        "commit": stats.get("code_commit"),  # what the job ran on, from its own stats.json
        "records_read": stats["counts"]["records_read"],
        "wall_seconds": round(wall, 1),
        "peak_rss_gib": round(max((r for _, r in samples), default=0) / 2**30, 2),
        "peak_rss_gib_by_stage": peak_by_stage,
        "stage_seconds": stats["stage_seconds"],
        "counts": stats["counts"],
        "quarantine_by_reason": stats.get("quarantine_by_reason"),
        "k_per_language": stats["stage_info"].get("cluster", {}).get("k_per_lang"),
        "encode_info": stats["stage_info"].get("encode"),
        "config_overrides": args.set,
    }
    out = RESULTS / f"scaling_{args.label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


def growth(results: list[dict]) -> dict[str, list[dict]]:
    """Per stage, the exponent b of seconds ~ N^b between each pair of consecutive sizes."""
    results = sorted(results, key=lambda r: r["records_read"])
    stages = [s for s in results[-1]["stage_seconds"]] + ["total"]
    out: dict[str, list[dict]] = {}
    for a, b in zip(results, results[1:], strict=False):
        for stage in stages:
            ta = a["wall_seconds"] if stage == "total" else a["stage_seconds"].get(stage)
            tb = b["wall_seconds"] if stage == "total" else b["stage_seconds"].get(stage)
            if not ta or not tb:
                continue
            exponent = math.log(tb / ta) / math.log(b["records_read"] / a["records_read"])
            out.setdefault(stage, []).append(
                {"from": a["label"], "to": b["label"], "seconds": [ta, tb], "exponent": round(exponent, 2)}
            )
    return out


def cmd_summarize(args: argparse.Namespace) -> int:
    if args.labels:  # one series (same settings at growing sizes), e.g. 10k_faiss 100k_faiss 1m_faiss
        results = [json.loads((RESULTS / f"scaling_{label}.json").read_text()) for label in args.labels]
    else:
        results = [
            json.loads(p.read_text())
            for p in sorted(RESULTS.glob("scaling_*.json"))
            if not p.stem.startswith("scaling_summary")
        ]
    if len(results) < 2:
        print("need at least two scaling_<label>.json results", file=sys.stderr)
        return 1
    summary = {
        "benchmark": "scaling_summary",
        "command": " ".join(["python", *sys.argv]),
        "sizes": {r["label"]: r["records_read"] for r in results},
        "wall_seconds": {r["label"]: r["wall_seconds"] for r in results},
        "peak_rss_gib": {r["label"]: r["peak_rss_gib"] for r in results},
        "growth_exponents": growth(results),
    }
    (RESULTS / args.out).write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("--corpus", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--run-dir", required=True)
    p.add_argument("--model", default=STATIC_MODEL)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--timeout", type=float, default=None, help="seconds; then stop and write a partial result")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("summarize")
    p.add_argument("--labels", nargs="+", help="the results of one series; default: every scaling_*.json")
    p.add_argument("--out", default="scaling_summary.json", help="file name under bench/results")
    p.set_defaults(func=cmd_summarize)
    args = parser.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
