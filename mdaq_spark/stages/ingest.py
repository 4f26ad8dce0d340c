"""Ingest: parse every input file, set aside what cannot be used, identify languages.

Rows the reader rejects and exact duplicates of a kept sample go to quarantine/ with their
reason; the rest, with their languages, to normalized/ (partitioned by language). Later
stages are keyed by what the corpus holds (`content_digest`), not by its files, so a corpus
that was copied, touched or re-exported with the same samples re-runs ingest only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Window
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.config import InputConfig, LanguageConfig
from mdaq_spark.io import writers
from mdaq_spark.io.accounting import file_accounting, file_identity_holds
from mdaq_spark.io.readers import listed_sources, parse_units, raw_units, without_accounting
from mdaq_spark.rundir import NORMALIZED, QUARANTINE
from mdaq_spark.stages.base import Stage, StageContext, Table, digest, section
from mdaq_spark.stages.language import add_languages

log = logging.getLogger(__name__)

NORMALIZED_COLUMNS = (S.SAMPLE_ID, S.LANG, S.INSTRUCTION, S.INPUT, S.RESPONSE, S.LANG_MISMATCH)


def input_signature(paths: list[str]) -> str:
    """Names, sizes and modification times of the input files: a changed corpus redoes ingest."""
    entries = []
    for p in paths:
        path = Path(p)
        files = sorted(x for x in path.rglob("*") if x.is_file()) if path.is_dir() else [path]
        for f in files:
            if f.exists():
                st = f.stat()
                entries.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
            else:
                entries.append(str(f))
    return digest(*entries)


@dataclass(frozen=True)
class IngestStage(Stage):
    name = "ingest"
    input: InputConfig
    language: LanguageConfig

    @property
    def produces(self) -> tuple[Table, ...]:
        return (Table(QUARANTINE, (S.QUARANTINE_REASON,)), Table(NORMALIZED, NORMALIZED_COLUMNS))

    def key(self) -> str:
        return digest(section(self.input), section(self.language), input_signature(self.input.paths))

    def run(self, ctx: StageContext) -> dict:
        units, skipped = raw_units(ctx.spark, self.input)
        accounted = parse_units(units, self.input).persist()
        parsed = without_accounting(accounted)
        try:
            good = parsed.where(F.col(S.QUARANTINE_REASON).isNull())
            first = Window.partitionBy(S.SAMPLE_ID).orderBy(S.SOURCE, S.RECORD_FORMAT, S.VARIANT, S.LANG_HINT)
            good = good.withColumn("_copy", F.row_number().over(first))
            duplicates = (
                good.where(F.col("_copy") > 1).drop("_copy").withColumn(S.QUARANTINE_REASON, F.lit(S.DUPLICATE_REASON))
            )
            unique = good.where(F.col("_copy") == 1).drop("_copy", S.QUARANTINE_REASON, S.RAW_RECORD)
            normalized = add_languages(unique, self.language)
            rejected = parsed.where(F.col(S.QUARANTINE_REASON).isNotNull()).unionByName(duplicates)
            # repartition, not coalesce: coalesce(1) would pull the whole parse upstream into one task
            writers.write_table(rejected.repartition(1), ctx.rundir.path(QUARANTINE))
            writers.write_table(normalized, ctx.rundir.path(NORMALIZED), partition_by=(S.LANG,))
            parsed_rows = parsed.count()
            tables = [ctx.rundir.table(NORMALIZED), ctx.rundir.table(QUARANTINE)]
            files = file_accounting(accounted, tables, listed_sources(self.input))
        finally:
            accounted.unpersist()
        holds = file_identity_holds(files)
        if not holds:
            log.warning(
                "per-file count identity broken: %s", {k: v for k, v in files.items() if len(set(v.values())) > 1}
            )
        corpus = content_digest(ctx)
        return {
            "parsed_rows": parsed_rows,
            "samples": int(corpus.split("-", 1)[0]),
            "content_digest": corpus,
            "files": files,
            "per_file_identity_holds": holds,
            "files_skipped": [{"path": x.path, "reason": x.reason} for x in skipped],
        }


def content_digest(ctx: StageContext) -> str:
    """What the corpus holds, independent of file names and times: (count, XOR of row hashes).

    sample_id already hashes the content; lang is in the hash because it decides grouping.
    """
    row = (
        ctx.rundir.table(NORMALIZED)
        .agg(F.count(F.lit(1)).alias("n"), F.bit_xor(F.xxhash64(S.SAMPLE_ID, S.LANG)).alias("x"))
        .first()
    )
    return f"{row['n']}-{(row['x'] or 0) & 0xFFFFFFFFFFFFFFFF:016x}"
