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

import numpy as np
import pandas as pd

from mdaq_spark import __version__
from mdaq_spark.config import ModelConfig, TrainQsmConfig
from mdaq_spark.errors import ConfigError
from mdaq_spark.io.local_dirs import publish_dir
from mdaq_spark.models import registry
from mdaq_spark.models.encoder import pick_device
from mdaq_spark.models.qsm import HEAD_MANIFEST, HEAD_WEIGHTS, QsmHead, precision_class, score_and_embed
from mdaq_spark.train import evaluate as ev
from mdaq_spark.train.encodings import EncodingCache, encode_texts, seed_from_run, text_key
from mdaq_spark.train.triplets import bucket, load_triplets, split

log = logging.getLogger(__name__)


class _Embedder:
    """Frozen-encoder embeddings of triplet texts through the on-disk cache; loads the model only if needed."""

    def __init__(self, model_cfg: ModelConfig, cache_root: str | None, reuse_run: str | None) -> None:
        self.cfg = model_cfg
        self.location = registry.ensure_prepared(model_cfg.name, model_cfg.cache_dir)
        self.fingerprint = registry.encoder_fingerprint(self.location, model_cfg)
        root = Path(cache_root) if cache_root else registry.cache_dir(model_cfg.cache_dir).parent / "qsm_encodings"
        self.cache = EncodingCache(root, self.fingerprint)
        if reuse_run:
            seed_from_run(self.cache, Path(reuse_run), model_cfg.instruction_prefix, model_cfg.response_prefix)
        self._encoder = None

    @property
    def encoder(self):
        if self._encoder is None:
            from mdaq_spark.models.encoder import TextEncoder

            self._encoder = TextEncoder(self.cfg, self.location)
        return self._encoder

    def triplet_embeddings(self, t: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ip, rp = self.cfg.instruction_prefix, self.cfg.response_prefix
        missing = len(
            self.cache.missing([*_keys(t["prompt"], ip), *_keys(t["chosen"], rp), *_keys(t["rejected"], rp)])
        )
        enc = self.encoder if missing else None
        return (
            encode_texts(self.cache, enc, t["prompt"].tolist(), ip),
            encode_texts(self.cache, enc, t["chosen"].tolist(), rp),
            encode_texts(self.cache, enc, t["rejected"].tolist(), rp),
        )


def _keys(texts: pd.Series, prefix: str) -> list[str]:
    return [text_key(prefix, x) for x in texts]


def _gap(a: np.ndarray, p: np.ndarray, n: np.ndarray, head: QsmHead | None) -> np.ndarray:
    return score_and_embed(a, p, head)[0] - score_and_embed(a, n, head)[0]


def _cap_per_language(df: pd.DataFrame, cap: int | None, seed: int) -> pd.DataFrame:
    if cap is None:
        return df
    order = df["group"].map(lambda g: bucket(g, seed + 1))
    return df.assign(_o=order).sort_values(["lang", "_o"]).groupby("lang").head(cap).drop(columns="_o")


def _evaluate_splits(splits: dict[str, tuple], head: QsmHead | None, seed: int) -> dict:
    out = {}
    for name, (t, a, p, n) in splits.items():
        if len(t) == 0:
            continue
        gaps = {"qsm": _gap(a, p, n, head)} if head is not None else {}
        gaps["untrained_cosine"] = _gap(a, p, n, None)
        gaps.update(ev.baseline_gaps(t, seed))
        out[name] = ev.evaluate(t, gaps)
    return out


def _save_head(trained, manifest: dict, out: Path) -> str:
    from safetensors.numpy import save_file

    tensors = {
        "prompt.weight": trained.prompt_weight,
        "prompt.bias": trained.prompt_bias,
        "response.weight": trained.response_weight,
        "response.bias": trained.response_bias,
    }
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

    embedder = _Embedder(cfg.model, cfg.encoding_cache, cfg.reuse_run)
    emb = {
        name: (t, *embedder.triplet_embeddings(t))
        for name, t in (("train", train), ("eval_seen_languages", eval_seen), ("eval_unseen_languages", eval_unseen))
    }
    from mdaq_spark.train.head import train_head

    _, a, p, n = emb["train"]
    trained = train_head(a, p, n, cfg.head, cfg.seed)
    head = QsmHead(trained.prompt_weight, trained.prompt_bias, trained.response_weight, trained.response_bias, {})
    metrics = _evaluate_splits(emb, head, cfg.seed)
    manifest = {
        "kind": "mdaq-qsm-head",
        "mdaq_spark_version": __version__,
        "base_model": cfg.model.name,
        "base_model_manifest": registry.manifest(embedder.location),
        "encoder_fingerprint": embedder.fingerprint,
        "prefixes": {"instruction": cfg.model.instruction_prefix, "response": cfg.model.response_prefix},
        "max_seq_length": cfg.model.max_seq_length,
        "precision_class": precision_class(cfg.model.dtype, pick_device(cfg.model.device)),
        "data": {
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
        },
        "hyperparameters": {**cfg.head.model_dump(), "seed": cfg.seed, "mode": "head"},
        "train_losses": [round(x, 6) for x in trained.losses],
        "metrics": {s: {scorer: m["overall"] for scorer, m in r.items()} for s, r in metrics.items()},
    }
    out = Path(cfg.output)
    manifest["fingerprint"] = _save_head(trained, manifest, out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return {"output": str(out), "manifest": manifest, "metrics": metrics}


def trained_groups(head_dir: str | None) -> set[str]:
    """The groups (MIDB source records) a head's manifest says it was trained on; empty for none."""
    if not head_dir:
        return set()
    manifest = Path(head_dir) / HEAD_MANIFEST
    if not manifest.is_file():
        return set()
    return set(json.loads(manifest.read_text()).get("data", {}).get("train_groups") or [])


def eval_qsm(
    data_paths: list[str],
    model_cfg: ModelConfig,
    cache_root: str | None,
    reuse_run: str | None,
    seed: int,
    max_records_per_file: int | None = None,
    include_trained: bool = False,
) -> dict:
    """Metrics of one QSM (encoder + head, or the bare encoder) on usable triplets, with the baselines.

    Triplets of a group the head was trained on (a MIDB source record in any language) are left
    out unless `include_trained`: they would measure memory, not quality.
    """
    data = load_triplets(data_paths, max_records_per_file)
    embedder = _Embedder(model_cfg, cache_root, reuse_run)
    head_dir = registry.resolve_head(model_cfg.qsm_head, model_cfg.name)
    head = QsmHead.load(head_dir) if head_dir else None
    t = data.triplets
    trained = set() if include_trained else trained_groups(head_dir)
    seen = t["group"].isin(trained)
    if seen.any():
        log.warning("left out %d triplets whose source record the head was trained on", int(seen.sum()))
    t = t[~seen].reset_index(drop=True)
    if t.empty:
        raise ConfigError("every triplet shares a source record with the head's training data: nothing to evaluate")
    return {
        "qsm_head": head_dir,
        "encoder_fingerprint": embedder.fingerprint,
        "excluded_trained": int(seen.sum()),
        "evaluated": len(t),
        "metrics": _evaluate_splits({"all": (t, *embedder.triplet_embeddings(t))}, head, seed),
    }
