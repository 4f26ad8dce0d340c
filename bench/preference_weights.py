"""Scorer weights fitted on both contrasts at once, judged only on what they were not fitted on.

The shipped QSM knows machine-translation defects; length knows what people prefer about as
well as anything a frozen encoder gives. A run can combine scorers (`scoring.scorers` with
weights, `scoring.normalise: z`), so the question is which weights serve both contrasts. This
fits them instead of choosing them:

- features of an exchange: the z-scores, per language over the corpus, of the shipped QSM, the
  untrained cosine and log(1 + characters of the answer), exactly what a run combines;
- contrasts, each pair a difference of features, each contrast weighing one third:
  OpenAssistant's better- vs worse-ranked sibling replies on the TRAINING trees (the split of
  bench/oasst_preference.py, the context before the reply as the prompt); MIDB's revision vs
  raw machine translation, and the true answer vs another conversation's, on a seeded half of
  the source records the shipped head never trained on (the records bench/multiturn_midb.py
  uses, split by source record across languages);
- a pairwise logistic regression without intercept, sklearn's defaults otherwise (C = 1), no
  setting searched; the weights are its coefficients scaled to sum to one, rounded to 0.01.

A fifth design asks whether length can help preference without spreading samples of different
records apart (what costs MIDB its top 20%): length relative to what the instruction calls for,
log(1 + characters) minus a ridge regression's prediction of it from the instruction's
embedding (sklearn's Ridge, its default alpha = 1, fitted on the fit halves' exchanges). Two
replies to one instruction differ by exactly their length difference; samples of different
instructions differ less than by length. It replaces length in the prior rank combination and
in a second fit.

Every design is then judged in the same run on the other halves only: held-out trees' sibling
pairs (full conversation), MIDB's single-exchange numbers on the other half of the sources, and
the multi-turn intact-vs-corrupted pairs whose corrupted turn comes from that half (aggregate
mean). Beside it: the QSM alone, length, the untrained cosine, a coin, and the rank combination
0.75 / 0.25 fixed before any run (bench/oasst_preference.py).

    python bench/preference_weights.py --out bench/results/preference_weights.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from conversations import combine_ranked, combine_z, sibling_pairs, split_trees, z_normalise
from exchange_scoring import FEATURES_DIR, ExchangeScorer, pairwise, parse_heads
from multiturn_midb import (
    MIDB,
    conversations_of_unseen_sources,
    midb_contrasts,
    multiturn_results,
    single_exchanges,
    variants,
)
from oasst_preference import DATA, read_trees

from mdaq_spark.report.stats import code_commit

log = logging.getLogger("preference_weights")
FEATURES = ("qsm", "untrained_cosine", "length")  # the pipeline's kinds: qsm, cosine, length
KINDS = {"qsm": "qsm", "untrained_cosine": "cosine", "length": "length"}
PRIOR_RANK_WEIGHTS = (0.75, 0.25)  # QSM, length: the combination fixed before any run


RELATIVE = ("qsm", "untrained_cosine", "relative_length")  # the fifth design's features


def features(scores: dict[str, np.ndarray], groups: np.ndarray, names: tuple[str, ...] = FEATURES) -> np.ndarray:
    """Rows: exchanges; columns: each feature's z-score within its group, as a run normalises."""
    groups = np.asarray(groups)
    out = np.zeros((len(groups), len(names)))
    for g in np.unique(groups):
        m = groups == g
        for k, name in enumerate(names):
            out[m, k] = z_normalise(scores[name][m])
    return out


def fit_weights(contrasts: list[np.ndarray]) -> np.ndarray:
    """Pairwise logistic regression on feature differences (better minus worse), each contrast one third."""
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate(contrasts)
    w = np.concatenate([np.full(len(c), 1.0 / (len(contrasts) * len(c))) for c in contrasts])
    x2 = np.concatenate([x, -x])  # both orders: the model cannot lean on an intercept or an order
    y = np.r_[np.ones(len(x)), np.zeros(len(x))]
    model = LogisticRegression(fit_intercept=False).fit(x2, y, sample_weight=np.r_[w, w] * len(x))
    return model.coef_[0]


def shipped_weights(coef: np.ndarray, names: tuple[str, ...] = FEATURES) -> dict[str, float]:
    """Coefficients as a run's weights: positive ones scaled to sum to one, rounded; the others dropped."""
    positive = {n: float(c) for n, c in zip(names, coef, strict=True) if c > 0}
    total = sum(positive.values())
    return {n: round(c / total, 2) for n, c in positive.items() if round(c / total, 2) > 0}


def with_designs(
    scores: dict[str, np.ndarray], groups: np.ndarray, weights: dict[str, float], relative: dict[str, float]
) -> dict:
    """The single scorers, the prior rank combination and the fitted z combination, with length and
    with instruction-relative length (`relative`: the second fit's weights), over `groups`."""
    out = {k: scores[k] for k in ("qsm", "untrained_cosine", "length", "coin")}
    out["qsm+length_rank_0.75_0.25"] = combine_ranked([scores["qsm"], scores["length"]], PRIOR_RANK_WEIGHTS, groups)
    out["fitted_z"] = combine_z([scores[n] for n in weights], list(weights.values()), groups)
    out["qsm+relative_length_rank_0.75_0.25"] = combine_ranked(
        [scores["qsm"], scores["relative_length"]], PRIOR_RANK_WEIGHTS, groups
    )
    out["fitted_z_relative_length"] = combine_z([scores[n] for n in relative], list(relative.values()), groups)
    return out


def expected_length(embeddings: np.ndarray, log_lengths: np.ndarray):
    """log(1 + characters) an answer to each instruction has, from its embedding: sklearn's Ridge, defaults."""
    from sklearn.linear_model import Ridge

    return Ridge().fit(embeddings, log_lengths)


def log_lengths(texts: list[str]) -> np.ndarray:
    return np.log1p(np.array([len(t) for t in texts], dtype=float))


def expectation_quality(ridge, embeddings: np.ndarray, actual: np.ndarray) -> dict:
    """How well the expected length predicts answers' log(1 + characters): R^2 and Pearson's r."""
    predicted = ridge.predict(embeddings)
    return {
        "r2": round(float(ridge.score(embeddings, actual)), 3),
        "pearson_r": round(float(np.corrcoef(predicted, actual)[0, 1]), 3),
        "n": len(predicted),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--oasst", default=str(DATA))
    ap.add_argument("--midb", default=str(MIDB))
    ap.add_argument("--out", required=True)
    ap.add_argument("--features", default=str(FEATURES_DIR))
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    commit = code_commit()  # read before the run: a commit made while it runs is not it
    started = time.perf_counter()
    heads = parse_heads([])
    scorer = ExchangeScorer(Path(args.features), heads)

    ridge = None

    def logged(s: dict[str, np.ndarray], instructions: list[str], responses: list[str]) -> dict[str, np.ndarray]:
        # the pipeline's length scorer: log(1 + characters); and that minus its expectation
        length = log_lengths(responses)
        return {
            **s,
            "length": length,
            "relative_length": length - ridge.predict(scorer.prompt_embeddings(instructions)),
        }

    # --- OpenAssistant: training trees fit, held-out trees judge
    trees = read_trees(Path(args.oasst))
    pairs = [p for t in trees for p in sibling_pairs(t)]
    train_trees, test_trees = split_trees([t["message_tree_id"] for t in trees], args.seed)
    prompts = [
        scorer.texts([*p["context"], {"role": "assistant", "content": p["better"]}])[-1].instruction for p in pairs
    ]
    better, worse = [p["better"] for p in pairs], [p["worse"] for p in pairs]
    # --- MIDB: the conversations' records, their sources split in two across languages
    pool, convs, other_of = conversations_of_unseen_sources(args.midb, heads, 8, args.seed)
    used, single_ins, single_res = single_exchanges(pool, convs, other_of)
    fit_sources, eval_sources = (
        {int(s) for s in half} for half in split_trees([str(int(s)) for s in used["source"].unique()], args.seed)
    )
    versions = [
        (i, p, kind, scorer.texts(turns))
        for i, c in enumerate(convs)
        for p, kind, turns in variants(c, pool, convs[other_of[i]])
    ]
    ins = [e.instruction for v in versions for e in v[3]]
    res = [e.response for v in versions for e in v[3]]
    scorer.encode(prompts + single_ins + ins, better + worse + single_res + res)

    n_pairs = len(pairs)
    in_test = np.array([p["tree"] in test_trees for p in pairs])
    n = len(used)
    is_fit = np.isin(used["source"].to_numpy(dtype=int), list(fit_sources))
    # the expected length: fitted on the training trees' replies and the fit half's revised exchanges
    train_at, fit_at = np.flatnonzero(~in_test), np.flatnonzero(is_fit)
    fit_ins = [prompts[i] for i in train_at] * 2 + [single_ins[i] for i in fit_at]
    fit_res = [better[i] for i in train_at] + [worse[i] for i in train_at] + [single_res[i] for i in fit_at]
    log_len = log_lengths(fit_res)
    ridge = expected_length(scorer.prompt_embeddings(fit_ins), log_len)
    held_out = np.flatnonzero(in_test)
    r2 = {
        "fit_exchanges": expectation_quality(ridge, scorer.prompt_embeddings(fit_ins), log_len),
        "held_out_trees": expectation_quality(
            ridge, scorer.prompt_embeddings([prompts[i] for i in held_out]), log_lengths([better[i] for i in held_out])
        ),
        "midb_eval_half": expectation_quality(
            ridge,
            scorer.prompt_embeddings([single_ins[i] for i in np.flatnonzero(~is_fit)]),
            log_lengths([single_res[i] for i in np.flatnonzero(~is_fit)]),
        ),
    }
    log.info("expected length: %s", r2)
    o = logged(scorer.scores(prompts * 2, better + worse, args.seed), prompts * 2, better + worse)
    m = logged(scorer.scores(single_ins, single_res, args.seed), single_ins, single_res)
    langs4 = np.concatenate([used["lang"].to_numpy()] * 4)

    # fit: training trees' pairs; MIDB fit half (z over that half, per language)
    fit_mask2 = np.r_[~in_test, ~in_test]
    fo = features({k: v[fit_mask2] for k, v in o.items()}, np.zeros(int(fit_mask2.sum())))
    k = int((~in_test).sum())
    oasst_diff = fo[:k] - fo[k:]
    fit4 = np.concatenate([is_fit] * 4)
    fm = features({k2: v[fit4] for k2, v in m.items()}, langs4[fit4])
    nf = int(is_fit.sum())
    rev, raw, oth = fm[:nf], fm[nf : 2 * nf], fm[2 * nf : 3 * nf]
    coef = fit_weights([oasst_diff, rev - raw, rev - oth])
    weights = shipped_weights(coef)
    log.info("coefficients %s -> weights %s", dict(zip(FEATURES, coef.round(4), strict=True)), weights)
    fo_r = features({k2: v[fit_mask2] for k2, v in o.items()}, np.zeros(int(fit_mask2.sum())), RELATIVE)
    fm_r = features({k2: v[fit4] for k2, v in m.items()}, langs4[fit4], RELATIVE)
    rev_r, raw_r, oth_r = fm_r[:nf], fm_r[nf : 2 * nf], fm_r[2 * nf : 3 * nf]
    coef_r = fit_weights([fo_r[:k] - fo_r[k:], rev_r - raw_r, rev_r - oth_r])
    relative = shipped_weights(coef_r, RELATIVE)

    # judge: held-out trees (normalised over their replies), MIDB eval half, multi-turn pairs of that half
    test2 = np.r_[in_test, in_test]
    ot = with_designs({k2: v[test2] for k2, v in o.items()}, np.zeros(int(test2.sum())), weights, relative)
    t = int(in_test.sum())
    trees_t = np.array([p["tree"] for p in pairs])[in_test]
    depth_t = np.array([p["depth"] for p in pairs])[in_test]
    eval4 = ~fit4
    me = with_designs({k2: v[eval4] for k2, v in m.items()}, langs4[eval4], weights, relative)
    used_eval = used[~is_fit].reset_index(drop=True)
    flat = logged(scorer.scores(ins, res, args.seed), ins, res)
    langs_flat = np.array([convs[v[0]]["lang"] for v in versions for _ in v[3]])
    mt = multiturn_results(with_designs(flat, langs_flat, weights, relative), versions, pool, convs, eval_sources)
    designs = {}
    for name in ot:
        gap = ot[name][:t] - ot[name][t:]
        later = depth_t > 1
        designs[name] = {
            "oasst_held_out_trees": pairwise(gap, trees_t),
            "oasst_held_out_later_turns": pairwise(gap[later], trees_t[later]),
            "midb_eval_half": midb_contrasts(me[name], used_eval),
            "multiturn_eval_half_mean": {
                "p1": mt[name]["mean"]["p1"]["pooled"],
                "p_gt_1": mt[name]["mean"]["p_gt_1"]["pooled"],
            },
        }
    out = {
        "commit": commit,
        "seed": args.seed,
        "features": list(FEATURES),
        "coefficients": dict(zip(FEATURES, coef.tolist(), strict=True)),
        "weights": weights,
        "relative_length": {
            "coefficients": dict(zip(RELATIVE, coef_r.tolist(), strict=True)),
            "weights": relative,
            "expected_length": r2,
        },
        "config": {
            "scoring": {
                "normalise": "z",
                "scorers": [{"kind": KINDS[k2], "weight": w} for k2, w in weights.items()],
            }
        },
        "fit": {
            "oasst_training_trees": len(train_trees),
            "oasst_training_pairs": int((~in_test).sum()),
            "midb_fit_sources": len(fit_sources),
            "midb_fit_records": nf,
        },
        "judge": {
            "oasst_held_out_trees": len(test_trees),
            "oasst_held_out_pairs": t,
            "midb_eval_sources": len(eval_sources),
            "midb_eval_records": int((~is_fit).sum()),
        },
        "pairs": n_pairs,
        "midb_records": n,
        "texts_encoded_this_run": scorer.encoded,
        "seconds": round(time.perf_counter() - started, 1),
        "designs": designs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"weights {weights} (coefficients {dict(zip(FEATURES, coef.round(3), strict=True))})")
    print("design | OASST held-out | later turns | MIDB pairwise | matched | top20 | relevance | multi-turn p1 / p>1")
    for name, d in designs.items():
        mm, mtd = d["midb_eval_half"], d["multiturn_eval_half_mean"]
        print(
            f"{name:28s} {d['oasst_held_out_trees']['accuracy']:.3f} {d['oasst_held_out_later_turns']['accuracy']:.3f}"
            f" | {mm['pairwise']['accuracy']:.3f} {mm['pairwise_length_matched']['accuracy']:.3f}"
            f" {mm['top20_revised_share']:.3f} {mm['relevance_vs_other_instruction']['accuracy']:.3f}"
            f" | {mtd['p1']['accuracy']:.3f} / {mtd['p_gt_1']['accuracy']:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
