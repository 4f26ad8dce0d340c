"""The shipped head's score combined with the untrained encoder's cosine, on an honest split.

The head separates expert revisions from literal translations better than length, but it
gives up relevance: a fluent answer to another instruction outscores the true answer one
time in six. The untrained cosine keeps relevance (0.99) but barely sees fluency. Both come
from the same stored encodings, so a run can score with `head + w * cosine` at no cost. This
bench measures that sum for a few weights on the same split as bench/qsm_partial_finetune.py
(one source-disjoint, leave-languages-out fold; records the head was trained on excluded).

The weights are a sweep on the test fold, not a fit: read it as how much relevance each
weight buys and what it costs on MIDB pairs, not as a tuned result.

    python bench/qsm_combined.py --midb ../shared/data/midb_train --fold 0 --out bench/results/qsm_combined_fold0.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from mdaq_spark.config import ModelConfig
from mdaq_spark.models.encoder import TextEncoder
from mdaq_spark.models.qsm import QsmHead, score_and_embed
from mdaq_spark.train import crossval as cv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qsm_partial_finetune import honest_fold, other_same_language  # noqa: E402

from mdaq_spark.report.stats import code_commit

# the affine head shipped before source-disjoint training (records 0-400 of every MIDB file)
AFFINE_HEAD_R400 = Path(__file__).resolve().parent / "heads" / "e5-small-affine-r400"

log = logging.getLogger("qsm_combined")
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--midb", required=True)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    commit = code_commit()  # read before the run: a commit made while it runs is not it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    fold, _, test = honest_fold(args.midb, args.fold, args.folds, args.seed)
    cfg = ModelConfig()
    enc = TextEncoder(cfg)
    p = enc.encode(test["revised_prompt"].tolist(), cfg.instruction_prefix)
    raw_p = enc.encode(test["raw_prompt"].tolist(), cfg.instruction_prefix)
    rev = enc.encode(test["revised_response"].tolist(), cfg.response_prefix)
    raw = enc.encode(test["raw_response"].tolist(), cfg.response_prefix)
    head = QsmHead.load(AFFINE_HEAD_R400)
    other = other_same_language(test, args.seed + 1)  # the same pairing as qsm_partial_finetune

    def both(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return score_and_embed(a, b, head)[0], score_and_embed(a, b, None)[0]

    h_rev, c_rev = both(p, rev)
    h_raw, c_raw = both(p, raw)
    h_oth, c_oth = both(p, rev[other])
    h_rs, c_rs = both(raw_p, raw)
    clusters = test["source"].to_numpy(dtype=np.int64)
    matched = cv.length_matched(test["revised_response"], test["raw_response"])
    langs = np.concatenate([test["lang"].to_numpy()] * 2)
    is_revised = np.concatenate([np.zeros(len(test), bool), np.ones(len(test), bool)])
    results = {}
    for w in WEIGHTS:
        pair = (h_rev + w * c_rev) - (h_raw + w * c_raw)
        rel = (h_rev + w * c_rev) - (h_oth + w * c_oth)
        top = cv.top_fraction_revised(np.concatenate([h_rs + w * c_rs, h_rev + w * c_rev]), is_revised, langs)
        results[f"head + {w:g} x cosine"] = {
            "pairwise": cv.summarise(pair, clusters),
            "length_matched": cv.summarise(pair, clusters, matched),
            "relevance_other_instruction": cv.summarise(rel, clusters),
            "top20_revised_share": float(np.mean([v["revised_share"] for v in top.values()])),
        }
    spread = {
        "head_score_std": float(np.std(np.concatenate([h_rev, h_raw]))),
        "cosine_std": float(np.std(np.concatenate([c_rev, c_raw]))),
    }
    out = {
        "commit": commit,
        "fold": {"index": fold.index, "test_langs": list(fold.test_langs), "folds": args.folds},
        "test_pairs": len(test),
        "length_matched_pairs": int(matched.sum()),
        "spread": spread,
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    for name, r in results.items():
        pw, lm = r["pairwise"]["accuracy"], r["length_matched"]["accuracy"]
        rel, top = r["relevance_other_instruction"]["accuracy"], r["top20_revised_share"]
        print(f"{name:20s} pairs {pw:.3f}  length-matched {lm:.3f}  relevance {rel:.3f}  top20 {top:.3f}")
    print(spread)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
