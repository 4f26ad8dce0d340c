"""QSM designs under leave-languages-out, source-disjoint cross-validation, with every baseline.

Reads the features of bench/midb_features.py (one encoder pass over MIDB). Each fold holds out
languages and source records; every scorer is fitted on the fold's training records only and
judged on the held-out languages' translations of the held-out records:

- pairwise: revised response above the raw machine translation (all pairs, length-matched pairs);
- selection: share of expert revisions in the top 20% of each language's samples (raw and
  revised samples of the held-out records, each scored with its own prompt);
- sanity: the true response above another instruction's response (same language), its first
  30%, the instruction itself, its shuffled sentences, its translation into another language.

Records 0-400 of every file trained the head shipped before source-disjoint splits; they are
never evaluated, so that head can be judged beside the others.

    python bench/qsm_cv.py --features /path/to/features --out bench/results/qsm_cv.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mdaq_spark.config import HeadTrainConfig, LayerHeadTrainConfig, ModelConfig
from mdaq_spark.models.qsm import QsmHead, score_and_embed
from mdaq_spark.report.stats import code_commit
from mdaq_spark.train import crossval as cv
from mdaq_spark.train import sanity
from mdaq_spark.train.encodings import text_key
from mdaq_spark.train.features import FeatureStore
from mdaq_spark.train.head import train_head
from mdaq_spark.train.layer_head import train_layer_head
from mdaq_spark.train.midb import load_midb
from mdaq_spark.train.triplets import with_relevance_negatives

# the affine head shipped before source-disjoint training (records 0-400 of every MIDB file)
AFFINE_HEAD_R400 = Path(__file__).resolve().parent / "heads" / "e5-small-affine-r400"

log = logging.getLogger("qsm_cv")
SHIPPED_TRAINED_UP_TO = 400  # the old shipped head read the first 400 records of each file
IP, RP = ModelConfig().instruction_prefix, ModelConfig().response_prefix


class Texts:
    """Texts with their feature keys; a scorer sees both (length needs text, heads need features)."""

    def __init__(self, prompts: list[str], responses: list[str], store: FeatureStore) -> None:
        self.prompts, self.responses, self.store = prompts, responses, store
        self.pk = [text_key(IP, x) for x in prompts]
        self.rk = [text_key(RP, x) for x in responses]

    def emb(self) -> tuple[np.ndarray, np.ndarray]:
        return self.store.embeddings(self.pk), self.store.embeddings(self.rk)


def scorers(train: pd.DataFrame, store: FeatureStore, seed: int, which: set[str]) -> dict:
    """name -> function(Texts) -> scores, each fitted on `train` records only."""
    out = {
        "length": lambda t: np.array([len(x) for x in t.responses], dtype=float),
        # a coin per text, seeded by the text: the two sides of a pair draw different numbers
        "random": lambda t: np.array([cv._rank(x, seed) / 2.0**64 for x in t.responses]),
        "untrained_cosine": lambda t: score_and_embed(*t.emb(), None)[0],
    }
    shipped = QsmHead.load(AFFINE_HEAD_R400)
    out["shipped_head_before"] = lambda t: score_and_embed(*t.emb(), shipped)[0]
    changed = train[train["revised_response"].str.strip() != train["raw_response"].str.strip()]
    a = store.embeddings([text_key(IP, x) for x in changed["revised_prompt"]])
    pk = [text_key(RP, x) for x in changed["revised_response"]]
    nk = [text_key(RP, x) for x in changed["raw_response"]]
    p, n = store.embeddings(pk), store.embeddings(nk)
    params = HeadTrainConfig()
    if "affine" in which:
        h = train_head(a, p, n, params, seed)
        head = QsmHead(h.prompt_weight, h.prompt_bias, h.response_weight, h.response_bias, {})
        out["affine"] = lambda t, head=head: score_and_embed(*t.emb(), head)[0]
    for name, k, penalty in (
        ("affine_relevance", 1, 1e-2),
        ("affine_relevance3", 3, 1e-2),
        ("affine_relevance3_id", 3, 0.1),
    ):
        if name not in which:
            continue
        trip = changed.rename(
            columns={"revised_prompt": "prompt", "revised_response": "chosen", "raw_response": "rejected"}
        )
        trip = with_relevance_negatives(trip.assign(group=trip["source"].astype(str)), k, seed)
        ta = store.embeddings([text_key(IP, x) for x in trip["prompt"]])
        tp = store.embeddings([text_key(RP, x) for x in trip["chosen"]])
        tn = store.embeddings([text_key(RP, x) for x in trip["rejected"]])
        h = train_head(ta, tp, tn, params.model_copy(update={"identity_penalty": penalty}), seed)
        head = QsmHead(h.prompt_weight, h.prompt_bias, h.response_weight, h.response_bias, {})
        out[name] = lambda t, head=head: score_and_embed(*t.emb(), head)[0]
    six = (2, 4, 6, 8, 10, 12)
    variants = [  # name, layers, cosine term trained, weight of the other-instruction loss, gate scale
        ("layers", six, True, 1.0, 0.0),
        ("layers_low", (1, 2, 3, 4, 5, 6), True, 1.0, 0.0),
        ("layers_fixed_relevance", six, False, 1.0, 0.0),
        ("layers_relevance3", six, True, 3.0, 0.0),
        ("layers_gated02_relevance3", six, True, 3.0, 0.2),
    ]
    scales = {"002": 0.02, "005": 0.05, "01": 0.1, "02": 0.2, "03": 0.3, "05": 0.5}
    variants += [(f"layers_gated{tag}", six, True, 1.0, scales[tag]) for tag in ("005", "01", "02", "03", "05")]
    variants += [(f"layers_gated{tag}_fixed", six, False, 1.0, scales[tag]) for tag in ("002", "005", "01", "02")]
    for name, layers, train_relevance, relevance_weight, gate_scale in variants:
        if name not in which:
            continue
        lp = LayerHeadTrainConfig(
            layers=list(layers),
            train_relevance=train_relevance,
            relevance_weight=relevance_weight,
            gate_scale=gate_scale,
        )
        lh = train_layer_head(a, p, n, store.layers(pk, list(layers)), store.layers(nk, list(layers)), lp, seed)
        head = lh.head()
        out[name] = lambda t, h=head, which=list(layers): score_and_embed(*t.emb(), h, store.layers(t.rk, which))[0]
    return out


def evaluate_fold(test: pd.DataFrame, all_records: pd.DataFrame, fns: dict, store: FeatureStore) -> dict:
    changed = test[test["revised_response"].str.strip() != test["raw_response"].str.strip()].reset_index(drop=True)
    pos = Texts(list(changed["revised_prompt"]), list(changed["revised_response"]), store)
    neg = Texts(list(changed["revised_prompt"]), list(changed["raw_response"]), store)
    raw_samples = Texts(list(changed["raw_prompt"]), list(changed["raw_response"]), store)
    # another instruction's response, same language: the next record of the language in a fixed order
    order = changed.sort_values(["lang", "source"]).index.to_numpy()
    other_idx = np.empty(len(changed), dtype=int)
    for lang in changed["lang"].unique():
        idx = order[changed.loc[order, "lang"].to_numpy() == lang]
        other_idx[idx] = np.roll(idx, 1)
    chosen = sanity.sanity_sources(all_records)
    in_sanity = changed["source"].isin(chosen).to_numpy()
    responses, prompts = changed["revised_response"].tolist(), changed["revised_prompt"].tolist()
    # the same source's revised response in another language (the next language that has it)
    by_source = all_records.dropna(subset=["source"]).set_index(["source", "lang"])["revised_response"]
    langs = sorted(all_records["lang"].unique())

    def translation(source: int, lang: str) -> str | None:
        for x in langs[langs.index(lang) + 1 :] + langs[: langs.index(lang)]:
            if (source, x) in by_source.index:
                return by_source[(source, x)]
        return None

    negatives = {
        "other_instruction": [responses[i] for i in other_idx],
        "truncated": [sanity.truncated(x) if m else None for x, m in zip(responses, in_sanity, strict=True)],
        "instruction_copy": [x if m else None for x, m in zip(prompts, in_sanity, strict=True)],
        "shuffled": [sanity.shuffled(x) if m else None for x, m in zip(responses, in_sanity, strict=True)],
        "other_language": [
            translation(r.source, r.lang) if m else None for r, m in zip(changed.itertuples(), in_sanity, strict=True)
        ],
    }
    contrasts = {}
    for name, texts in negatives.items():
        # a partial encode covers a prefix of the source records: a contrast uses those it has
        mask = np.array([x is not None and text_key(RP, x) in store for x in texts], dtype=bool)
        picked = [x for x, m in zip(texts, mask, strict=True) if m]
        contrasts[name] = (Texts([p for p, m in zip(prompts, mask, strict=True) if m], picked, store), mask)
    clusters = changed["source"].to_numpy(dtype=int)
    matched = cv.length_matched(changed["revised_response"], changed["raw_response"])
    langs_arr = changed["lang"].to_numpy()
    result = {}
    for name, fn in fns.items():
        s_pos = fn(pos)
        gap = s_pos - fn(neg)
        entry = {"gap": gap, "matched": matched, "clusters": clusters, "langs": langs_arr}
        for cname, (texts, mask) in contrasts.items():
            entry[f"sanity_{cname}"] = (s_pos[mask] - fn(texts), clusters[mask])
        both = np.concatenate([s_pos, fn(raw_samples)])
        is_rev = np.concatenate([np.ones(len(s_pos), bool), np.zeros(len(s_pos), bool)])
        entry["selection"] = cv.top_fraction_revised(both, is_rev, np.concatenate([langs_arr, langs_arr]))
        result[name] = entry
    return result


def pooled(per_fold: list[dict], names: list[str]) -> dict:
    out = {}
    for name in names:
        gap = np.concatenate([f[name]["gap"] for f in per_fold])
        matched = np.concatenate([f[name]["matched"] for f in per_fold])
        clusters = np.concatenate([f[name]["clusters"] for f in per_fold])
        langs = np.concatenate([f[name]["langs"] for f in per_fold])
        entry = {
            "pairwise": cv.summarise(gap, clusters),
            "pairwise_length_matched": cv.summarise(gap, clusters, matched),
            "per_language": {
                lang: {
                    "pairwise": cv.summarise(gap, clusters, langs == lang),
                    "pairwise_length_matched": cv.summarise(gap, clusters, (langs == lang) & matched),
                }
                for lang in sorted(set(langs))
            },
        }
        sel = {}
        for f in per_fold:
            sel.update(f[name]["selection"])
        tops = sum(v["top"] for v in sel.values())
        entry["selection_top20_revised_share"] = {
            "pooled": sum(v["revised_share"] * v["top"] for v in sel.values()) / tops,
            "per_language": {k: v["revised_share"] for k, v in sorted(sel.items())},
        }
        entry["sanity"] = {}
        for key in [k for k in per_fold[0][name] if k.startswith("sanity_")]:
            g = np.concatenate([f[name][key][0] for f in per_fold])
            c = np.concatenate([f[name][key][1] for f in per_fold])
            entry["sanity"][key[len("sanity_") :]] = cv.summarise(g, c)
        out[name] = entry
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--midb", default=str(Path(__file__).resolve().parents[2] / "shared/data/midb_train"))
    ap.add_argument("--features", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--designs",
        default="affine,affine_relevance,affine_relevance3,affine_relevance3_id,layers,layers_fixed_relevance",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads for head training")
    args = ap.parse_args()
    commit = code_commit()  # read before the run: a commit made while it runs is not it
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    store = FeatureStore(Path(args.features))
    records = load_midb(args.midb)
    keys = ("revised_prompt", IP), ("raw_prompt", IP), ("revised_response", RP), ("raw_response", RP)
    encoded = np.logical_and.reduce([records[c].map(lambda x, p=p: text_key(p, x) in store) for c, p in keys])
    usable = records[encoded & records["source"].notna()].reset_index(drop=True)
    log.info("%d of %d records fully encoded", len(usable), len(records))
    folds = cv.make_folds(usable, args.folds, args.seed)
    per_fold, fold_info = [], []
    for fold in folds:
        train, test = cv.fold_split(usable, fold)
        test = test[test["source"] > SHIPPED_TRAINED_UP_TO]
        t0 = time.perf_counter()
        fns = scorers(train, store, args.seed, set(args.designs.split(",")))
        fit = time.perf_counter() - t0
        per_fold.append(evaluate_fold(test, usable, fns, store))
        fold_info.append(
            {
                "test_langs": fold.test_langs,
                "train_records": len(train),
                "test_records": len(test),
                "fit_seconds": round(fit, 1),
            }
        )
        log.info("fold %d: %s", fold.index, fold_info[-1])
    names = list(per_fold[0])
    result = {
        "commit": commit,
        "records_used": len(usable),
        "records_total": len(records),
        "folds": fold_info,
        "scorers": pooled(per_fold, names),
        "seconds": round(time.perf_counter() - started, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for name, e in result["scorers"].items():
        pair, matched = e["pairwise"], e["pairwise_length_matched"]
        sel = e["selection_top20_revised_share"]["pooled"]
        checks = " ".join(f"{k}={v['accuracy']:.3f}" for k, v in e["sanity"].items())
        print(f"{name:20s} pairwise {pair['accuracy']:.3f} matched {matched['accuracy']:.3f} top20 {sel:.3f} {checks}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
