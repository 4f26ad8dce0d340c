"""Partial fine-tuning of the QSM encoder on CPU: only the top transformer layers learn.

A head over frozen pooled vectors learns little beyond length (docs/training.md), and a full
fine-tune of the encoder costs a forward and backward pass through all twelve layers per
step. Here the lower layers stay frozen, so their hidden states are computed once per text and
cached; training then runs only the top `--top-layers` layers (plus mean pooling) with the
triplet loss: instruction as anchor, expert revision as positive, the raw machine translation
as negative, and, so that relevance is not traded away, another instruction's revision (same
language) as a second negative.

The split is one fold of the leave-languages-out, source-disjoint cross-validation of
bench/qsm_cv.py (mdaq_spark.train.crossval): the held-out languages' translations of held-out
source records, none of whose translations is trained on. Records the previously shipped head
was trained on are never evaluated, so it is judged beside the others on the same pairs.
Every scorer is judged on the same pairs: length, the untrained encoder cosine, the shipped
head, and the partially fine-tuned encoder's cosine.

    python bench/qsm_partial_finetune.py --midb ../shared/data/midb_train --fold 0 \
        --train-records 1200 --out bench/results/qsm_partial_ft_fold0.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from mdaq_spark.config import ModelConfig
from mdaq_spark.models import registry
from mdaq_spark.models.qsm import QsmHead, score_and_embed
from mdaq_spark.report.stats import code_commit
from mdaq_spark.train import crossval as cv
from mdaq_spark.train.midb import load_midb

# the affine head shipped before source-disjoint training (records 0-400 of every MIDB file)
AFFINE_HEAD_R400 = Path(__file__).resolve().parent / "heads" / "e5-small-affine-r400"

log = logging.getLogger("qsm_partial_finetune")
SHIPPED_TRAINED_UP_TO = 400  # the previously shipped head read the first 400 records of each file


def honest_fold(midb: str, index: int, folds: int, seed: int) -> tuple[cv.Fold, pd.DataFrame, pd.DataFrame]:
    """(fold, train, test) of changed pairs: test = held-out languages x held-out sources, the old head's never."""
    records = load_midb(midb)
    fold = cv.make_folds(records, folds, seed)[index]
    train, test = cv.fold_split(records, fold)
    changed = lambda f: f[f["revised_response"].str.strip() != f["raw_response"].str.strip()]  # noqa: E731
    return fold, changed(train), changed(test[test["source"] > SHIPPED_TRAINED_UP_TO]).reset_index(drop=True)


class SplitEncoder:
    """The encoder cut in two: frozen lower layers (run once per text) and trainable top layers."""

    def __init__(self, location: str, max_seq_length: int, top_layers: int) -> None:
        from sentence_transformers import SentenceTransformer

        self.st = SentenceTransformer(location, device="cpu", local_files_only=True)
        self.st.max_seq_length = max_seq_length
        self.bert = self.st[0].auto_model
        layers = self.bert.encoder.layer
        self.cut = len(layers) - top_layers
        self.lower, self.top = list(layers[: self.cut]), nn.ModuleList(layers[self.cut :])
        for p in self.bert.parameters():
            p.requires_grad_(False)
        for p in self.top.parameters():
            p.requires_grad_(True)

    def _mask(self, mask: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        full, _ = self.bert._create_attention_masks(
            attention_mask=mask, encoder_attention_mask=None, embedding_output=states,
            encoder_hidden_states=None, cache=None,
        )  # fmt: skip
        return full

    @torch.no_grad()
    def lower_states(self, texts: list[str], batch_size: int = 32) -> list[torch.Tensor]:
        """Hidden states after the frozen layers, one (tokens, dim) tensor per text, padding dropped."""
        self.bert.eval()
        out: list[torch.Tensor | None] = [None] * len(texts)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            feats = self.st.tokenize([texts[i] for i in idx])
            mask = feats["attention_mask"]
            h = self.bert.embeddings(input_ids=feats["input_ids"], token_type_ids=feats.get("token_type_ids"))
            full = self._mask(mask, h)
            for layer in self.lower:
                h = layer(h, attention_mask=full)
                h = h[0] if isinstance(h, tuple) else h
            for j, i in enumerate(idx):
                out[i] = h[j, : int(mask[j].sum())].clone()
        return out  # type: ignore[return-value]

    def top_embeddings(self, states: list[torch.Tensor]) -> torch.Tensor:
        """L2-normalised mean-pooled output of the top layers over cached lower states."""
        n = max(s.shape[0] for s in states)
        h = torch.zeros(len(states), n, states[0].shape[1])
        mask = torch.zeros(len(states), n, dtype=torch.long)
        for j, s in enumerate(states):
            h[j, : s.shape[0]] = s
            mask[j, : s.shape[0]] = 1
        full = self._mask(mask, h)
        for layer in self.top:
            h = layer(h, attention_mask=full)
            h = h[0] if isinstance(h, tuple) else h
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)

    @torch.no_grad()
    def embed(self, states: list[torch.Tensor], batch_size: int = 64) -> np.ndarray:
        self.top.eval()
        order = np.argsort([-s.shape[0] for s in states], kind="stable")
        out = np.zeros((len(states), states[0].shape[1]), dtype=np.float32)
        for start in range(0, len(states), batch_size):
            idx = order[start : start + batch_size]
            out[idx] = self.top_embeddings([states[i] for i in idx]).numpy()
        return out


def other_same_language(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """For each row, the index of another row of the same language (a seeded derangement)."""
    rng = np.random.default_rng(seed)
    other = np.arange(len(frame))
    for _, idx in frame.groupby("lang").indices.items():
        if len(idx) > 1:
            perm = rng.permutation(idx)
            other[perm] = np.roll(perm, 1)
    return other


def judge(gaps: dict[str, np.ndarray], clusters: np.ndarray, matched: np.ndarray) -> dict:
    return {
        name: {"all": cv.summarise(g, clusters), "length_matched": cv.summarise(g, clusters, matched)}
        for name, g in gaps.items()
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--midb", required=True)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument(
        "--train-records", type=int, default=1200, help="training triplets drawn from the fold's train side"
    )
    ap.add_argument("--top-layers", type=int, default=2)
    ap.add_argument("--max-seq-length", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--margin", type=float, default=0.05)
    ap.add_argument("--relevance-weight", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    commit = code_commit()  # read before the run: a commit made while it runs is not it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()

    fold, train, test = honest_fold(args.midb, args.fold, args.folds, args.seed)
    train = train.sample(frac=1.0, random_state=args.seed).head(args.train_records).reset_index(drop=True)
    log.info("fold %d: held-out %s; %d training triplets, %d test pairs", fold.index, fold.test_langs,
             len(train), len(test))  # fmt: skip

    cfg = ModelConfig(max_seq_length=args.max_seq_length)
    ip, rp = cfg.instruction_prefix, cfg.response_prefix
    enc = SplitEncoder(registry.ensure_prepared(cfg.name, cfg.cache_dir), args.max_seq_length, args.top_layers)
    texts = sorted(
        {ip + t for t in pd.concat([train["revised_prompt"], test["revised_prompt"], test["raw_prompt"]])}
        | {rp + t for t in pd.concat([train["revised_response"], train["raw_response"]])}
        | {rp + t for t in pd.concat([test["revised_response"], test["raw_response"]])}
    )
    t0 = time.perf_counter()
    states = dict(zip(texts, enc.lower_states(texts), strict=True))
    cache_seconds = time.perf_counter() - t0
    log.info("cached lower-layer states of %d texts in %.0fs", len(texts), cache_seconds)

    def emb(prefix: str, column: pd.Series) -> np.ndarray:
        return enc.embed([states[prefix + t] for t in column])

    other_test = other_same_language(test, args.seed + 1)

    def evaluate() -> tuple[dict, dict[str, np.ndarray]]:
        p, rev, raw = emb(ip, test["revised_prompt"]), emb(rp, test["revised_response"]), emb(rp, test["raw_response"])
        cos_rev, cos_raw = (p * rev).sum(1), (p * raw).sum(1)
        pair_gap = cos_rev - cos_raw
        relevance_gap = cos_rev - (p * rev[other_test]).sum(1)
        raw_p = emb(ip, test["raw_prompt"])
        sel_scores = np.concatenate([(raw_p * raw).sum(1), cos_rev])
        return {"pair": pair_gap, "relevance": relevance_gap, "selection": sel_scores}, {
            "p": p, "rev": rev, "raw": raw, "raw_p": raw_p,
        }  # fmt: skip

    clusters = test["source"].to_numpy(dtype=np.int64)
    matched = cv.length_matched(test["revised_response"], test["raw_response"])
    langs = np.concatenate([test["lang"].to_numpy(), test["lang"].to_numpy()])
    is_revised = np.concatenate([np.zeros(len(test), bool), np.ones(len(test), bool)])

    def selection(scores: np.ndarray) -> dict:
        per_lang = cv.top_fraction_revised(scores, is_revised, langs)
        return {"per_language": per_lang, "pooled": float(np.mean([v["revised_share"] for v in per_lang.values()]))}

    before, e = evaluate()
    shipped = QsmHead.load(AFFINE_HEAD_R400)
    s_rev = score_and_embed(e["p"], e["rev"], shipped)[0]
    s_raw = score_and_embed(e["p"], e["raw"], shipped)[0]
    s_other = score_and_embed(e["p"], e["rev"][other_test], shipped)[0]
    s_raw_sample = score_and_embed(e["raw_p"], e["raw"], shipped)[0]
    length = lambda col: test[col].str.len().to_numpy(dtype=float)  # noqa: E731
    gaps = {
        "length": length("revised_response") - length("raw_response"),
        "untrained_cosine": before["pair"],
        "shipped_head": s_rev - s_raw,
    }
    relevance = {
        "length": length("revised_response") - length("revised_response")[other_test],
        "untrained_cosine": before["relevance"],
        "shipped_head": s_rev - s_other,
    }
    sel = {
        "length": selection(np.concatenate([length("raw_response"), length("revised_response")])),
        "untrained_cosine": selection(before["selection"]),
        "shipped_head": selection(np.concatenate([s_raw_sample, s_rev])),
    }

    # training: triplet loss on (prompt, revision, raw MT) plus (prompt, revision, other revision)
    loss_fn = nn.TripletMarginWithDistanceLoss(
        distance_function=lambda x, y: 1.0 - nn.functional.cosine_similarity(x, y), margin=args.margin
    )
    optim = torch.optim.AdamW([p for p in enc.top.parameters() if p.requires_grad], lr=args.lr)
    other_train = other_same_language(train, args.seed + 2)
    gen = torch.Generator().manual_seed(args.seed)
    losses, step_seconds = [], []
    for epoch in range(args.epochs):
        enc.top.train()
        order = torch.randperm(len(train), generator=gen).tolist()
        for start in range(0, len(order), args.batch_size):
            rows = order[start : start + args.batch_size]
            t1 = time.perf_counter()
            a = enc.top_embeddings([states[ip + train["revised_prompt"][i]] for i in rows])
            pos = enc.top_embeddings([states[rp + train["revised_response"][i]] for i in rows])
            neg = enc.top_embeddings([states[rp + train["raw_response"][i]] for i in rows])
            loss = loss_fn(a, pos, neg)
            if args.relevance_weight:
                rel = enc.top_embeddings([states[rp + train["revised_response"][other_train[i]]] for i in rows])
                loss = loss + args.relevance_weight * loss_fn(a, pos, rel)
            optim.zero_grad()
            loss.backward()
            optim.step()
            step_seconds.append(time.perf_counter() - t1)
            losses.append(float(loss))
            if len(losses) % 20 == 0:
                log.info("epoch %d step %d: loss %.4f (%.2fs/step)", epoch, len(losses),
                         np.mean(losses[-20:]), np.mean(step_seconds[-20:]))  # fmt: skip
    train_seconds = float(np.sum(step_seconds))

    after, _ = evaluate()
    name = f"partial_ft_top{args.top_layers}"
    gaps[name], relevance[name], sel[name] = after["pair"], after["relevance"], selection(after["selection"])

    result = {
        "commit": commit,
        "fold": {"index": fold.index, "test_langs": list(fold.test_langs), "folds": args.folds},
        "train_triplets": len(train),
        "test_pairs": len(test),
        "length_matched_pairs": int(matched.sum()),
        "settings": {k: v for k, v in vars(args).items() if k not in ("midb", "out")},
        "cost": {
            "texts_cached": len(texts),
            "cache_seconds": round(cache_seconds, 1),
            "train_steps": len(losses),
            "seconds_per_step": round(float(np.mean(step_seconds)), 3),
            "train_seconds": round(train_seconds, 1),
            "total_seconds": round(time.perf_counter() - started, 1),
            "threads": args.threads,
        },
        "pairwise": judge(gaps, clusters, matched),
        "relevance_other_instruction": {k: cv.summarise(g, clusters) for k, g in relevance.items()},
        "top20_revised_share": sel,
        "train_losses_every_20": [round(float(np.mean(losses[i : i + 20])), 5) for i in range(0, len(losses), 20)],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for k in gaps:
        pw = result["pairwise"][k]
        print(f"{k:22s} pairs {pw['all']['accuracy']:.3f}  length-matched {pw['length_matched']['accuracy']:.3f}  "
              f"relevance {result['relevance_other_instruction'][k]['accuracy']:.3f}  "
              f"top20 revised {sel[k]['pooled']:.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
