"""Sanity contrasts for a QSM on real instruction data: does the true response beat broken ones?

For every sample of a finished run (its `normalized/` table: the pipeline's own texts and
languages), the true response is set against the contrasts of mdaq_spark/train/sanity.py:
another instruction's response in the same language, its first 30%, the instruction itself,
its shuffled sentences, and a response of another language. Each scorer (the QSM head given,
the untrained encoder cosine, length, a coin) is judged on the same pairs; intervals are a
bootstrap over samples.

    mdaq demo --output runs/demo
    python bench/qsm_sanity.py --run-dir runs/demo --out bench/results/qsm_sanity_demo.json
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from mdaq_spark.config import ModelConfig
from mdaq_spark.models import registry
from mdaq_spark.models.encoder import TextEncoder
from mdaq_spark.models.qsm import QsmHead, score_and_embed
from mdaq_spark.report.stats import code_commit
from mdaq_spark.train import crossval as cv
from mdaq_spark.train import sanity
from mdaq_spark.train.midb import prompt

log = logging.getLogger("qsm_sanity")


def contrasts(samples: pd.DataFrame) -> dict[str, tuple[np.ndarray, list[str]]]:
    """contrast -> (indices of the samples it applies to, the negative response of each)."""
    n = len(samples)
    order = samples.sort_values(["lang", "sample_id"]).index.to_numpy()
    langs = samples["lang"].to_numpy()
    responses = samples["response"].tolist()
    other = np.empty(n, dtype=int)
    for lang in np.unique(langs):
        idx = order[langs[order] == lang]
        other[idx] = np.roll(idx, 1)
    same_lang = np.array([other[i] != i for i in range(n)])
    out = {"other_instruction": (np.flatnonzero(same_lang), [responses[other[i]] for i in np.flatnonzero(same_lang)])}
    out["truncated"] = (np.arange(n), [sanity.truncated(r) for r in responses])
    out["instruction_copy"] = (np.arange(n), samples["prompt"].tolist())
    out["shuffled"] = (np.arange(n), [sanity.shuffled(r) for r in responses])
    foreign = []
    for i in range(n):
        cand = order[langs[order] != langs[i]]
        if len(cand):
            foreign.append((i, responses[cand[i % len(cand)]]))
    out["other_language"] = (np.array([i for i, _ in foreign]), [r for _, r in foreign])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, help="a finished mdaq run (its normalized/ table is read)")
    ap.add_argument("--qsm", default="auto", help="QSM head dir, or 'auto' (the shipped head)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    commit = code_commit()  # read before the run: a commit made while it runs is not it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = ModelConfig(qsm_head=args.qsm)
    norm = pd.read_parquet(
        Path(args.run_dir) / "normalized", columns=["sample_id", "instruction", "input", "response", "lang"]
    )
    norm = norm.sort_values("sample_id").reset_index(drop=True)
    norm["prompt"] = [prompt(i, x) for i, x in zip(norm["instruction"], norm["input"], strict=True)]
    encoder = TextEncoder(cfg)
    head_dir = registry.resolve_head(args.qsm, cfg.name)
    heads = {"qsm": QsmHead.load(head_dir)} if head_dir else {}
    layers = heads["qsm"].layers if heads else ()

    def encode(texts: list[str], prefix: str) -> tuple[np.ndarray, np.ndarray | None]:
        """As the encode stage does: through the layer states when the head reads them."""
        return encoder.with_layers(texts, prefix, layers) if layers else (encoder.encode(texts, prefix), None)

    p = encode(norm["prompt"].tolist(), cfg.instruction_prefix)[0]
    r, r_states = encode(norm["response"].tolist(), cfg.response_prefix)
    rng = np.random.default_rng(args.seed)
    results: dict = {}
    for name, (idx, negatives) in contrasts(norm).items():
        neg, neg_states = encode(negatives, cfg.response_prefix)
        pi, ri = p[idx], r[idx]
        ri_states = r_states[idx] if r_states is not None else None
        gaps = {
            "length": np.array(
                [len(norm["response"][i]) - len(x) for i, x in zip(idx, negatives, strict=True)], float
            ),
            "random": rng.uniform(-1, 1, len(idx)),
            "untrained_cosine": score_and_embed(pi, ri, None)[0] - score_and_embed(pi, neg, None)[0],
        }
        for hname, head in heads.items():
            gaps[hname] = score_and_embed(pi, ri, head, ri_states)[0] - score_and_embed(pi, neg, head, neg_states)[0]
        results[name] = {k: cv.summarise(g, np.asarray(idx)) for k, g in gaps.items()}
    out = {
        "commit": commit,
        "run_dir": Path(args.run_dir).name,
        "samples": len(norm),
        "languages": sorted(norm["lang"].unique()),
        "qsm_head": head_dir,
        "contrasts": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    for name, res in results.items():
        print(f"{name:18s} " + "  ".join(f"{k} {v['accuracy']:.3f}" for k, v in res.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
