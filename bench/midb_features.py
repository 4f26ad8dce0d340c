"""Encode every MIDB text once with the frozen encoder, keeping every layer's pooled state.

QSM experiments (heads on the last layer, heads on several layers, cross-validation, the
sanity contrasts) all read these features instead of running the encoder again: on 2 CPU
cores the encoder pass over MIDB takes over an hour, a head trains in seconds. The output
is a folder of chunks (`part-NNNNN.npz`: keys, last-layer embedding float32, all layers'
mean-pooled states float16), resumable: keys already written are skipped.

    python bench/midb_features.py --out /path/to/features            # all MIDB texts, then the sanity texts
    python bench/midb_features.py --out /path/to/features --seed-cache   # then copy them into train-qsm's cache
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from mdaq_spark.config import ModelConfig, TrainQsmConfig
from mdaq_spark.train.encodings import text_key
from mdaq_spark.train.features import FeatureStore
from mdaq_spark.train.midb import load_midb
from mdaq_spark.train.sanity import sanity_order, sanity_texts

log = logging.getLogger("midb_features")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--midb", default=str(Path(__file__).resolve().parents[2] / "shared/data/midb_train"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--seed-cache", action="store_true", help="copy the features into train-qsm's encoding cache")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from mdaq_spark.models.encoder import TextEncoder

    cfg = ModelConfig(device="cpu", qsm_head="none")
    records = load_midb(args.midb)
    ip, rp = cfg.instruction_prefix, cfg.response_prefix
    wanted: dict[str, tuple[str, str]] = {}
    # sources in a seeded order (the sanity sources first), all languages of a source together:
    # any prefix of the work is a sample of source records in every language, usable on its own
    rank = {s: i for i, s in enumerate(sanity_order(records))}
    records = records.assign(_rank=records["source"].map(rank).fillna(len(rank))).sort_values(["_rank", "lang"])
    for prefix, text in sanity_texts(records, ip, rp):
        wanted.setdefault(text_key(prefix, text), (prefix, text))
    for r in records.itertuples():
        for prefix, text in (
            (ip, r.revised_prompt),
            (ip, r.raw_prompt),
            (rp, r.revised_response),
            (rp, r.raw_response),
        ):
            wanted.setdefault(text_key(prefix, text), (prefix, text))
    if args.seed_cache:
        from mdaq_spark.models import registry
        from mdaq_spark.train.encodings import EncodingCache, seed_from_features

        train_model = TrainQsmConfig().model  # the settings `mdaq train-qsm` keys its cache by
        location = registry.ensure_prepared(train_model.name, train_model.cache_dir)
        cache_root = registry.cache_dir(train_model.cache_dir).parent / "qsm_encodings"
        cache = EncodingCache(cache_root, registry.encoder_fingerprint(location, train_model))
        log.info("encoding cache %s: %d added", cache.dir, seed_from_features(cache, Path(args.out)))
        return 0
    store = FeatureStore(Path(args.out))
    todo = sum(k not in store for k in wanted)
    log.info("%d texts wanted, %d already encoded, %d to do", len(wanted), len(wanted) - todo, todo)
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        rate = done / (time.perf_counter() - started)
        log.info("%d/%d texts (%.1f texts/s, about %.0f min left)", done, total, rate, (total - done) / rate / 60)

    store.fill(TextEncoder(cfg), wanted, args.chunk, progress)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
