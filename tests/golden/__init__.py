"""Golden outputs: the selected rows and stats counts of two reference runs, pinned.

A refactoring must not change what the job selects. Each reference run's `selected/` table
(every row sorted by sample_id, every column, as canonical JSON with its floats kept apart and
compared to a tolerance; `source` as
the file's name, since the tests' folders differ per run) is reduced to a sha256 and
a row count per language, and its stats.json counts are kept whole, in a small committed
file. The end-to-end tests compare against these files; a changed row or count fails them.

Regenerate on purpose (after a change that is meant to alter the selection):

    MDAQ_GOLDEN_RECORD=1 python -m pytest -q \
        "tests/test_pipeline.py::test_demo_corpus_end_to_end_and_deterministic" \
        "tests/test_pipeline.py::test_midb_two_languages_end_to_end"

and commit the rewritten tests/golden/*.json with a message that says why the selection changed.

The score's detail (S.SCORE_DETAIL: turn_scores, weakest_turn, scorer_scores) is pinned apart
from the rows (`score_detail`), so a golden file recorded before those columns existed still
pins the selection it recorded; the end-to-end tests check the detail of such a run themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from mdaq_spark import schema as S

HERE = Path(__file__).resolve().parent
RECORD_VARIABLE = "MDAQ_GOLDEN_RECORD"


FLOAT_TOLERANCE = 1e-4


def _canonical(value, floats: list[float]):
    """Nested rows become sorted dicts; each float moves to `floats` (in order) and leaves a marker.

    Which rows are selected, with their ranks, clusters, reasons and texts, is pinned exactly
    through the digest. A score's last bits are not: they follow the CPU's instruction set and
    the BLAS and torch builds a fresh install resolves to, so the floats are compared to
    FLOAT_TOLERANCE. Bit-for-bit repeatability on one installation is the determinism tests' job.
    """
    if isinstance(value, float):
        floats.append(value)
        return "<float>"
    if isinstance(value, dict):
        return {k: _canonical(v, floats) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_canonical(v, floats) for v in value]
    return value


def _counts_only(value):
    """stats.json without its floats (means depend on summation order) and without timings or paths."""
    if isinstance(value, dict):
        return {k: _counts_only(v) for k, v in value.items() if not isinstance(v, float)}
    return value


def summary(selected_df, stats: dict) -> dict:
    """What a golden file holds for one run: the selected table's digest and the run's counts."""
    rows = [row.asDict(recursive=True) for row in selected_df.orderBy(S.SAMPLE_ID).collect()]
    details = [{c: row.pop(c) for c in S.SCORE_DETAIL if c in row} for row in rows]
    for row in rows:  # the input file's name, not where the test put it
        row[S.SOURCE] = row[S.SOURCE].rsplit("/", 1)[-1]
    digest = hashlib.sha256()
    floats: list[float] = []
    per_lang: dict[str, int] = {}
    for row in rows:
        line = json.dumps(_canonical(row, floats), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        digest.update(line.encode("utf-8") + b"\n")
        per_lang[row[S.LANG]] = per_lang.get(row[S.LANG], 0) + 1
    detail_floats: list[float] = []
    detail = hashlib.sha256(json.dumps(_canonical(details, detail_floats), sort_keys=True).encode("utf-8"))
    return {
        "score_detail": {
            "sha256": detail.hexdigest(),
            "floats": [round(x, 6) for x in detail_floats],
            "columns": [
                f"{f.name}:{f.dataType.simpleString()}" for f in selected_df.schema.fields if f.name in S.SCORE_DETAIL
            ],
        },
        "selected_columns": [
            f"{f.name}:{f.dataType.simpleString()}" for f in selected_df.schema.fields if f.name not in S.SCORE_DETAIL
        ],
        "selected_rows": len(rows),
        "selected_rows_per_lang": dict(sorted(per_lang.items())),
        "selected_sha256": digest.hexdigest(),
        "selected_floats": [round(x, 6) for x in floats],
        "counts": stats["counts"],
        "quarantine_by_reason": stats["quarantine_by_reason"],
        "pruning": _counts_only(stats["pruning"]),
        # a language's empty count map (nothing pruned) is written as {} where stats.json once left it out
        "per_language": {
            lang: {k: v for k, v in _counts_only(entry).items() if v != {}}
            for lang, entry in stats["per_language"].items()
        },
    }


def check(name: str, selected_df, stats: dict) -> None:
    """Compare a run with tests/golden/<name>.json, or rewrite that file when MDAQ_GOLDEN_RECORD=1."""
    path = HERE / f"{name}.json"
    got = summary(selected_df, stats)
    if os.environ.get(RECORD_VARIABLE) == "1":
        path.write_text(json.dumps(got, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
        return
    want = json.loads(path.read_text(encoding="utf-8"))
    got = json.loads(json.dumps(got))  # the same types as the file read back (tuples as lists, keys as strings)
    if "score_detail" not in want:  # recorded before the detail columns: the test checks them itself
        got.pop("score_detail")
    else:
        got_detail, want_detail = got.pop("score_detail"), want.pop("score_detail")
        moved = max(
            (abs(a - b) for a, b in zip(got_detail.pop("floats"), want_detail.pop("floats"), strict=True)), default=0.0
        )
        assert moved <= FLOAT_TOLERANCE, f"golden {name}: a turn score moved by {moved:.2e}"
        assert got_detail == want_detail, f"golden {name}: score_detail changed"
    got_floats, want_floats = got.pop("selected_floats"), want.pop("selected_floats", None)
    assert want_floats is not None and len(got_floats) == len(want_floats), f"golden {name}: selected floats changed"
    worst = max((abs(a - b) for a, b in zip(got_floats, want_floats, strict=True)), default=0.0)
    assert worst <= FLOAT_TOLERANCE, f"golden {name}: a selected float moved by {worst:.2e}"
    for key in sorted(set(want) | set(got)):
        assert got.get(key) == want.get(key), f"golden {name}: {key} changed (set {RECORD_VARIABLE}=1 to re-record)"
