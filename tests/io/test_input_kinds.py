"""Every kind of input file a public corpus ships in, read by one ingest on real Spark.

One generated folder holds plain, compressed (gzip, bzip2, zstd, xz), UTF-16/32, Arrow IPC
and `datasets` save_to_disk files, and records with fields beyond the four shapes' own. The
expected rows are written down per file as the corpus is written; the ingest (shared by the
tests of this module) must give exactly those rows, count each file's records as written,
and keep every field. Runs in which nothing survives, and missing optional packages, end on
purpose with their exit codes.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import random
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mdaq_spark import schema as S
from mdaq_spark.config import InputConfig, JobConfig, LanguageConfig, load_config
from mdaq_spark.errors import DependencyError, InputError, NoUsableRecords
from mdaq_spark.io import inputs
from mdaq_spark.io.readers import check_inputs
from mdaq_spark.rundir import NORMALIZED, QUARANTINE, RunDir
from mdaq_spark.stages.base import StageContext
from mdaq_spark.stages.ingest import IngestStage
from tests.conftest import REPO

EN = "The river runs past the old mill and the children watch the boats go by every summer evening."
KEPT = "kept"


class Corpus:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.expected: dict[str, Counter] = {}  # file -> outcome (KEPT or reason) -> rows
        self.records: dict[str, int] = {}  # file -> records written
        self._n = 0

    def alpaca(self, **extra) -> dict:
        self._n += 1
        tag = f"ik{self._n:03d}"
        return {"instruction": f"{tag} Describe this scene: {EN}", "input": "", "output": f"{EN} {tag}", **extra}

    def expect(self, name: str, records: int, **outcomes: int) -> None:
        self.records[name] = records
        self.expected[name] = Counter({KEPT if k == "kept" else k: n for k, n in outcomes.items() if n})

    def lines(self, records: list) -> bytes:
        return b"".join(
            (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)).encode() + b"\n" for r in records
        )


def _cut_gzip(data_before: bytes, data_after: bytes) -> bytes:
    """A gzip stream cut 200 bytes into the compressed `data_after`: `data_before` decompresses whole.

    A full flush ends `data_before`'s bytes on a block boundary; `data_after`'s lines must each
    compress to far more than 200 bytes, so the cut falls inside its first line.
    """
    z = zlib.compressobj(wbits=31)
    head = z.compress(data_before) + z.flush(zlib.Z_FULL_FLUSH)
    rest = z.compress(data_after) + z.flush()
    return head + rest[:200]


def build(root: Path) -> Corpus:
    root.mkdir(parents=True)
    c = Corpus(root)

    plain = [c.alpaca(), c.alpaca(), "-3.5e2"]  # a quarantined line keeps the bytes read, not a float
    (root / "my plain file.jsonl").write_bytes(c.lines(plain))
    c.expect("my plain file.jsonl", 3, kept=2, not_an_object=1)

    for name, compress in (
        ("gz.jsonl.gz", gzip.compress),
        ("bz.jsonl.bz2", bz2.compress),
        ("xz.jsonl.xz", lzma.compress),
        ("zst.jsonl.zst", lambda b: __import__("zstandard").ZstdCompressor().compress(b)),
    ):
        (root / name).write_bytes(compress(c.lines([c.alpaca(), c.alpaca(), c.alpaca()])))
        c.expect(name, 3, kept=3)
    # two gzip members one after the other (as `cat a.gz b.gz` or bgzip make) are one content
    (root / "two members.jsonl.gz").write_bytes(
        gzip.compress(c.lines([c.alpaca()])) + gzip.compress(c.lines([c.alpaca()]))
    )
    c.expect("two members.jsonl.gz", 2, kept=2)
    (root / "doc.json.gz").write_bytes(gzip.compress(json.dumps([c.alpaca(), c.alpaca(), {"x": 1}]).encode()))
    c.expect("doc.json.gz", 3, kept=2, unknown_record_format=1)
    # MIDB: the language still comes from the name under the compression suffix
    midb = {f"{v} {f}": f"{v} {f} {EN}" for v in ("Raw", "Revised") for f in ("Instruction", "Response")}
    (root / "German.json.gz").write_bytes(gzip.compress(json.dumps([midb]).encode()))
    c.expect("German.json.gz", 1, kept=2)

    # cut short (a download that stopped): the three records before the cut are read, the cut one is one row
    (root / "cut.jsonl.gz").write_bytes(
        _cut_gzip(
            c.lines([c.alpaca(), c.alpaca(), c.alpaca()]),
            c.lines([c.alpaca(note=random.Random(i).randbytes(600).hex()) for i in range(5)]),
        )
    )
    c.expect("cut.jsonl.gz", 4, kept=3, corrupt_compressed_stream=1)
    # corrupt data (its checksum fails): none of its records is trusted, the file is one row
    good = bytearray(gzip.compress(c.lines([c.alpaca() for _ in range(20)])))
    good[len(good) // 2] ^= 0xFF
    (root / "corrupt.jsonl.gz").write_bytes(bytes(good))
    c.expect("corrupt.jsonl.gz", 1, corrupt_compressed_stream=1)

    # UTF-16 with a byte-order mark: six records, not seven rows for the trailing NUL byte
    (root / "utf16.jsonl").write_bytes(c.lines([c.alpaca() for _ in range(6)]).decode().encode("utf-16"))
    c.expect("utf16.jsonl", 6, kept=6)
    (root / "utf32.json").write_bytes(json.dumps([c.alpaca(), c.alpaca()]).encode("utf-32"))
    c.expect("utf32.json", 2, kept=2)
    (root / "utf16 no mark.jsonl").write_bytes(c.lines([c.alpaca(), c.alpaca()]).decode().encode("utf-16-le"))
    c.expect("utf16 no mark.jsonl", 1, unsupported_text_encoding=1)

    # LLaMA-Factory ShareGPT: top-level system and tools; a turn's name; other keys kept in `extra`
    sharegpt = {
        "conversations": [
            {"from": "human", "value": f"ik900 {EN}", "name": "alice"},
            {"from": "function_call", "value": '{"name": "lookup", "arguments": {}}'},
            {"from": "observation", "value": "[]"},
            {"from": "gpt", "value": f"{EN} ik900"},
        ],
        "system": "You are a careful guide.",
        "tools": '[{"name": "lookup", "parameters": {}}]',
        "id": 17,
        "lang": "en",
    }
    openai = {
        "messages": [
            {"role": "user", "content": f"ik901 {EN}", "name": "bob"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
            {"role": "tool", "content": "42", "tool_call_id": "c1"},
            {"role": "assistant", "content": f"{EN} ik901", "weight": 1},
        ],
        "tools": [{"type": "function", "function": {"name": "answer"}}],
        "meta": {"origin": "forum"},
    }
    (root / "fields.jsonl").write_bytes(c.lines([sharegpt, openai]))
    c.expect("fields.jsonl", 2, kept=2)

    # Arrow IPC (file format), and a `datasets` save_to_disk folder (stream format + two metadata files)
    rows = [c.alpaca(), c.alpaca()]
    table = pa.Table.from_pylist(rows)
    with pa.ipc.new_file(str(root / "table.arrow"), table.schema) as writer:
        writer.write_table(table)
    c.expect("table.arrow", 2, kept=2)
    import datasets

    hf = [
        {"messages": [{"role": "user", "content": f"ik95{i} {EN}"}, {"role": "assistant", "content": EN}]}
        for i in range(3)
    ]
    datasets.Dataset.from_list(hf).save_to_disk(str(root / "hf"))
    (arrow_file,) = (root / "hf").glob("data-*.arrow")
    c.expect(arrow_file.name, 3, kept=3)

    pq.write_table(
        pa.table({"instruction": pa.array([], pa.string()), "output": pa.array([], pa.string())}),
        root / "empty.parquet",
    )
    c.expect("empty.parquet", 0)
    return c


@pytest.fixture(scope="module")
def ingested(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kinds")
    corpus = build(tmp / "corpus")
    cfg = InputConfig(paths=[str(corpus.root)])
    check_inputs(cfg)
    rundir = RunDir(str(tmp / "run"), spark=spark)
    info = IngestStage(cfg, LanguageConfig()).run(StageContext(spark, rundir))
    normalized = rundir.table(NORMALIZED).toPandas()
    quarantine = rundir.table(QUARANTINE).toPandas()
    return corpus, info, normalized, quarantine


def _name(source: str) -> str:
    return source.rsplit("/", 1)[-1]


def test_every_file_gives_exactly_its_rows(ingested):
    corpus, info, normalized, quarantine = ingested
    written: dict[str, Counter] = {}
    for name in normalized[S.SOURCE].map(_name):
        written.setdefault(name, Counter())[KEPT] += 1
    for name, reason in zip(quarantine[S.SOURCE].map(_name), quarantine[S.QUARANTINE_REASON], strict=True):
        written.setdefault(name, Counter())[reason] += 1
    expected = {name: rows for name, rows in corpus.expected.items() if rows}
    assert written == expected  # nothing lost, nothing invented, file by file
    # the per-file accounting counts each file's records as written, a file of no record included
    files = {_name(source): entry for source, entry in info["files"].items()}
    assert {name: e["records_read"] for name, e in files.items()} == corpus.records
    assert info["per_file_identity_holds"] is True
    assert files["empty.parquet"] == {"records_read": 0, "records_parsed": 0, "rows": 0, "rows_written": 0}
    assert info["parsed_rows"] == len(normalized) + len(quarantine)


def test_sources_and_raw_records_are_what_was_read(ingested):
    _, info, normalized, quarantine = ingested
    assert any(s.endswith("/my plain file.jsonl") for s in normalized[S.SOURCE])
    assert not any("%" in s for s in [*normalized[S.SOURCE], *quarantine[S.SOURCE], *info["files"]])
    assert "-3.5e2" in set(quarantine[S.RAW_RECORD])
    cut = quarantine[quarantine[S.QUARANTINE_REASON] == S.REASON_CORRUPT_COMPRESSED_STREAM]
    assert any(r.startswith("[cut short") and '{"instruction": "ik' in r for r in cut[S.RAW_RECORD])
    midb = normalized[normalized[S.SOURCE].str.endswith("/German.json.gz")]
    assert sorted(midb[S.VARIANT]) == ["raw", "revised"] and set(midb[S.LANG_HINT]) == {"de"}


def test_hf_metadata_is_skipped_not_parsed(ingested):
    corpus, info, _, _ = ingested
    skipped = {str(Path(x["path"]).relative_to(corpus.root)): x["reason"] for x in info["files_skipped"]}
    assert skipped == {"hf/dataset_info.json": inputs.HF_METADATA, "hf/state.json": inputs.HF_METADATA}


def test_every_field_reaches_normalized(ingested):
    _, _, normalized, _ = ingested
    sharegpt = normalized[normalized[S.INSTRUCTION].str.startswith("ik900")].iloc[0]
    assert sharegpt[S.SYSTEM] == "You are a careful guide."
    assert sharegpt[S.TOOLS] == '[{"name": "lookup", "parameters": {}}]'
    assert json.loads(sharegpt[S.PROMPT_TURN_FIELDS]) == {"name": "alice"}
    assert json.loads(sharegpt[S.EXTRA]) == {"id": 17, "lang": "en"}
    assert [t["role"] for t in json.loads(sharegpt[S.HISTORY])] == ["function_call", "observation"]

    openai = normalized[normalized[S.INSTRUCTION].str.startswith("ik901")].iloc[0]
    assert openai[S.SYSTEM] == ""
    assert json.loads(openai[S.TOOLS]) == [{"type": "function", "function": {"name": "answer"}}]
    assert json.loads(openai[S.PROMPT_TURN_FIELDS]) == {"name": "bob"}
    assert json.loads(openai[S.RESPONSE_TURN_FIELDS]) == {"weight": 1}
    assert json.loads(openai[S.EXTRA]) == {"meta": {"origin": "forum"}}
    history = json.loads(openai[S.HISTORY])
    assert history[0]["tool_calls"] == [{"id": "c1", "type": "function"}] and history[1]["tool_call_id"] == "c1"

    plain = normalized[normalized[S.SOURCE].str.endswith("/gz.jsonl.gz")]
    assert plain[S.EXTRA].isna().all() and plain[S.TOOLS].isna().all() and (plain[S.SYSTEM] == "").all()


def test_dry_run_previews_the_same_rows(ingested):
    from mdaq_spark.pipeline.plan import build_plan

    corpus, _, normalized, quarantine = ingested
    cfg = JobConfig.model_validate({"input": {"paths": [str(corpus.root)]}, "output": {"path": "unused"}})
    plan = build_plan(cfg, peek=100)
    rejected, formats, compressed = Counter(), Counter(), Counter()
    for entry in plan["inputs"]:
        if "skipped" not in entry:
            rejected.update(entry["first_100_records_per_file"]["rejected"])
            formats.update(entry["first_100_records_per_file"]["record_formats"])
            compressed.update(entry["compressed"])
    assert rejected == Counter(quarantine[S.QUARANTINE_REASON])
    assert formats == Counter(normalized[S.RECORD_FORMAT])
    assert compressed == {"gzip": 6, "bzip2": 1, "xz": 1, "zstd": 1}


def test_a_compressed_file_that_is_not_its_codec_is_exit_3(tmp_path):
    (tmp_path / "a.jsonl.gz").write_text('{"instruction": "Q", "output": "A"}\n')
    with pytest.raises(InputError, match=r"a\.jsonl\.gz: not a gzip stream") as raised:
        check_inputs(InputConfig(paths=[str(tmp_path)]))
    assert raised.value.exit_code == 3


def test_nothing_usable_ends_with_stats_report_and_exit_6(spark, tmp_path):
    from mdaq_spark.pipeline.runner import run_pipeline

    corpus = tmp_path / "pretraining"
    corpus.mkdir()
    (corpus / "text.jsonl").write_text("".join(json.dumps({"text": f"{EN} {i}"}) + "\n" for i in range(5)))
    cfg = load_config(
        None, ["model.qsm_head=none"], **{"input.paths": [str(corpus)], "output.path": str(tmp_path / "run")}
    )
    with pytest.raises(NoUsableRecords, match=r"all 5 records read were quarantined \(unknown_record_format 5\)"):
        run_pipeline(spark, cfg)
    assert NoUsableRecords.exit_code == 6
    stats = json.loads((tmp_path / "run" / "report" / "stats.json").read_text())
    assert stats["counts"]["selected"] == 0 and stats["counts"]["kept"] == 0 and stats["counts"]["identity_holds"]
    assert stats["quarantine_by_reason"] == {"unknown_record_format": 5}
    assert "unknown_record_format" in (tmp_path / "run" / "report" / "report.html").read_text()
    assert not (tmp_path / "run" / "encodings").exists()
    from mdaq_spark.cli import main

    assert main(["inspect", str(tmp_path / "run")]) == 0  # the reasons can be looked at as for any run


def test_dry_run_previews_a_delta_table(tmp_path):
    from deltalake import write_deltalake

    from mdaq_spark.pipeline.plan import build_plan

    table = tmp_path / "delta"
    write_deltalake(str(table), pa.table({"instruction": ["Q1", "Q2", "Q3"], "output": ["A", "B", None]}))
    cfg = JobConfig.model_validate({"input": {"paths": [str(table)]}, "output": {"path": str(tmp_path / "run")}})
    (entry,) = build_plan(cfg)["inputs"]
    assert entry["file_type"] == "delta"
    assert entry["first_20_records_per_file"] == {"record_formats": {"alpaca": 2}, "rejected": {"missing_response": 1}}


def _mdaq(args: list[str], shadow: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow), str(REPO)])}
    return subprocess.run(
        [sys.executable, "-m", "mdaq_spark.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("module", "args", "extra"),
    [
        ("faiss", ["--set", "clustering.backend=faiss"], "faiss"),
        # delta-rs is the engine a session without delta-spark's jars uses
        ("deltalake", ["--set", "output.format=delta", "--set", "spark.delta_engine=delta-rs"], "delta"),
        ("zstandard", [], "zstd"),
    ],
)
def test_missing_optional_package_is_exit_5_before_spark(tmp_path, module, args, extra):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / f"{module}.py").write_text(f"raise ImportError('{module} is not installed here')\n")
    corpus = tmp_path / "in"
    corpus.mkdir()
    if module == "zstandard":  # a real zstd stream: its header is checked before the codec is needed
        (corpus / "a.jsonl.zst").write_bytes(__import__("zstandard").ZstdCompressor().compress(b"{}\n"))
    else:
        (corpus / "a.jsonl").write_bytes(b"{}\n")
    done = _mdaq(["run", "-i", str(corpus), "-o", str(tmp_path / "run"), *args], shadow)
    assert done.returncode == 5, done.stderr[-2000:]
    assert f"pip install 'mdaq-spark[{extra}]'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()  # stopped before Spark wrote anything


def test_dependency_check_names_what_asked_for_it():
    from mdaq_spark.dependencies import requirements

    # a session without delta-spark's jars (none loaded from the jar folder): delta-rs
    no_jars = {"packages": []}
    cfg = JobConfig.model_validate(
        {"clustering": {"backend": "faiss"}, "output": {"path": "x", "format": "delta"}, "spark": no_jars}
    )
    assert [(need.module, why) for need, why in requirements(cfg)] == [
        ("faiss", "clustering.backend: faiss"),
        ("deltalake", "output.format: delta"),
    ]
    extension = {"spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension"}
    with_delta_spark = JobConfig.model_validate({**cfg.model_dump(), "spark": {**no_jars, "conf": extension}})
    assert requirements(with_delta_spark)[1][0].module == "delta"
    forced = JobConfig.model_validate({**cfg.model_dump(), "spark": {"delta_engine": "delta-spark", "packages": []}})
    assert requirements(forced)[1][0].module == "delta"
    with pytest.raises(DependencyError, match=r"output.format: delta needs the package 'delta-spark'"):
        from mdaq_spark.dependencies import DELTA_SPARK, require

        require(DELTA_SPARK.__class__("no_such_module_x", "delta-spark", "delta", ""), "output.format: delta")
