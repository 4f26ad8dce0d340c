"""`mdaq`: the command line. Every command validates its config before Spark starts.

Exit codes: 0 success, 2 configuration error, 3 unreadable input, 4 model cannot be loaded,
5 missing dependency, 6 no usable record (every record quarantined), 1 anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

from mdaq_spark.config import DEFAULT_CONFIG, JobConfig, check_runnable, load_config
from mdaq_spark.errors import MdaqError

log = logging.getLogger("mdaq_spark")

DEMO_CORPUS = Path(__file__).resolve().parent / "demo" / "corpus"
DEMO_EXPORTS = "output.export=[{format: alpaca}, {format: sharegpt}, {format: openai}, {format: parquet}]"


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("py4j", "sentence_transformers", "transformers", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _job_config(args: argparse.Namespace) -> JobConfig:
    fields = {}
    if getattr(args, "input", None):
        fields["input.paths"] = list(args.input)
    if getattr(args, "output", None):
        fields["output.path"] = args.output
    if getattr(args, "master", None):
        fields["spark.master"] = args.master
    if getattr(args, "overwrite", False):
        fields["output.overwrite"] = True
    return load_config(args.config or DEFAULT_CONFIG, args.set or [], **fields)


def _add_job_options(p: argparse.ArgumentParser, *, need_io: bool = True) -> None:
    p.add_argument("--config", "-c", help="YAML config (default: the packaged default.yaml)")
    p.add_argument("--input", "-i", action="append", help="input file or folder (repeatable); overrides input.paths")
    p.add_argument("--output", "-o", help="run directory; overrides output.path")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override any config key, e.g. selection.budget_fraction=0.1",
    )
    p.add_argument("--master", help="Spark master for a local run (ignored under spark-submit)")
    p.add_argument("--overwrite", action="store_true", help="redo every stage even if finished")
    p.add_argument("--dry-run", action="store_true", help="validate config and inputs, print the plan, run nothing")


def cmd_run(args: argparse.Namespace) -> int:
    from mdaq_spark.dependencies import check_dependencies
    from mdaq_spark.io.outputs import check_output_path
    from mdaq_spark.io.readers import check_inputs

    cfg = _job_config(args)
    check_runnable(cfg)
    check_output_path(cfg.output.path)
    check_inputs(cfg.input)
    check_dependencies(cfg)
    if args.dry_run:
        from mdaq_spark.pipeline.plan import build_plan

        print(json.dumps(build_plan(cfg), indent=2, ensure_ascii=False))
        return 0
    from mdaq_spark.pipeline.runner import run_pipeline
    from mdaq_spark.report.terminal import progress_bar
    from mdaq_spark.session import build_session

    spark = build_session(cfg.spark)
    try:
        with progress_bar() as on_progress:
            stats = run_pipeline(spark, cfg, on_progress=on_progress)
    finally:
        spark.stop()
    print(
        json.dumps(
            {"run_dir": cfg.output.path, "counts": stats["counts"], "stage_seconds": stats["stage_seconds"]}, indent=2
        )
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    if not DEMO_CORPUS.is_dir():
        raise MdaqError(f"demo corpus not found at {DEMO_CORPUS}: the installed package is incomplete")
    args.input = args.input or [str(DEMO_CORPUS)]
    args.output = args.output or "runs/demo"
    # the demo shows the whole product: every export format lands in runs/demo/export/, unless a config
    # file of the user's says what to export (a later --set output.export=... also wins)
    if not args.config:
        args.set = [DEMO_EXPORTS, *(args.set or [])]
    return cmd_run(args)


def _finished_config(run_dir: str) -> JobConfig:
    from mdaq_spark.rundir import RunDir

    return RunDir.finished(run_dir).read_stats().config


@contextlib.contextmanager
def _session(cfg: JobConfig):
    """A SparkSession for a command over finished runs; one already running in this process is left running."""
    from pyspark.sql import SparkSession

    from mdaq_spark.session import build_session

    running = SparkSession.getActiveSession()
    spark = build_session(cfg.spark)
    try:
        yield spark
    finally:
        if running is None:
            spark.stop()


def cmd_export(args: argparse.Namespace) -> int:
    import shlex

    from mdaq_spark.config import ExportConfig
    from mdaq_spark.io.export import export_selection
    from mdaq_spark.rundir import RunDir

    cfg = _finished_config(args.run_dir)
    spec = ExportConfig(
        format=args.format,
        path=args.output,
        with_metadata=args.with_metadata,
        max_rows_per_file=args.max_rows_per_file,
    )
    with _session(cfg) as spark:
        rundir = RunDir(args.run_dir, cfg.output.store, spark)
        result = export_selection(
            spark, rundir, spec, rundir.read_stats(), command=shlex.join(["mdaq", *args.argv]), license_id=args.license
        )
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from mdaq_spark.report.diff import diff_runs, summary
    from mdaq_spark.report.terminal import print_diff

    cfg = _finished_config(args.run_b)
    _finished_config(args.run_a)
    with _session(cfg) as spark:
        diff = diff_runs(spark, args.run_a, args.run_b)
    if args.json:
        print(json.dumps(diff, indent=2, ensure_ascii=False))
    else:
        print_diff(summary(diff))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from mdaq_spark.models import registry

    if args.action == "list":
        for entry in registry.describe():
            path = registry.cache_dir(args.cache_dir) / entry["name"]
            state = "prepared" if registry.is_prepared(path) else "not prepared"
            print(f"{entry['name']:24s} {state:13s} {path}\n    {entry['description']}")
        return 0
    names = args.names or list(registry.REGISTRY)
    for name in names:
        if name not in registry.REGISTRY:
            raise MdaqError(f"unknown packaged model '{name}'; known: {', '.join(registry.REGISTRY)}")
        print(registry.ensure_prepared(name, args.cache_dir))
    return 0


def cmd_jars(args: argparse.Namespace) -> int:
    from mdaq_spark import jars

    folder = jars.jars_dir(args.dir)
    names = args.names or list(jars.PACKAGES)
    unknown = sorted(set(names) - set(jars.PACKAGES))
    if unknown:
        raise MdaqError(f"unknown jar package {unknown}; known: {', '.join(jars.PACKAGES)}")
    if args.action == "fetch":
        for name, outcome in jars.fetch(names, folder).items():
            print(f"{name:6s} {outcome:8s} {folder / name}")
    elif args.action == "list":
        have = jars.fetched(folder)
        for name, coordinate in sorted(jars.coordinates().items()):
            state = "fetched" if name in have and have[name].coordinate == coordinate else "not fetched"
            print(f"{name:6s} {state:12s} {coordinate}  {folder / name}")
    else:
        print(" ".join(jars.submit_args(names, folder)))
    return 0


def _train_config(args: argparse.Namespace):
    from mdaq_spark.config import load_train_config

    holdout = args.holdout_langs.split(",") if args.holdout_langs else None
    return load_train_config(
        args.set or [],
        data=args.data,
        output=args.output,
        mode=args.mode,
        holdout_langs=holdout,
        reuse_run=args.reuse_run,
        seed=args.seed,
    )


def _print_metrics(metrics: dict) -> None:
    from mdaq_spark.report.terminal import print_metrics
    from mdaq_spark.train.evaluate import table_rows

    print_metrics(metrics, table_rows)


def cmd_train_qsm(args: argparse.Namespace) -> int:
    from mdaq_spark.train.qsm_training import train_qsm

    result = train_qsm(_train_config(args))
    _print_metrics(result["metrics"])
    print(json.dumps({"output": result["output"], "fingerprint": result["manifest"].get("fingerprint")}))
    return 0


def cmd_eval_qsm(args: argparse.Namespace) -> int:
    from mdaq_spark.config import ModelConfig
    from mdaq_spark.train.qsm_training import eval_qsm

    model = ModelConfig(name=args.model, qsm_head=args.qsm)
    result = eval_qsm(
        args.data,
        model,
        args.encoding_cache,
        args.reuse_run,
        args.seed,
        args.max_records_per_file,
        include_trained=args.include_trained,
        feature_store=args.feature_store,
    )
    print(f"evaluated {result['evaluated']} triplets; left out {result['excluded_trained']} the QSM was trained on")
    _print_metrics(result["metrics"])
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2))
        print(f"metrics written to {args.output}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from mdaq_spark.report.stats import write_html
    from mdaq_spark.rundir import RunDir

    print(write_html(RunDir.finished(args.run_dir)))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from mdaq_spark.report.terminal import print_run
    from mdaq_spark.rundir import RunDir

    print_run(args.run_dir, RunDir.finished(args.run_dir).read_stats())
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from mdaq_spark.pipeline.compact import compact_run
    from mdaq_spark.rundir import RunDir
    from mdaq_spark.session import build_session

    cfg = RunDir.finished(args.run_dir).read_config()
    store_root = args.store or cfg.output.store or args.run_dir
    spark = build_session(cfg.spark)
    try:
        result = compact_run(
            spark, args.run_dir, store_root, all_fingerprints=args.all_fingerprints, keep_absent=args.keep_absent
        )
    finally:
        spark.stop()
    print(json.dumps({"store": store_root, "compacted": result}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mdaq",
        description="Select a high-quality, diverse subset of a multilingual instruction corpus (M-DaQ) on Spark.",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "run",
        help="run the whole selection job",
        epilog="example: mdaq run -c my.yaml -i data/corpus.jsonl -o runs/2026-11-24 "
        "--set selection.budget_fraction=0.1",
    )
    _add_job_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run the job on the bundled demo corpus", epilog="example: mdaq demo -o runs/demo")
    _add_job_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "models", help="prepare or list packaged models", epilog="example: mdaq models prepare multilingual-e5-small"
    )
    p.add_argument("action", choices=["prepare", "list"])
    p.add_argument("names", nargs="*", help="packaged model names (default: all)")
    p.add_argument("--cache-dir", help="model cache (default: $MDAQ_MODEL_CACHE or ~/.cache/mdaq_spark/models)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser(
        "jars",
        help="fetch the JVM packages (delta-spark, hadoop-aws) from Maven Central once, list them, or print "
        "the spark-submit arguments that load them",
        epilog="example: mdaq jars fetch delta s3a; spark-submit $(mdaq jars submit-args) jobs/run_select.py ...",
    )
    p.add_argument("action", choices=["fetch", "list", "submit-args"])
    p.add_argument("names", nargs="*", help="delta, s3a (default: both)")
    p.add_argument("--dir", help="jar folder (default: $MDAQ_JARS_DIR or ~/.cache/mdaq_spark/jars)")
    p.set_defaults(func=cmd_jars)

    p = sub.add_parser(
        "train-qsm",
        help="train the Quality Scoring Model on MIDB revisions or preference triplets",
        epilog="example: mdaq train-qsm --data ../shared/data/midb_train --output models/qsm "
        "--holdout-langs cs,ko,tr --set head.epochs=20",
    )
    p.add_argument("--data", action="append", required=True, help="MIDB .json files/folders or triplet .jsonl")
    p.add_argument("--output", "-o", required=True, help="directory to write the trained QSM to")
    p.add_argument(
        "--mode",
        choices=["layers", "head", "full"],
        help="layers: a head over several frozen-encoder layers (default); head: the affine head; full: fine-tuning",
    )
    p.add_argument("--holdout-langs", help="comma-separated languages kept out of training, evaluated as unseen")
    p.add_argument("--reuse-run", help="a pipeline run dir over the same data: reuse its stored encodings")
    p.add_argument("--seed", type=int)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any TrainQsmConfig key, e.g. head.lr=5e-4")
    p.set_defaults(func=cmd_train_qsm)

    p = sub.add_parser(
        "eval-qsm",
        help="pairwise accuracy of a QSM and its baselines (length, random, untrained encoder)",
        epilog="example: mdaq eval-qsm --data ../shared/data/midb_train/Korean.json --qsm models/qsm -o eval.json",
    )
    p.add_argument("--data", action="append", required=True, help="MIDB .json files/folders or triplet .jsonl")
    p.add_argument("--qsm", default="auto", help="QSM head dir, 'auto' (the shipped head) or 'none'")
    p.add_argument("--model", default="multilingual-e5-small", help="encoder: registry name, dir or hub id")
    p.add_argument("--output", "-o", help="write the metrics JSON here")
    p.add_argument("--encoding-cache", help="where frozen-encoder embeddings are cached")
    p.add_argument("--feature-store", help="a layer head's layer states (default: inside the encoding cache)")
    p.add_argument("--reuse-run", help="a pipeline run dir over the same data: reuse its stored encodings")
    p.add_argument("--max-records-per-file", type=int, help="read only the first N records of each file")
    p.add_argument(
        "--include-trained",
        action="store_true",
        help="also score triplets whose source record the QSM was trained on (left out by default)",
    )
    p.add_argument("--seed", type=int, default=42)
    p.set_defaults(func=cmd_eval_qsm)

    p = sub.add_parser(
        "report",
        help="rebuild report/report.html of a finished run from its stats.json",
        epilog="example: mdaq report runs/demo",
    )
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "inspect", help="print a finished run's summary as terminal tables", epilog="example: mdaq inspect runs/demo"
    )
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "compact",
        help="rewrite a run's model-output store as one batch per stage, dropping rows no longer of use",
        epilog="example: mdaq compact runs/2026-11-24 (run it between scheduled runs, not during one)",
    )
    p.add_argument("run_dir", help="a finished run: its markers say which fingerprints are current")
    p.add_argument("--store", help="the store's root, if not the run's output.store or the run directory")
    p.add_argument(
        "--all-fingerprints", action="store_true", help="keep the rows of every model, not only the current"
    )
    p.add_argument("--keep-absent", action="store_true", help="keep samples no longer in the run's corpus")
    p.set_defaults(func=cmd_compact)

    from mdaq_spark.config import EXPORT_FORMATS

    p = sub.add_parser(
        "export",
        help="write a finished run's selection in a trainer's record shape (Alpaca, ShareGPT, OpenAI, Parquet)",
        epilog="example: mdaq export runs/demo --format sharegpt --output data/sft_sharegpt --max-rows-per-file 50000",
    )
    p.add_argument("run_dir", help="a finished run directory")
    p.add_argument("--format", "-f", required=True, choices=EXPORT_FORMATS)
    p.add_argument("--output", "-o", help="folder to write (default: the run's export/<format>/)")
    p.add_argument(
        "--with-metadata",
        action="store_true",
        help="add lang, qsm_score, cluster_id, selection_reason and sample_id under the key 'mdaq'",
    )
    p.add_argument("--max-rows-per-file", type=int, help="shard each language's rows into files of at most N")
    p.add_argument(
        "--license", help="the data's license on the dataset card (a Hub identifier); default: output.license"
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "diff",
        help="samples added to and removed from the selection between two runs, per language, with the reason",
        epilog="example: mdaq diff runs/2026-11-24 runs/2026-12-01 --json > changes.json",
    )
    p.add_argument("run_a", help="the earlier run directory")
    p.add_argument("run_b", help="the later run directory")
    p.add_argument("--json", action="store_true", help="print the diff, every changed sample included, as JSON")
    p.set_defaults(func=cmd_diff)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except MdaqError as exc:
        log.error("%s", exc)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
