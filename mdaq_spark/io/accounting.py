"""Per input file: records read, records the parser gave, rows written. Nothing lost, nothing invented.

The global identity (rows parsed = kept + quarantined) cannot see a parser that turns one
record into three rows or drops one silently. So each file is also counted before parsing:
a JSON Lines file by its non-blank lines and a Parquet file by its rows, as Spark hands them
to the reader, counted by the loop that feeds the parser, not by the parser; a .json
document by the top-level records its splitter found (array elements, JSON Lines, or
complete elements plus the broken tail). Those counts must equal the
records the parser accounts for (rows that start a record), and every parsed row of the file
must be in normalized/ or quarantine/.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from mdaq_spark import schema as S


def file_accounting(
    accounted: DataFrame, written: list[DataFrame], listed: list[str] = ()
) -> dict[str, dict[str, int]]:
    """source -> records_read, records_parsed, rows, rows_written, from `parse_units`' output and the tables.

    `listed` are the sources of every file the job read by name: a file that gave no unit at all
    (a Parquet file of 0 rows, an empty JSON Lines file) is there with zeros, not missing.
    """
    per_file = accounted.groupBy(S.SOURCE).agg(
        F.sum(S.UNITS_READ).alias("units"),
        F.sum(F.col(S.RECORD_START).cast("long")).alias("starts"),
        F.count(F.col(S.RECORD_START)).alias("rows"),  # tally rows have no RECORD_START
    )
    out: dict[str, dict[str, int]] = {}
    for r in per_file.collect():
        parsed = r["starts"] or 0
        # a .json document is one unit: its records are those its splitter found
        out[r[S.SOURCE]] = {"records_read": r["units"] if r["units"] is not None else parsed,
                            "records_parsed": parsed, "rows": r["rows"]}  # fmt: skip
    for table in written:
        for r in table.groupBy(S.SOURCE).count().collect():
            entry = out.setdefault(r[S.SOURCE], {"records_read": 0, "records_parsed": 0, "rows": 0})
            entry["rows_written"] = entry.get("rows_written", 0) + r["count"]
    for source in listed:
        out.setdefault(source, {"records_read": 0, "records_parsed": 0, "rows": 0})
    for entry in out.values():
        entry.setdefault("rows_written", 0)
    return dict(sorted(out.items()))


def file_identity_holds(files: dict[str, dict[str, int]]) -> bool:
    return all(e["records_read"] == e["records_parsed"] and e["rows"] == e["rows_written"] for e in files.values())
