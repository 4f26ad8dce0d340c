"""QSM training data: (prompt, chosen, rejected) triplets with their language.

MIDB records give the triplet directly: the revised instruction (+input) is the anchor,
the expert-revised response the positive, the raw machine-translated response the
negative. A generic JSONL shape (instruction, input, chosen, rejected, lang) lets users
bring their own preference pairs. Pairs whose two responses are the same carry no signal
and are skipped (and counted).

The split is by prompt, never by row: the same instruction must not teach the head in
training and then be "predicted" in evaluation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mdaq_spark.errors import InputError
from mdaq_spark.langcodes import language_code

COLUMNS = ["lang", "prompt", "chosen", "rejected", "distance", "source"]


def prompt_of(instruction: str, input_text: str | None) -> str:
    """The same text the pipeline encodes for a sample's prompt (instruction, newline, input)."""
    return instruction if input_text is None else f"{instruction}\n{input_text}"


@dataclass(frozen=True)
class TripletSet:
    triplets: pd.DataFrame  # COLUMNS
    skipped_identical: int
    skipped_malformed: int


def _files(paths: Iterable[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix in (".json", ".jsonl")))
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"training data {p} does not exist")
    if not out:
        raise InputError(f"no .json/.jsonl training files under {list(paths)}")
    return out


def _records(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _triplet(record: dict, file_lang: str) -> dict | None:
    if "Revised Response" in record and "Raw Response" in record:
        prompt = prompt_of(record.get("Revised Instruction") or "", record.get("Revised Input"))
        chosen, rejected = record.get("Revised Response"), record.get("Raw Response")
        lang, distance = file_lang, record.get("Distance")
    elif "chosen" in record and "rejected" in record:
        prompt = prompt_of(record.get("instruction") or "", record.get("input") or None)
        chosen, rejected = record["chosen"], record["rejected"]
        lang, distance = language_code(str(record.get("lang") or file_lang)), record.get("distance")
    else:
        return None
    if not all(isinstance(x, str) and x.strip() for x in (prompt, chosen, rejected)):
        return None
    return {
        "lang": lang,
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "distance": float(distance) if isinstance(distance, (int, float)) else None,
    }


def load_triplets(paths: Iterable[str], max_records_per_file: int | None = None) -> TripletSet:
    rows, identical, malformed = [], 0, 0
    for path in _files(paths):
        file_lang = language_code(path.stem)
        for record in _records(path)[:max_records_per_file]:
            t = _triplet(record, file_lang) if isinstance(record, dict) else None
            if t is None:
                malformed += 1
            elif t["chosen"].strip() == t["rejected"].strip():
                identical += 1
            else:
                rows.append({**t, "source": path.name})
    if not rows:
        raise InputError("no usable triplets: every record was malformed or had identical responses")
    return TripletSet(pd.DataFrame(rows, columns=COLUMNS), identical, malformed)


def prompt_bucket(prompt: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}\x1f{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split(
    triplets: pd.DataFrame, eval_fraction: float, holdout_langs: Iterable[str], seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, eval on seen languages, eval on held-out languages), split by prompt."""
    holdout = {language_code(x) for x in holdout_langs}
    unseen = triplets[triplets["lang"].isin(holdout)]
    seen = triplets[~triplets["lang"].isin(holdout)]
    in_eval = seen["prompt"].map(lambda p: prompt_bucket(p, seed) < eval_fraction)
    return seen[~in_eval].reset_index(drop=True), seen[in_eval].reset_index(drop=True), unseen.reset_index(drop=True)
