"""Does a conversation's score see a bad later turn? Intact vs corrupted MIDB conversations.

Conversations of 2, 3 and 4 exchanges are built from MIDB records of one language (user turn =
the revised instruction (+input), assistant turn = the expert-revised response), from source
records the evaluated head never trained on (its manifest lists them; records without a
source are left out). At each position p the intact conversation is set against the same
conversation with turn p's answer

- `raw_mt`: replaced by the record's raw machine translation;
- `other_answer`: replaced by another conversation's answer (same language, same position);
- `truncated`: cut to its first 30% at a word boundary.

Every exchange is scored with its context (earlier turns, cut from the left to the encoder's
length), so a corrupted answer also changes the instruction side of the turns after it. A
conversation's score is its exchanges' scores under an aggregate: `first` (the first
exchange alone, what a run scored before), `min`, `mean`, `softmin`. The number reported is
the share of pairs where the intact conversation scores higher (ties count half), per p, per
corruption and pooled, with a 95% bootstrap interval over the corrupted turn's source record.

The same records also give the single-exchange MIDB numbers (revised vs raw MT, all pairs and
length-matched, the share of revisions in each language's top 20%, the true answer vs
another instruction's), so a design judged here is judged on MIDB's own contrasts too.

    python bench/multiturn_midb.py --out bench/results/multiturn_midb.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from conversations import (
    AGGREGATES,
    CORRUPTIONS,
    LENGTH_WEIGHTS,
    SOFTMIN_TEMPERATURE,
    combine_ranked,
    replace_answer,
)
from exchange_scoring import FEATURES_DIR, ExchangeScorer, pairwise, parse_heads

from mdaq_spark.report.stats import code_commit
from mdaq_spark.train import crossval as cv
from mdaq_spark.train.midb import load_midb
from mdaq_spark.train.qsm_training import trained_groups
from mdaq_spark.train.sanity import truncated

MIDB = Path(__file__).resolve().parents[2] / "shared/data/midb_train"
log = logging.getLogger("multiturn_midb")
LENGTHS = (2, 3, 4)


def build_conversations(records: pd.DataFrame, per_length: int, seed: int) -> list[dict]:
    """Per language, records in a seeded order dealt into `per_length` conversations of each length.

    A conversation is {"lang", "records": [row, ...]} (rows of `records`), no source record twice
    in one conversation.
    """
    out = []
    for lang in sorted(records["lang"].unique()):
        rows = records[records["lang"] == lang]
        order = sorted(rows.index, key=lambda i: cv._rank(f"{lang}\x1f{rows.at[i, 'source']}", seed))
        it = iter(order)
        for k in LENGTHS:
            for _ in range(per_length):
                picked = [next(it, None) for _ in range(k)]
                if None in picked:
                    raise ValueError(f"{lang}: too few records for {per_length} conversations of each length")
                out.append({"lang": lang, "records": picked})
    return out


def turns_of(answers: list[str], questions: list[str]) -> list[dict]:
    turns = []
    for q, a in zip(questions, answers, strict=True):
        turns += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return turns


def variants(conv: dict, records: pd.DataFrame, other: dict) -> list[tuple[int, str, list[dict]]]:
    """(p, corruption, turns) of every corrupted version; p = 0 is the intact conversation."""
    rows = records.loc[conv["records"]]
    questions, answers = rows["revised_prompt"].tolist(), rows["revised_response"].tolist()
    other_answers = records.loc[other["records"], "revised_response"].tolist()
    intact = turns_of(answers, questions)
    out = [(0, "intact", intact)]
    for p in range(1, len(answers) + 1):
        replacements = {
            "raw_mt": rows["raw_response"].iloc[p - 1],
            "other_answer": other_answers[min(p, len(other_answers)) - 1],
            "truncated": truncated(answers[p - 1]),
        }
        for kind in CORRUPTIONS:
            out.append((p, kind, replace_answer(intact, p, replacements[kind])))
    return out


def conversations_of_unseen_sources(
    midb: str, heads: dict[str, Path], per_length: int, seed: int, langs: str = ""
) -> tuple[pd.DataFrame, list[dict], dict[int, int]]:
    """(pool, conversations, other_of): the MIDB records of sources no head trained on whose
    revision differs from the raw MT, the conversations dealt from them, and for each
    conversation the one whose answers replace its own (the next of its language and length)."""
    records = load_midb(midb)
    trained = set().union(*(trained_groups(str(p)) for p in heads.values()))
    known = records["source"].notna()
    trained_sources = {int(g.split(":", 1)[1]) for g in trained if g.startswith("midb:")}
    unseen = known & ~records["source"].isin(trained_sources).fillna(True).astype(bool)
    changed = records["revised_response"].str.strip() != records["raw_response"].str.strip()
    pool = records[unseen & changed]
    if langs:
        pool = pool[pool["lang"].isin(langs.split(","))]
    log.info("%d records of sources no head trained on (of %d)", len(pool), len(records))
    convs = build_conversations(pool, per_length, seed)
    by_key: dict[tuple[str, int], list[int]] = {}
    for i, c in enumerate(convs):
        by_key.setdefault((c["lang"], len(c["records"])), []).append(i)
    other_of = {}
    for idx in by_key.values():
        for a, b in zip(idx, idx[1:] + idx[:1], strict=True):
            other_of[a] = b
    return pool, convs, other_of


def single_exchanges(pool: pd.DataFrame, convs: list[dict], other_of: dict[int, int]) -> tuple:
    """(used, instructions, responses): the conversations' records as single exchanges, in four
    blocks of len(used): revised prompt with its revision, with its raw MT, with another
    conversation's answer, and the raw prompt with the raw MT (the raw sample)."""
    used = pool.loc[[r for c in convs for r in c["records"]]].reset_index(drop=True)
    other_resp = []
    for c_i, c in enumerate(convs):
        o = pool.loc[convs[other_of[c_i]]["records"], "revised_response"].tolist()
        other_resp += [o[min(p, len(o)) - 1] for p in range(1, len(c["records"]) + 1)]
    ins = used["revised_prompt"].tolist() * 3 + used["raw_prompt"].tolist()
    res = used["revised_response"].tolist() + used["raw_response"].tolist() + other_resp
    return used, ins, res + used["raw_response"].tolist()


def midb_contrasts(scores: np.ndarray, used: pd.DataFrame, mask: np.ndarray | None = None) -> dict:
    """MIDB's single-exchange numbers from one score per exchange of single_exchanges' four blocks,
    over the records in `mask` (default: all)."""
    n = len(used)
    keep = np.ones(n, dtype=bool) if mask is None else np.asarray(mask)
    rev, raw, oth, raw_sample = (scores[i * n : (i + 1) * n][keep] for i in range(4))
    kept = used[keep]
    clusters = kept["source"].to_numpy(dtype=int)
    matched = cv.length_matched(kept["revised_response"], kept["raw_response"])
    langs = kept["lang"].to_numpy()
    m = len(kept)
    sel = cv.top_fraction_revised(
        np.concatenate([rev, raw_sample]), np.r_[np.ones(m, bool), np.zeros(m, bool)], np.r_[langs, langs]
    )
    tops = sum(v["top"] for v in sel.values())
    return {
        "pairwise": pairwise(rev - raw, clusters),
        "pairwise_length_matched": pairwise((rev - raw)[matched], clusters[matched]),
        "top20_revised_share": sum(v["revised_share"] * v["top"] for v in sel.values()) / tops,
        "relevance_vs_other_instruction": pairwise(rev - oth, clusters),
    }


def multiturn_results(
    flat: dict[str, np.ndarray], versions: list, pool: pd.DataFrame, convs: list[dict], keep_sources=None
) -> dict:
    """scorer -> aggregate -> per p (and p > 1), pooled and per corruption: how often the intact
    conversation scores above the corrupted one. `flat`: one score per exchange of `versions`,
    in order; `keep_sources`: only pairs whose corrupted turn's source record is in it."""
    bounds = np.cumsum([0] + [len(v[3]) for v in versions])
    agg = {
        (s, a): np.array([AGGREGATES[a](flat[s][bounds[j] : bounds[j + 1]]) for j in range(len(versions))])
        for s in flat
        for a in AGGREGATES
    }
    intact_at = {v[0]: j for j, v in enumerate(versions) if v[1] == 0}
    rows = [(j, v) for j, v in enumerate(versions) if v[1] > 0]
    source_of = np.array([int(pool.at[convs[v[0]]["records"][v[1] - 1], "source"]) for _, v in rows])
    if keep_sources is not None:
        keep = np.isin(source_of, list(keep_sources))
        rows, source_of = [r for r, k in zip(rows, keep, strict=True) if k], source_of[keep]
    conv_of = np.array([v[0] for _, v in rows])
    p_of = np.array([v[1] for _, v in rows])
    kind_of = np.array([v[2] for _, v in rows])
    corrupted_j = np.array([j for j, _ in rows])
    intact_j = np.array([intact_at[c] for c in conv_of])
    results: dict = {}
    for (s, a), values in agg.items():
        gap = values[intact_j] - values[corrupted_j]
        entry = {}
        for p in sorted(set(p_of)):
            at = p_of == p
            entry[f"p{p}"] = {"pooled": pairwise(gap[at], source_of[at])}
            for kind in CORRUPTIONS:
                m = at & (kind_of == kind)
                entry[f"p{p}"][kind] = pairwise(gap[m], source_of[m])
        later = p_of > 1
        entry["p_gt_1"] = {"pooled": pairwise(gap[later], source_of[later])}
        for kind in CORRUPTIONS:
            entry["p_gt_1"][kind] = pairwise(gap[later & (kind_of == kind)], source_of[later & (kind_of == kind)])
        entry["p_gt_1_minus_p1"] = entry["p_gt_1"]["pooled"]["accuracy"] - entry["p1"]["pooled"]["accuracy"]
        results.setdefault(s, {})[a] = entry
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--midb", default=str(MIDB))
    ap.add_argument("--out", required=True)
    ap.add_argument("--features", default=str(FEATURES_DIR))
    ap.add_argument("--per-length", type=int, default=8, help="conversations of each length per language")
    ap.add_argument("--langs", default="", help="comma-separated languages (default: all)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--head", action="append", default=[], help="NAME=DIR: another QSM head to judge (default: shipped)"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    commit = code_commit()  # read before the run: a commit made while it runs is not it
    started = time.perf_counter()
    heads = parse_heads(args.head)
    pool, convs, other_of = conversations_of_unseen_sources(args.midb, heads, args.per_length, args.seed, args.langs)
    scorer = ExchangeScorer(Path(args.features), heads)
    versions = []  # (conv, p, kind, exchanges)
    for i, c in enumerate(convs):
        for p, kind, turns in variants(c, pool, convs[other_of[i]]):
            versions.append((i, p, kind, scorer.texts(turns)))
    # single-exchange MIDB contrasts on the conversations' records
    used, single_ins, single_res = single_exchanges(pool, convs, other_of)
    ins = [e.instruction for v in versions for e in v[3]]
    res = [e.response for v in versions for e in v[3]]
    uniq = len(set(ins) | set(single_ins)) + len(set(res) | set(single_res))
    log.info("%d conversations, %d versions, %d distinct texts", len(convs), len(versions), uniq)
    scorer.encode(ins + single_ins, res + single_res)
    flat = scorer.scores(ins, res, args.seed)
    names = list(flat)
    # rank-normalised combination per language, over every exchange of that language
    langs_flat = np.array([convs[v[0]]["lang"] for v in versions for _ in v[3]])
    for head in heads:
        for w in LENGTH_WEIGHTS:
            flat[f"{head}+length_w{w}"] = combine_ranked([flat[head], flat["length"]], [1 - w, w], langs_flat)
    names = list(flat)
    results = multiturn_results(flat, versions, pool, convs)
    # single-exchange MIDB contrasts
    single = scorer.scores(single_ins, single_res, args.seed)
    langs_single = np.concatenate([used["lang"].to_numpy()] * 4)
    for head in heads:  # the combinations, ranked per language over these samples
        for w in LENGTH_WEIGHTS:
            single[f"{head}+length_w{w}"] = combine_ranked([single[head], single["length"]], [1 - w, w], langs_single)
    midb = {s: midb_contrasts(single[s], used) for s in names}
    langs = used["lang"].to_numpy()
    out = {
        "commit": commit,
        "seed": args.seed,
        "heads": {k: str(v) for k, v in heads.items()},
        "languages": sorted(set(langs)),
        "records_unseen_by_heads": int(len(pool)),
        "conversations": len(convs),
        "per_length_per_language": args.per_length,
        "pairs": sum(len(v[3]) > 0 and v[1] > 0 for v in versions),
        "softmin_temperature": SOFTMIN_TEMPERATURE,
        "combination": "per exchange: (1 - w) rank(QSM) + w rank(length), ranked per language over the exchanges",
        "texts_encoded_this_run": scorer.encoded,
        "encode_seconds": round(scorer.encode_seconds, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "multiturn": results,
        "midb_single_exchange": midb,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"{len(convs)} conversations, {out['pairs']} pairs; intact above corrupted, p=1 / p>1 (pooled corruptions)")
    for s in names:
        for a in AGGREGATES:
            e = results[s][a]
            p1, pl = e["p1"]["pooled"], e["p_gt_1"]["pooled"]
            print(f"{s:24s} {a:8s} p1 {p1['accuracy']:.3f} [{p1['ci95'][0]:.3f}, {p1['ci95'][1]:.3f}]"
                  f"  p>1 {pl['accuracy']:.3f} [{pl['ci95'][0]:.3f}, {pl['ci95'][1]:.3f}]")  # fmt: skip
    for s, m in midb.items():
        pair, matched = m["pairwise"]["accuracy"], m["pairwise_length_matched"]["accuracy"]
        relevance = m["relevance_vs_other_instruction"]["accuracy"]
        print(f"{s:24s} MIDB pairwise {pair:.3f} matched {matched:.3f}"
              f" top20 {m['top20_revised_share']:.3f} relevance {relevance:.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
