"""MIDB records with the source record each one translates, for splits no translation crosses.

MIDB's language files translate one English list record by record, so a record's position
names its source, except where a file lacks a record: three of the ten files have 2,300
records, the others 2,301, and everything after the gap is shifted by one. A shorter file is
aligned to a full one by the numbers its texts contain (numbers survive translation): the gap
is where agreement at offset 0 gives way to agreement at offset +1. Records inside an
ambiguous gap get no source, and a split leaves them out: a record whose source is unknown
cannot be proven disjoint from anything.

Any evaluation on MIDB splits by this source, across all languages. A split by each
language's own prompt text lets the held-out record's translations into training, and a
multilingual encoder aligns translations by design: that inflates held-out accuracy.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from mdaq_spark.errors import InputError
from mdaq_spark.langcodes import language_code

_NUMBER = re.compile(r"\d+")
_MIN_NUMBERS = 2  # a text with fewer numbers says too little about which record it is
COLUMNS = [
    "lang",
    "file",
    "index",
    "source",
    "revised_prompt",
    "raw_prompt",
    "revised_response",
    "raw_response",
    "distance",
]


def _signature(record: dict) -> tuple | None:
    text = " ".join(
        str(record.get(f"Revised {k}") or record.get(f"Raw {k}") or "") for k in ("Instruction", "Input", "Response")
    )
    numbers = tuple(_NUMBER.findall(text))
    return numbers if len(numbers) >= _MIN_NUMBERS else None


def align(records: list, reference: list) -> tuple[list[int | None], dict]:
    """Reference index for each record index (None: inside an ambiguous gap), and how it was found.

    A file as long as the reference sits at offset 0. A shorter one (a file missing a record,
    or the first records of a file) has at most one gap: records before it keep their index,
    records from it on sit one further. The gap goes where the most number signatures agree;
    where several places agree equally, the records between them get no source.
    """
    sig = [_signature(r) if isinstance(r, dict) else None for r in records]
    ref = [_signature(r) if isinstance(r, dict) else None for r in reference]
    n = len(records)

    def agree(offset: int) -> np.ndarray:
        return np.array(
            [sig[i] is not None and 0 <= i + offset < len(ref) and sig[i] == ref[i + offset] for i in range(n)],
            dtype=int,
        )

    if n == len(reference):
        a0, a1 = agree(0).sum(), agree(1).sum()
        if a0 <= a1:
            raise InputError(f"equal-length MIDB files do not align at offset 0 ({a0} vs {a1} matches)")
        return list(range(n)), {"gap": None, "matches_at_offset_0": int(a0)}
    if n > len(reference):
        raise InputError(f"a MIDB file of {n} records is longer than its reference ({len(reference)})")
    a0, a1 = agree(0), agree(1)
    # gap at m: records before m sit at their own index, from m on one further (m = n: no gap)
    score = np.concatenate([[0], np.cumsum(a0)]) + (a1.sum() - np.concatenate([[0], np.cumsum(a1)]))
    best = np.flatnonzero(score == score.max())
    lo, hi = int(best.min()), int(best.max())
    mapping = [i if i < lo else (i + 1 if i >= hi else None) for i in range(n)]
    return mapping, {"gap": [lo, hi], "matches": int(score.max()), "uncertain_records": hi - lo}


def is_midb(records: list) -> bool:
    return any(isinstance(r, dict) and ("Raw Response" in r or "Revised Response" in r) for r in records[:20])


def sources_beside(path: Path, records: list, _reference: dict[Path, list] | None = None) -> list[int | None]:
    """Source index of each record of one MIDB file, aligned to the longest MIDB file in its folder.

    Training and evaluation files are usually one folder of language files, so the folder
    gives the same reference (and the same sources) whichever file is read.
    """
    folder = Path(path).resolve().parent
    cache = _reference if _reference is not None else {}
    if folder not in cache:
        longest: list = []
        for f in sorted(folder.glob("*.json")):
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError, RecursionError):
                continue
            if isinstance(data, list) and is_midb(data) and len(data) > len(longest):
                longest = data
        cache[folder] = longest or records
    return align(records, cache[folder])[0]


def read_midb_files(midb_dir: str | Path) -> dict[str, list]:
    files = sorted(Path(midb_dir).glob("*.json"))
    if not files:
        raise InputError(f"no MIDB .json files in {midb_dir}")
    out = {}
    for f in files:
        data = json.loads(f.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise InputError(f"{f}: a MIDB file is a JSON list of records")
        out[f.name] = data
    return out


def prompt(instruction: str, input_text: str | None) -> str:
    """The text the pipeline encodes for a sample's prompt: instruction, newline, input.

    An empty input adds nothing (the pipeline's trailing newline tokenises to nothing), so a
    text has one cache key whichever way it was read.
    """
    return instruction if not input_text else f"{instruction}\n{input_text}"


def _text(record: dict, key: str) -> str | None:
    value = record.get(key)
    return value if isinstance(value, str) else None


def load_midb(midb_dir: str | Path) -> pd.DataFrame:
    """One row per usable MIDB record (COLUMNS), `source` its index in the full-length list (NA: unknown).

    Unusable records (translated field names, a missing side) are left out; `attrs["skipped"]`
    counts them per file, and `attrs["alignment"]` says how each file was aligned.
    """
    files = read_midb_files(midb_dir)
    reference = max(files.values(), key=len)
    rows, skipped, alignment = [], {}, {}
    for name, records in files.items():
        mapping, how = align(records, reference)
        alignment[name] = {"records": len(records), **how}
        lang = language_code(Path(name).stem)
        bad = 0
        for i, rec in enumerate(records):
            texts = {
                k: _text(rec, k) if isinstance(rec, dict) else None
                for k in ("Revised Instruction", "Raw Instruction", "Revised Response", "Raw Response")
            }
            if not all(t and t.strip() for t in texts.values()):
                bad += 1
                continue
            distance = rec.get("Distance")
            rows.append(
                {
                    "lang": lang,
                    "file": name,
                    "index": i,
                    "source": mapping[i],
                    "revised_prompt": prompt(texts["Revised Instruction"], _text(rec, "Revised Input")),
                    "raw_prompt": prompt(texts["Raw Instruction"], _text(rec, "Raw Input")),
                    "revised_response": texts["Revised Response"],
                    "raw_response": texts["Raw Response"],
                    "distance": float(distance) if isinstance(distance, (int, float)) else None,
                }
            )
        skipped[name] = bad
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["source"] = df["source"].astype("Int64")
    df.attrs["skipped"] = skipped
    df.attrs["alignment"] = alignment
    return df
