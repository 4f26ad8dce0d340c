"""QSM training data: (prompt, chosen, rejected) triplets with their language.

MIDB records give the triplet directly: the revised instruction (+input) is the anchor,
the expert-revised response the positive, the raw machine-translated response the
negative. A generic JSONL shape (instruction, input, chosen, rejected, lang) lets users
bring their own preference pairs. Pairs whose two responses are the same carry no signal
and are skipped (and counted).

The split is by group, never by row or by a language's own prompt text. A MIDB record's
group is its source record (train/midb.py aligns the language files), so no translation of
an evaluation record is trained on: the multilingual encoder aligns translations by design,
and a split that let them across would report memory as accuracy. Triplet JSONL may carry a
`group` column for the same purpose (records sharing a group are translations or variants
of each other); without one, the group is the prompt text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mdaq_spark.config import TrainQsmConfig
from mdaq_spark.errors import InputError
from mdaq_spark.langcodes import language_code
from mdaq_spark.train import midb
from mdaq_spark.train.midb import prompt as prompt_of

COLUMNS = ["lang", "prompt", "chosen", "rejected", "distance", "source", "group"]


@dataclass(frozen=True)
class TripletSet:
    triplets: pd.DataFrame  # COLUMNS
    skipped_identical: int
    skipped_malformed: int
    no_group: int = 0  # MIDB records inside an alignment gap: no source, so in no split


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


def _triplet(record: dict, file_lang: str, source: int | None) -> dict | None:
    if "Revised Response" in record and "Raw Response" in record:
        prompt = prompt_of(record.get("Revised Instruction") or "", record.get("Revised Input"))
        chosen, rejected = record.get("Revised Response"), record.get("Raw Response")
        lang, distance = file_lang, record.get("Distance")
        group = None if source is None else f"midb:{source}"
    elif "chosen" in record and "rejected" in record:
        prompt = prompt_of(record.get("instruction") or "", record.get("input") or None)
        chosen, rejected = record["chosen"], record["rejected"]
        lang, distance = language_code(str(record.get("lang") or file_lang)), record.get("distance")
        given = record.get("group")
        group = f"group:{given}" if given is not None and str(given).strip() else f"prompt:{_hash(prompt)}"
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
        "group": group,
    }


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def load_triplets(paths: Iterable[str], max_records_per_file: int | None = None) -> TripletSet:
    rows, identical, malformed, no_group = [], 0, 0, 0
    references: dict = {}
    for path in _files(paths):
        file_lang = language_code(path.stem)
        records = _records(path)
        sources = midb.sources_beside(path, records, references) if midb.is_midb(records) else [None] * len(records)
        for record, source in list(zip(records, sources, strict=True))[:max_records_per_file]:
            t = _triplet(record, file_lang, source) if isinstance(record, dict) else None
            if t is None:
                malformed += 1
            elif t["chosen"].strip() == t["rejected"].strip():
                identical += 1
            elif t["group"] is None:
                no_group += 1
            else:
                rows.append({**t, "source": path.name})
    if not rows:
        raise InputError("no usable triplets: every record was malformed or had identical responses")
    return TripletSet(pd.DataFrame(rows, columns=COLUMNS), identical, malformed, no_group)


def bucket(key: str, seed: int) -> float:
    """A seeded uniform [0, 1) value per key: the same key falls on the same side on every run."""
    digest = hashlib.sha256(f"{seed}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split(
    triplets: pd.DataFrame, eval_fraction: float, holdout_langs: Iterable[str], seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, eval on seen languages, eval on held-out languages), disjoint by group.

    A group is in evaluation or in training, in every language at once. Held-out languages
    are evaluated on the evaluation groups only: their other records would share a source
    with a training record, so they are in no split at all.
    """
    holdout = {language_code(x) for x in holdout_langs}
    in_eval = triplets["group"].map(lambda g: bucket(g, seed) < eval_fraction).astype(bool)
    unseen_lang = triplets["lang"].isin(holdout)
    train = triplets[~in_eval & ~unseen_lang]
    eval_seen = triplets[in_eval & ~unseen_lang]
    eval_unseen = triplets[in_eval & unseen_lang]
    return tuple(x.reset_index(drop=True) for x in (train, eval_seen, eval_unseen))


def with_relevance_negatives(triplets: pd.DataFrame, per_triplet: int, seed: int) -> pd.DataFrame:
    """The triplets plus `per_triplet` copies of each whose negative is another prompt's positive.

    The other prompt is drawn from the same language, in a seeded order, never the prompt itself:
    MIDB negatives alone teach a head that "revised" beats "raw", and nothing stops it from
    preferring a polished answer to another question over a plain answer to this one.
    """
    if per_triplet <= 0 or triplets.empty:
        return triplets
    extra = []
    for _, part in triplets.groupby("lang", sort=True):
        if len(part) < 2:
            continue
        order = part.assign(_o=part["group"].map(lambda g: bucket(str(g), seed))).sort_values("_o")
        chosen = order["chosen"].to_numpy()
        for shift in range(1, per_triplet + 1):
            step = 1 + (shift * 7919) % (len(order) - 1)  # a distinct, non-zero rotation per copy
            extra.append(
                order.drop(columns="_o").assign(
                    rejected=list(chosen[(np.arange(len(order)) + step) % len(order)]), distance=np.nan
                )
            )
    return pd.concat([triplets, *extra], ignore_index=True) if extra else triplets


def data_manifest(
    cfg: TrainQsmConfig, data: TripletSet, train: pd.DataFrame, eval_seen: pd.DataFrame, eval_unseen: pd.DataFrame
) -> dict:
    """The manifest's account of the training data, the same for heads and fine-tuned encoders."""
    return {
        "files": sorted({str(x) for x in cfg.data}),
        "usable_triplets": len(data.triplets),
        "skipped_identical": data.skipped_identical,
        "skipped_malformed": data.skipped_malformed,
        "languages": sorted(data.triplets["lang"].unique()),
        "train": len(train),
        "eval_seen_languages": len(eval_seen),
        "eval_unseen_languages": len(eval_unseen),
        "holdout_langs": sorted(cfg.holdout_langs),
        "eval_fraction": cfg.eval_fraction,
        "max_per_lang": cfg.max_per_lang,
        "max_records_per_file": cfg.max_records_per_file,
        "no_source_record": data.no_group,
        "split": "by source record across languages (MIDB) or by group",
        # every group trained on: eval-qsm leaves them out, so a later evaluation cannot reuse them
        "train_groups": sorted(set(train["group"])),
    }
