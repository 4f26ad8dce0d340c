"""Per input file: records read, records the parser gave, rows written. Nothing lost, nothing invented.

The global identity (rows parsed = kept + quarantined) cannot see a parser that turns one
record into three rows or drops one silently. So each file is also counted before parsing:
a JSON Lines file by its non-blank lines and a Parquet file by its rows, as Spark reads them,
without the parser; a .json document by the top-level records its splitter found (array
elements, JSON Lines, or complete elements plus the broken tail). Those counts must equal the
records the parser accounts for (rows that start a record), and every parsed row of the file
must be in normalized/ or quarantine/.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mdaq_spark import schema as S

_UNIT = "unit"  # the readers' unit column: "line" units are records counted before parsing


def file_accounting(units: DataFrame, parsed: DataFrame, written: list[DataFrame]) -> dict[str, dict[str, int]]:
    """source -> records_read, records_parsed, rows, rows_written; `written` are the output tables."""
    read = units.where(F.col(_UNIT) == "line").groupBy(S.SOURCE).agg(F.count(F.lit(1)).alias("n"))
    out: dict[str, dict[str, int]] = {}
    for r in read.collect():
        out.setdefault(r[S.SOURCE], {})["records_read"] = r["n"]
    per_file = parsed.groupBy(S.SOURCE).agg(
        F.sum(F.col(S.RECORD_START).cast("long")).alias("starts"), F.count(F.lit(1)).alias("rows")
    )
    for r in per_file.collect():
        entry = out.setdefault(r[S.SOURCE], {})
        entry["records_parsed"] = r["starts"] or 0
        entry["rows"] = r["rows"]
        entry.setdefault("records_read", entry["records_parsed"])  # a .json document: its splitter's count
    for table in written:
        for r in table.groupBy(S.SOURCE).count().collect():
            entry = out.setdefault(r[S.SOURCE], {})
            entry["rows_written"] = entry.get("rows_written", 0) + r["count"]
    for entry in out.values():
        for key in ("records_read", "records_parsed", "rows", "rows_written"):
            entry.setdefault(key, 0)
    return dict(sorted(out.items()))


def file_identity_holds(files: dict[str, dict[str, int]]) -> bool:
    return all(e["records_read"] == e["records_parsed"] and e["rows"] == e["rows_written"] for e in files.values())
