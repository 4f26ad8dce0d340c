"""Do the scorers prefer the reply people preferred? Pairwise accuracy on ranked OpenAssistant siblings.

For each prompter message with at least two ranked assistant replies, every pair of siblings
with different ranks is a pair; a scorer is right when it scores the better-ranked reply
higher (ties count half). Trees are split in two by a seeded hash: a design fitted on
OpenAssistant may only read the training trees, and every number is reported on the held-out
trees (and, for scorers nothing was fitted on, on all trees too). Intervals: 95% bootstrap
over trees. All scorers are judged in one run on the same pairs:

- the shipped QSM head on a single exchange (instruction = the prompter message alone) and on
  the full conversation (instruction = the context before the reply, cut from the left to the
  encoder's length, the answering message kept whole);
- the untrained encoder's cosine, both ways; reply length; a coin;
- combinations: the QSM and length, each rank-normalised over all replies, equal weights.

    python bench/oasst_preference.py --out bench/results/oasst_preference.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from conversations import LENGTH_WEIGHTS, combine_ranked, sibling_pairs, split_trees
from exchange_scoring import FEATURES_DIR, ExchangeScorer, pairwise, parse_heads

from mdaq_spark.report.stats import code_commit

DATA = Path(__file__).resolve().parents[2] / "shared/data/oasst_dev/en_trees.jsonl"
log = logging.getLogger("oasst_preference")


def read_trees(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out", required=True)
    ap.add_argument("--features", default=str(FEATURES_DIR))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--test-fraction", type=float, default=0.5)
    ap.add_argument(
        "--head", action="append", default=[], help="NAME=DIR: another QSM head to judge beside the shipped one"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    commit = code_commit()  # read before the run: a commit made while it runs is not it
    started = time.perf_counter()
    trees = read_trees(Path(args.data))
    pairs = [p for t in trees for p in sibling_pairs(t)]
    train_trees, test_trees = split_trees([t["message_tree_id"] for t in trees], args.seed, args.test_fraction)
    scorer = ExchangeScorer(Path(args.features), parse_heads(args.head))

    def full(context: list[dict], reply: str) -> str:
        turns = [*context, {"role": "assistant", "content": reply}]
        return scorer.texts(turns)[-1].instruction

    single = [p["context"][-1]["content"] for p in pairs]
    full_b = [full(p["context"], p["better"]) for p in pairs]
    full_w = [full(p["context"], p["worse"]) for p in pairs]
    assert full_b == full_w  # the context does not depend on the reply
    better, worse = [p["better"] for p in pairs], [p["worse"] for p in pairs]
    scorer.encode(single + full_b, better + worse)
    s = {
        "single": (scorer.scores(single, better, args.seed), scorer.scores(single, worse, args.seed)),
        "full": (scorer.scores(full_b, better, args.seed), scorer.scores(full_b, worse, args.seed)),
    }
    gaps: dict[str, np.ndarray] = {}
    for name in scorer.heads:
        gaps[f"{name}_single_exchange"] = s["single"][0][name] - s["single"][1][name]
        gaps[f"{name}_full_conversation"] = s["full"][0][name] - s["full"][1][name]
    gaps["untrained_cosine_single_exchange"] = s["single"][0]["untrained_cosine"] - s["single"][1]["untrained_cosine"]
    gaps["untrained_cosine_full_conversation"] = s["full"][0]["untrained_cosine"] - s["full"][1]["untrained_cosine"]
    gaps["length"] = s["single"][0]["length"] - s["single"][1]["length"]
    gaps["coin"] = s["single"][0]["coin"] - s["single"][1]["coin"]
    # rank normalisation over every reply of the corpus (one language), as a run combines its scorers
    n = len(pairs)
    for name in scorer.heads:
        for way in ("single", "full"):
            q = np.concatenate([s[way][0][name], s[way][1][name]])
            ln = np.concatenate([s[way][0]["length"], s[way][1]["length"]])
            tag = "single_exchange" if way == "single" else "full_conversation"
            for w in LENGTH_WEIGHTS:
                combined = combine_ranked([q, ln], [1 - w, w], np.zeros(2 * n))
                gaps[f"{name}_{tag}+length_w{w}"] = combined[:n] - combined[n:]
    clusters = np.array([p["tree"] for p in pairs])
    depth = np.array([p["depth"] for p in pairs])
    in_test = np.array([p["tree"] in test_trees for p in pairs])

    def report(gap: np.ndarray, mask: np.ndarray) -> dict:
        return {
            "all": pairwise(gap[mask], clusters[mask]),
            "first_turn": pairwise(gap[mask & (depth == 1)], clusters[mask & (depth == 1)]),
            "later_turns": pairwise(gap[mask & (depth > 1)], clusters[mask & (depth > 1)]),
        }

    everything = np.ones(n, dtype=bool)
    results = {
        name: {
            "held_out_trees": report(gap, in_test),
            "training_trees": report(gap, ~in_test),
            "all_trees": report(gap, everything),
        }
        for name, gap in gaps.items()
    }
    out = {
        "commit": commit,
        "data": str(args.data),
        "seed": args.seed,
        "trees": len(trees),
        "held_out_trees": len(test_trees),
        "training_trees": len(train_trees),
        "pairs": n,
        "held_out_pairs": int(in_test.sum()),
        "later_turn_pairs": int((depth > 1).sum()),
        "ranked_replies": len({x for p in pairs for x in (p["better"], p["worse"])}),
        "heads": {k: str(v) for k, v in parse_heads(args.head).items()},
        "max_seq_length": scorer.max_tokens,
        "texts_encoded_this_run": scorer.encoded,
        "encode_seconds": round(scorer.encode_seconds, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "scorers": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"{n} pairs, {int(in_test.sum())} on held-out trees; accuracy [95% CI] held-out / all trees")
    for name, r in results.items():
        h, a = r["held_out_trees"]["all"], r["all_trees"]["all"]
        later = r["held_out_trees"]["later_turns"]
        print(
            f"{name:42s} held-out {h['accuracy']:.3f} [{h['ci95'][0]:.3f}, {h['ci95'][1]:.3f}]"
            f"  later turns {later['accuracy']:.3f}"
            f"  all trees {a['accuracy']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
