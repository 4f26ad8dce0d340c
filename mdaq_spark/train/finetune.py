"""Full fine-tuning of the QSM encoder with the triplet margin loss (mode "full", for GPU users).

Same data, split and loss as the head; here the whole encoder learns. It learns both
contrasts: the raw machine translation as the negative (quality), and, for
`finetune.relevance_negatives` copies of each triplet, another instruction's response in the
same language (relevance), without which a fine-tuned encoder learns that polished text wins
whatever the question. The result is an ordinary sentence-transformers directory: use it as
`model.name` (with `qsm_head: none`); its manifest lists the source records it trained on,
which `eval-qsm` then leaves out. On this project's 2-core CPU a step of 16 triplets takes
seconds, so CPU runs are for smoke tests (`finetune.max_steps`); real runs belong on a GPU.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from mdaq_spark import __version__
from mdaq_spark.config import TrainQsmConfig
from mdaq_spark.io.local_dirs import publish_dir
from mdaq_spark.models import registry
from mdaq_spark.models.encoder import pick_device

log = logging.getLogger(__name__)

ENCODER_KIND = "mdaq-qsm-encoder"  # the manifest kind of an encoder this mode wrote


def finetune_encoder(
    cfg: TrainQsmConfig, train: pd.DataFrame, eval_seen: pd.DataFrame, eval_unseen: pd.DataFrame, data
) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer
    from torch import nn

    from mdaq_spark.train.embedder import Embedder, evaluate_splits, relevance_accuracy
    from mdaq_spark.train.triplets import data_manifest, with_relevance_negatives

    ft, m = cfg.finetune, cfg.model
    fit = with_relevance_negatives(train, ft.relevance_negatives, cfg.seed)
    log.info(
        "fine-tuning on %d triplets (%d with another instruction's response as negative)",
        len(fit),
        len(fit) - len(train),
    )
    base = registry.ensure_prepared(m.name, m.cache_dir)
    device = pick_device(m.device)
    torch.manual_seed(cfg.seed)
    model = SentenceTransformer(base, device=device, local_files_only=True)
    model.max_seq_length = m.max_seq_length
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=ft.lr)
    loss_fn = nn.TripletMarginWithDistanceLoss(
        distance_function=lambda x, y: 1.0 - nn.functional.cosine_similarity(x, y), margin=ft.margin
    )

    tokenize = getattr(model, "preprocess", None) or model.tokenize  # the newer name, where there is one

    def embed(texts: list[str], prefix: str):
        features = tokenize([prefix + t for t in texts])
        features = {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}
        return model(features)["sentence_embedding"]

    generator = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    steps = 0
    for _ in range(ft.epochs):
        order = torch.randperm(len(fit), generator=generator).tolist()
        for start in range(0, len(order), ft.batch_size):
            rows = fit.iloc[order[start : start + ft.batch_size]]
            loss = loss_fn(
                embed(rows["prompt"].tolist(), m.instruction_prefix),
                embed(rows["chosen"].tolist(), m.response_prefix),
                embed(rows["rejected"].tolist(), m.response_prefix),
            )
            optim.zero_grad()
            loss.backward()
            optim.step()
            losses.append(float(loss.detach()))
            steps += 1
            log.info("step %d: triplet loss %.5f", steps, losses[-1])
            if ft.max_steps and steps >= ft.max_steps:
                break
        if ft.max_steps and steps >= ft.max_steps:
            break
    model.eval()

    out = Path(cfg.output)
    manifest = {
        "kind": ENCODER_KIND,
        "mdaq_spark_version": __version__,
        "name": out.name,
        "base_model": m.name,
        "base_model_manifest": registry.manifest(base),
        "data": {**data_manifest(cfg, data, train, eval_seen, eval_unseen), "train_with_relevance": len(fit)},
        "hyperparameters": {**ft.model_dump(), "seed": cfg.seed, "mode": "full", "steps": steps},
        "train_losses": [round(x, 6) for x in losses],
    }
    with publish_dir(out) as tmp:
        model.save(str(tmp))
        (tmp / registry.MANIFEST).write_text(json.dumps(manifest, indent=2))

    # the fine-tuned encoder's cosine is this QSM's score; the base encoder's is the untrained baseline
    tuned = Embedder(m.model_copy(update={"name": str(out), "qsm_head": "none"}), cfg.encoding_cache, None)
    untrained = Embedder(m, cfg.encoding_cache, cfg.reuse_run)
    metrics = {}
    named = (("eval_seen_languages", eval_seen), ("eval_unseen_languages", eval_unseen))
    splits = {name: t for name, t in named if len(t)}
    for name, t in splits.items():
        ours = evaluate_splits({name: (t, *tuned.triplet_embeddings(t))}, None, cfg.seed)[name]
        base = evaluate_splits({name: (t, *untrained.triplet_embeddings(t))}, None, cfg.seed)[name]
        metrics[name] = {"qsm": ours["untrained_cosine"], **base}
    manifest["metrics"] = {s: {scorer: v["overall"] for scorer, v in r.items()} for s, r in metrics.items()}
    # the true response against another instruction's response: the fine-tuned cosine beside the base's
    ours = relevance_accuracy(splits, tuned, None, cfg.seed)
    base = relevance_accuracy(splits, untrained, None, cfg.seed)
    manifest["relevance_accuracy"] = {name: {"qsm": ours[name]["untrained_cosine"], **base[name]} for name in ours}
    (out / registry.MANIFEST).write_text(json.dumps(manifest, indent=2))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return {"output": str(out), "manifest": manifest, "metrics": metrics}
