"""What the Spark pandas UDFs cost on top of the bare model: same rows, device, batch size, threads.

    python bench/udf_overhead.py --model multilingual-e5-small --rows 256 --out bench/results/udf_overhead_e5.json
    python bench/udf_overhead.py --model multilingual-e5-small-static --rows 20000 \
        --out bench/results/udf_overhead_static.json

Bare: one plain Python process builds the job's `TextEncoder` and calls `encode` on every
prompt and every response (the same prefixes, max length and batch size the job uses), then
the QSM score on the two embedding matrices. Spark: the job's own `encode_map` (run by
`mapInArrow`, as the encode stage runs it) and `score_map` (run by `mapInArrow`, as the
score stage runs it) over the same rows, in a `local[1]` session, i.e. one Python worker, on
one thread like the bare side (Spark gives each Python worker OMP_NUM_THREADS =
spark.task.cpus, so the bare side is pinned to the same count; both are recorded). The rows
are written to Parquet first and read back, as the job reads its tables; the Spark side's
output goes to Spark's `noop` sink, the bare side's stays in memory: each side pays for
producing its result, neither for storing it. A warm-up action loads the model in the worker
before the timed one (the bare side loads before its clock starts too); the load is timed
separately.

Afterwards a `mapInPandas` reports, from every Python worker that served a task, its pid
and how many encoders it built (`loads_in_this_process`): the UDFs cache the model per
worker, so the bench asserts exactly one load per worker process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MIDB = REPO.parent / "shared" / "data" / "midb_train"


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int | None = None) -> dict[str, float]:
    """CPU seconds per thread of one process ("main" or "tid:name"), from /proc/<pid>/task.

    The Python worker used more CPU than wall time while torch ran on one thread, so some
    other thread worked alongside; per-thread figures say which.
    """
    pid = pid or os.getpid()
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        key = "main" if int(tid) == pid else f"{tid}:{name}"
        out[key] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def thread_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per-thread CPU spent between two snapshots; threads under 0.05 s are left out."""
    spent = {k: round(v - before.get(k, 0.0), 2) for k, v in after.items()}
    return dict(sorted(((k, v) for k, v in spent.items() if v >= 0.05), key=lambda kv: -kv[1]))


def _child_jvm() -> int:
    """The Spark JVM this process started (local mode: driver and executor in one JVM)."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    is_java = b"java" in f.read().split(b"\0")[0]
            except (OSError, ValueError, IndexError):
                continue
            if ppid == me and is_java:
                return int(entry)
    raise RuntimeError("no Spark JVM among this process's children")


def load_rows(midb: Path, n: int) -> pd.DataFrame:
    """The first n raw MIDB samples, round robin over the language files (prompt = instruction + input)."""
    per_file = [(p.stem, json.loads(p.read_text(encoding="utf-8"))) for p in sorted(midb.glob("*.json"))]
    rows = []
    i = 0
    while len(rows) < n:
        for lang, records in per_file:
            if i < len(records) and len(rows) < n:
                r = records[i]
                ins, inp, out = (r.get(f"Raw {f}") for f in ("Instruction", "Input", "Response"))
                if isinstance(ins, str) and isinstance(out, str):
                    prompt = "\n".join(x for x in (ins, inp if isinstance(inp, str) else "") if x)
                    rows.append({"sample_id": f"s{len(rows):07d}", "lang": lang, "prompt": prompt, "response": out})
        i += 1
    return pd.DataFrame(rows)


def bare(cfg, rows: pd.DataFrame, threads: int, head_dir: str | None) -> dict:
    import torch

    from mdaq_spark.models.encoder import TextEncoder, embedding_of_states, encode_cpu_in_this_process, max_tokens
    from mdaq_spark.models.qsm import QsmHead, score_and_embed

    torch.set_num_threads(threads)
    started = time.perf_counter()
    encoder = TextEncoder(cfg)
    load_s = time.perf_counter() - started
    encoder.encode(["warm up"] * 4, cfg.instruction_prefix)
    threads_before = thread_cpu_seconds()
    model_before = encode_cpu_in_this_process()
    head = QsmHead.load(head_dir) if head_dir else None
    layers = head.layers if head is not None else ()
    started, cpu = time.perf_counter(), time.process_time()
    states = None
    if layers:  # as the encode stage does for a layer head: both sides through their hidden states
        p = embedding_of_states(encoder.encode_layers(rows["prompt"].tolist(), cfg.instruction_prefix))
        r, states = encoder.with_layers(rows["response"].tolist(), cfg.response_prefix, layers)
    else:
        p = encoder.encode(rows["prompt"].tolist(), cfg.instruction_prefix)
        r = encoder.encode(rows["response"].tolist(), cfg.response_prefix)
    encode_s, encode_cpu = time.perf_counter() - started, time.process_time() - cpu
    by_thread = thread_delta(threads_before, thread_cpu_seconds())
    started = time.perf_counter()
    score_and_embed(p, r, head, states)
    score_s = time.perf_counter() - started
    return {
        "torch_threads": torch.get_num_threads(),
        "device": encoder.device,
        "max_tokens": max_tokens(encoder.model),
        "model_load_seconds": round(load_s, 2),
        "encode_seconds": round(encode_s, 3),
        "encode_samples_per_s": round(len(rows) / encode_s, 1),
        "encode_cpu_seconds": round(encode_cpu, 2),
        "encode_cpu_seconds_by_thread": by_thread,
        "encode_cpu_seconds_in_model": round(encode_cpu_in_this_process() - model_before, 2),
        "score_seconds": round(score_s, 4),
        "score_samples_per_s": round(len(rows) / max(score_s, 1e-9), 1),
    }


def _worker_report(batches):
    import torch

    from mdaq_spark.models.encoder import encode_cpu_in_this_process, loads_in_this_process

    for _ in batches:
        t = os.times()
        yield pd.DataFrame(
            {
                "pid": [os.getpid()],
                "loads": [loads_in_this_process()],
                "threads": [torch.get_num_threads()],
                "cpu_seconds": [t.user + t.system],
                "by_thread": [json.dumps(thread_cpu_seconds())],
                "model_cpu_seconds": [encode_cpu_in_this_process()],
            }
        )


_REPORT_SCHEMA = "pid long, loads int, threads int, cpu_seconds double, by_thread string, model_cpu_seconds double"


def _report(spark) -> list[dict]:
    rows = (
        spark.range(0, 8, numPartitions=8)
        .mapInPandas(_worker_report, _REPORT_SCHEMA)
        .collect()  # one row per task: a handful
    )
    latest: dict[int, dict] = {}
    for r in rows:
        if r.pid not in latest or r.cpu_seconds > latest[r.pid]["cpu_seconds"]:
            latest[r.pid] = r.asDict()
    return list(latest.values())


def spark_side(cfg, rows: pd.DataFrame, threads: int, head_dir: str | None, arrow_batch: int, work: Path) -> dict:
    from pyspark.sql import functions as F

    from mdaq_spark.config import SparkConfig
    from mdaq_spark.models import registry
    from mdaq_spark.models.qsm import QsmHead
    from mdaq_spark.session import build_session
    from mdaq_spark.stages.udfs import SCORE_SCHEMA_FIELDS, encode_map, encode_schema, score_map

    conf = {"spark.executorEnv.OMP_NUM_THREADS": str(threads)}
    spark = build_session(
        SparkConfig(
            master="local[1]", shuffle_partitions=1, arrow_batch_size=arrow_batch, driver_memory="2g", conf=conf
        )
    )
    location = registry.resolve(cfg.name, cfg.cache_dir)
    try:
        spark.createDataFrame(rows).repartition(1).write.mode("overwrite").parquet(str(work / "rows"))
        df = spark.read.parquet(str(work / "rows"))
        layers = QsmHead.load(head_dir).layers if head_dir else ()
        encode = encode_map(cfg, location, ("prompt", "response"), layers=layers)

        def encoded(frame):
            ordered = frame.sortWithinPartitions(F.length("prompt") + F.length("response"))
            ordered = ordered.select("sample_id", "lang", "prompt", "response")
            return ordered.mapInArrow(encode, encode_schema(ordered.schema))

        started = time.perf_counter()
        encoded(df.limit(4)).write.format("noop").mode("overwrite").save()  # loads the model in the worker
        warmup_s = time.perf_counter() - started
        reported = _report(spark)
        # what one reporting action itself costs the worker (between two reports, nothing else ran)
        again = _report(spark)
        prior = {w["pid"]: w["cpu_seconds"] for w in reported}
        report_cpu = sum(w["cpu_seconds"] - prior.get(w["pid"], 0.0) for w in again)
        reported = again
        before = {w["pid"]: w["cpu_seconds"] for w in reported}
        model_before = {w["pid"]: w["model_cpu_seconds"] for w in reported}
        threads_before = {w["pid"]: json.loads(w["by_thread"]) for w in reported}
        jvm = _child_jvm()
        jvm_cpu = proc_cpu_seconds(jvm)
        started = time.perf_counter()
        encoded(df).write.format("noop").mode("overwrite").save()
        encode_s = time.perf_counter() - started
        jvm_cpu = proc_cpu_seconds(jvm) - jvm_cpu
        after = _report(spark)
        worker_cpu = sum(w["cpu_seconds"] - before.get(w["pid"], 0.0) for w in after)
        model_cpu = sum(w["model_cpu_seconds"] - model_before.get(w["pid"], 0.0) for w in after)
        worker_threads = {
            w["pid"]: thread_delta(threads_before.get(w["pid"], {}), json.loads(w["by_thread"])) for w in after
        }

        encoded(df).write.mode("overwrite").parquet(str(work / "enc"))  # untimed
        enc = spark.read.parquet(str(work / "enc"))
        from pyspark.sql import types as T

        inputs = enc.select("sample_id", "lang", "prompt_embedding", "response_embedding", "response_layers")
        schema = T.StructType([inputs.schema["sample_id"], inputs.schema["lang"], *SCORE_SCHEMA_FIELDS])
        scored = inputs.mapInArrow(score_map(cfg, head_dir), schema)
        scored.limit(4).write.format("noop").mode("overwrite").save()
        started = time.perf_counter()
        scored.write.format("noop").mode("overwrite").save()
        score_s = time.perf_counter() - started

        at_end = _report(spark)
    finally:
        spark.stop()
    return {
        "master": "local[1]",
        "arrow_batch_size": arrow_batch,
        "warmup_with_model_load_seconds": round(warmup_s, 2),
        "encode_seconds": round(encode_s, 3),
        "encode_samples_per_s": round(len(rows) / encode_s, 1),
        "encode_cpu_seconds": {"python_worker": round(worker_cpu, 2), "jvm": round(jvm_cpu, 2)},
        "worker_cpu_seconds_by_thread": {str(pid): t for pid, t in worker_threads.items()},
        # of the worker's CPU, the part spent inside TextEncoder.encode (the model, tokenizer included)
        "worker_cpu_seconds_in_model": round(model_cpu, 2),
        "worker_cpu_seconds_of_one_report_action": round(report_cpu, 2),  # included in python_worker above
        "score_seconds": round(score_s, 3),
        "score_samples_per_s": round(len(rows) / score_s, 1),
        # pids and model loads of the worker(s) right after the timed encode, and at the very end
        # (Spark ends a Python worker idle for a minute; a later one has loaded nothing)
        "python_workers": [{k: v for k, v in r.items() if k not in ("cpu_seconds", "by_thread")} for r in after],
        "python_workers_at_end": [
            {k: v for k, v in r.items() if k not in ("cpu_seconds", "by_thread")} for r in at_end
        ],
        "same_worker_before_and_after": sorted(before) == sorted(w["pid"] for w in after),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="multilingual-e5-small")
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=None, help="default: model.batch_size from the config")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--arrow-batch-size", type=int, default=None, help="default: spark.arrow_batch_size")
    parser.add_argument("--midb", default=str(DEFAULT_MIDB))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from mdaq_spark.config import load_config
    from mdaq_spark.models import registry

    job = load_config(REPO / "mdaq_spark" / "conf" / "default.yaml")
    updates = {"name": args.model, "device": args.device}
    if args.batch_size:
        updates["batch_size"] = args.batch_size
    cfg = job.model.model_copy(update=updates)
    arrow_batch = args.arrow_batch_size or job.spark.arrow_batch_size
    registry.ensure_prepared(cfg.name, cfg.cache_dir)
    head_dir = registry.resolve_head(cfg.qsm_head, cfg.name)
    rows = load_rows(Path(args.midb), args.rows)

    with tempfile.TemporaryDirectory(prefix="udf_overhead_") as tmp:
        spark_result = spark_side(cfg, rows, args.threads, head_dir, arrow_batch, Path(tmp))
    bare_result = bare(cfg, rows, args.threads, head_dir)
    loads = [w["loads"] for w in spark_result["python_workers"]]
    result = {
        "benchmark": "udf_overhead",
        "command": " ".join(["python", *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "gpu": "none"},
        "model": cfg.name,
        "qsm_head": head_dir or "none (encoder cosine)",
        "rows": len(rows),
        "batch_size": cfg.batch_size,
        "max_seq_length": cfg.max_seq_length,
        "threads": args.threads,
        "bare": bare_result,
        "spark": spark_result,
        "encode_ratio_spark_over_bare": round(
            spark_result["encode_samples_per_s"] / bare_result["encode_samples_per_s"], 3
        ),
        "encode_cpu_ratio_bare_over_spark": round(
            bare_result["encode_cpu_seconds"] / sum(spark_result["encode_cpu_seconds"].values()), 3
        ),
        # the same without the probe's own reporting action, which the worker's CPU delta includes
        "encode_cpu_ratio_bare_over_spark_without_probe": round(
            bare_result["encode_cpu_seconds"]
            / (
                sum(spark_result["encode_cpu_seconds"].values())
                - spark_result["worker_cpu_seconds_of_one_report_action"]
            ),
            3,
        ),
        "worker_cpu_seconds_outside_model_without_probe": round(
            spark_result["encode_cpu_seconds"]["python_worker"]
            - spark_result["worker_cpu_seconds_in_model"]
            - spark_result["worker_cpu_seconds_of_one_report_action"],
            2,
        ),
        "score_ratio_spark_over_bare": round(
            spark_result["score_samples_per_s"] / bare_result["score_samples_per_s"], 4
        ),
        "one_model_load_per_worker": bool(loads) and all(n == 1 for n in loads),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    if not result["one_model_load_per_worker"]:
        print(f"expected one model load per Python worker, got {loads}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
