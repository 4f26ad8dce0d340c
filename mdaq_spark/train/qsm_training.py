"""`mdaq train-qsm` / `mdaq eval-qsm`: data -> split -> encode (cached) -> train -> evaluate -> save.

The saved directory is self-describing: weights plus a manifest with the base encoder and
its fingerprint, the data files and counts, every hyperparameter, the training losses and
the evaluation metrics, and a fingerprint of the weights themselves (which keys the scores
a pipeline run stores).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pandas as pd

from mdaq_spark import __version__
from mdaq_spark.config import ModelConfig, TrainQsmConfig
from mdaq_spark.errors import ConfigError
from mdaq_spark.io.local_dirs import publish_dir
from mdaq_spark.models import registry
from mdaq_spark.models.encoder import pick_device
from mdaq_spark.models.qsm import HEAD_MANIFEST, HEAD_WEIGHTS, QsmHead, precision_class
from mdaq_spark.train.embedder import Embedder, evaluate_splits, relevance_accuracy
from mdaq_spark.train.finetune import ENCODER_KIND
from mdaq_spark.train.triplets import bucket, data_manifest, load_triplets, split, with_relevance_negatives

log = logging.getLogger(__name__)


def _cap_per_language(df: pd.DataFrame, cap: int | None, seed: int) -> pd.DataFrame:
    if cap is None:
        return df
    order = df["group"].map(lambda g: bucket(g, seed + 1))
    return df.assign(_o=order).sort_values(["lang", "_o"]).groupby("lang").head(cap).drop(columns="_o")


def _save_head(tensors: dict, manifest: dict, out: Path) -> str:
    from safetensors.numpy import save_file

    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode() + tensors[name].tobytes())
    manifest = {**manifest, "fingerprint": h.hexdigest()[:16]}
    with publish_dir(out) as tmp:
        save_file(tensors, str(tmp / HEAD_WEIGHTS))
        (tmp / HEAD_MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return manifest["fingerprint"]


def train_qsm(cfg: TrainQsmConfig) -> dict:
    if not cfg.data or not cfg.output:
        raise ConfigError("train-qsm needs --data (MIDB or triplet files) and --output (the QSM directory to write)")
    data = load_triplets(cfg.data, cfg.max_records_per_file)
    train, eval_seen, eval_unseen = split(data.triplets, cfg.eval_fraction, cfg.holdout_langs, cfg.seed)
    train = _cap_per_language(train, cfg.max_per_lang, cfg.seed)
    log.info(
        "triplets: %d usable (%d identical skipped, %d malformed, %d without a source record); "
        "train %d, eval seen %d, eval unseen %d",
        len(data.triplets),
        data.skipped_identical,
        data.skipped_malformed,
        data.no_group,
        len(train),
        len(eval_seen),
        len(eval_unseen),
    )
    if cfg.mode == "full":
        from mdaq_spark.train.finetune import finetune_encoder

        return finetune_encoder(cfg, train, eval_seen, eval_unseen, data)

    layers = tuple(cfg.layer_head.layers) if cfg.mode == "layers" else ()
    embedder = Embedder(cfg.model, cfg.encoding_cache, cfg.reuse_run, layers, cfg.feature_store)
    emb = {
        name: (t, *embedder.triplet_embeddings(t))
        for name, t in (("train", train), ("eval_seen_languages", eval_seen), ("eval_unseen_languages", eval_unseen))
    }
    if layers:
        from mdaq_spark.train.layer_head import train_layer_head

        _, a, p, n, lp, ln = emb["train"]
        fitted = train_layer_head(a, p, n, lp, ln, cfg.layer_head, cfg.seed)
        head, tensors, losses = fitted.head(), fitted.tensors, fitted.losses
        hyperparameters = {**cfg.layer_head.model_dump(), "seed": cfg.seed, "mode": "layers"}
    else:
        from mdaq_spark.train.head import train_head

        fit = with_relevance_negatives(train, cfg.head.relevance_negatives, cfg.seed)
        _, a, p, n = (fit, *embedder.triplet_embeddings(fit)) if len(fit) > len(train) else emb["train"]
        trained = train_head(a, p, n, cfg.head, cfg.seed)
        tensors = {
            "prompt.weight": trained.prompt_weight,
            "prompt.bias": trained.prompt_bias,
            "response.weight": trained.response_weight,
            "response.bias": trained.response_bias,
        }
        head, losses = QsmHead.from_tensors(tensors, {}), trained.losses
        hyperparameters = {**cfg.head.model_dump(), "seed": cfg.seed, "mode": "head"}
    metrics = evaluate_splits(emb, head, cfg.seed)
    relevance = relevance_accuracy({name: t for name, (t, *_) in emb.items()}, embedder, head, cfg.seed)
    manifest = {
        "kind": "mdaq-qsm-layer-head" if layers else "mdaq-qsm-head",
        "mdaq_spark_version": __version__,
        "base_model": cfg.model.name,
        "base_model_manifest": registry.manifest(embedder.location),
        "encoder_fingerprint": embedder.fingerprint,
        "prefixes": {"instruction": cfg.model.instruction_prefix, "response": cfg.model.response_prefix},
        "max_seq_length": cfg.model.max_seq_length,
        "precision_class": precision_class(cfg.model.dtype, pick_device(cfg.model.device)),
        **({"layers": list(layers)} if layers else {}),
        **({"quality_gate": head.manifest["quality_gate"]} if "quality_gate" in head.manifest else {}),
        "data": data_manifest(cfg, data, train, eval_seen, eval_unseen),
        "hyperparameters": hyperparameters,
        "train_losses": [round(x, 6) for x in losses],
        "metrics": {s: {scorer: m["overall"] for scorer, m in r.items()} for s, r in metrics.items()},
        "relevance_accuracy": relevance,
    }
    out = Path(cfg.output)
    manifest["fingerprint"] = _save_head(tensors, manifest, out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return {"output": str(out), "manifest": manifest, "metrics": metrics}


TRAIN_GROUPS_FILE = "train_groups.txt"


def trained_groups(head_dir: str | None) -> set[str]:
    """The groups (MIDB source records) a head was trained on; empty for none.

    Heads list them in their manifest. A head trained before that keeps them in a text file
    beside it (one group per line, `#` comments), so adding them changed no manifest byte and
    with it no fingerprint of the scores the head gave.
    """
    if not head_dir:
        return set()
    groups = _listed_groups(_read_manifest(Path(head_dir) / HEAD_MANIFEST))
    listed = Path(head_dir) / TRAIN_GROUPS_FILE
    if listed.is_file():
        lines = (line.strip() for line in listed.read_text(encoding="utf-8").splitlines())
        groups |= {line for line in lines if line and not line.startswith("#")}
    return groups


def encoder_trained_groups(model_name: str) -> set[str]:
    """The groups a fine-tuned encoder (a directory written by mode "full") was trained on; empty otherwise."""
    manifest = _read_manifest(Path(model_name) / registry.MANIFEST)
    return _listed_groups(manifest) if manifest.get("kind") == ENCODER_KIND else set()


def _read_manifest(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _listed_groups(manifest: dict) -> set[str]:
    return set(manifest.get("data", {}).get("train_groups") or [])


def eval_qsm(
    data_paths: list[str],
    model_cfg: ModelConfig,
    cache_root: str | None,
    reuse_run: str | None,
    seed: int,
    max_records_per_file: int | None = None,
    include_trained: bool = False,
    feature_store: str | None = None,
) -> dict:
    """Metrics of one QSM (encoder + head, or the bare encoder) on usable triplets, with the baselines.

    Triplets of a group the head or fine-tuned encoder was trained on (a MIDB source record in
    any language) are left out unless `include_trained`: they would measure memory, not quality.
    """
    data = load_triplets(data_paths, max_records_per_file)
    head_dir = registry.resolve_head(model_cfg.qsm_head, model_cfg.name)
    head = QsmHead.load(head_dir) if head_dir else None
    embedder = Embedder(model_cfg, cache_root, reuse_run, head.layers if head else (), feature_store)
    t = data.triplets
    # a fine-tuned encoder (train-qsm --mode full) lists its training records in its own manifest
    trained = set() if include_trained else trained_groups(head_dir) | encoder_trained_groups(model_cfg.name)
    seen = t["group"].isin(trained)
    if seen.any():
        log.warning("left out %d triplets whose source record the QSM was trained on", int(seen.sum()))
    t = t[~seen].reset_index(drop=True)
    if t.empty:
        raise ConfigError("every triplet shares a source record with the head's training data: nothing to evaluate")
    return {
        "qsm_head": head_dir,
        "encoder_fingerprint": embedder.fingerprint,
        "excluded_trained": int(seen.sum()),
        "evaluated": len(t),
        "metrics": evaluate_splits({"all": (t, *embedder.triplet_embeddings(t))}, head, seed),
    }
