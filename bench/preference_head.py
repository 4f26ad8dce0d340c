"""A QSM layer head trained on both contrasts: MIDB's revision-vs-MT and OpenAssistant's human preference.

The shipped head learned one contrast (expert revision vs raw machine translation) and does
not prefer what people prefer. This trains, with the shipped design's settings and nothing
tuned, two heads on the same sample of MIDB source records the shipped head trained on:

- `midb-sample`: the MIDB triplets alone (the control: what a head on this little MIDB gives);
- `midb-sample+oasst`: the same triplets plus every ranked sibling pair of the TRAINING trees
  of bench/oasst_preference.py's split (anchor: the conversation before the reply, cut from
  the left; positive: the better-ranked reply; negative: the worse-ranked one).

Judge them with `--head NAME=DIR` in bench/oasst_preference.py (held-out trees) and
bench/multiturn_midb.py (MIDB sources no head trained on). The MIDB sample is small because
the encoder pass is the cost on a CPU; a head on all of MIDB plus OpenAssistant is the same
script with `--sources 0` (all training sources).

    python bench/preference_head.py --out bench/heads
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import pandas as pd
from conversations import sibling_pairs, split_trees
from exchange_scoring import FEATURES_DIR, IP, RP, SHIPPED_HEAD, ExchangeScorer
from oasst_preference import DATA, read_trees

from mdaq_spark.config import LayerHeadTrainConfig
from mdaq_spark.models.qsm import HEAD_MANIFEST, HEAD_WEIGHTS
from mdaq_spark.report.stats import code_commit
from mdaq_spark.train import crossval as cv
from mdaq_spark.train.encodings import text_key
from mdaq_spark.train.layer_head import train_layer_head
from mdaq_spark.train.midb import load_midb
from mdaq_spark.train.qsm_training import trained_groups

MIDB = Path(__file__).resolve().parents[2] / "shared/data/midb_train"
log = logging.getLogger("preference_head")
KEPT_MANIFEST = ("kind", "mdaq_spark_version", "base_model", "base_model_manifest", "encoder_fingerprint", "prefixes")
KEPT_MANIFEST += ("max_seq_length", "precision_class")


def save(tensors: dict, manifest: dict, out: Path) -> None:
    from safetensors.numpy import save_file

    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode() + tensors[name].tobytes())
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / HEAD_WEIGHTS))
    (out / HEAD_MANIFEST).write_text(json.dumps({**manifest, "fingerprint": h.hexdigest()[:16]}, indent=2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--midb", default=str(MIDB))
    ap.add_argument("--oasst", default=str(DATA))
    ap.add_argument("--out", required=True, help="folder for the two heads")
    ap.add_argument("--features", default=str(FEATURES_DIR))
    ap.add_argument("--sources", type=int, default=150, help="MIDB training source records to sample (0: all)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--test-fraction", type=float, default=0.5)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    commit = code_commit()  # read before the run: a commit made while it runs is not it
    import torch

    torch.set_num_threads(1)
    shipped_groups = trained_groups(str(SHIPPED_HEAD))
    records = load_midb(args.midb)
    records = records[records["source"].notna()]
    records = records[records["revised_response"].str.strip() != records["raw_response"].str.strip()]
    sources = sorted({int(g.split(":")[1]) for g in shipped_groups if g.startswith("midb:")})
    if args.sources:
        sources = sorted(sources, key=lambda s: cv._rank(str(s), args.seed))[: args.sources]
    midb = records[records["source"].isin(sources)].reset_index(drop=True)
    trees = read_trees(Path(args.oasst))
    train_trees, _ = split_trees([t["message_tree_id"] for t in trees], args.seed, args.test_fraction)
    pairs = [p for t in trees if t["message_tree_id"] in train_trees for p in sibling_pairs(t)]
    scorer = ExchangeScorer(Path(args.features), {})

    def full(context: list[dict], reply: str) -> str:
        turns = [*context, {"role": "assistant", "content": reply}]
        return scorer.texts(turns)[-1].instruction

    oasst = pd.DataFrame(
        {
            "prompt": [full(p["context"], p["better"]) for p in pairs],
            "chosen": [p["better"] for p in pairs],
            "rejected": [p["worse"] for p in pairs],
        }
    )
    midb_t = pd.DataFrame(
        {"prompt": midb["revised_prompt"], "chosen": midb["revised_response"], "rejected": midb["raw_response"]}
    )
    log.info("%d MIDB triplets of %d sources, %d OpenAssistant pairs of %d training trees", len(midb_t),
             len(sources), len(oasst), len(train_trees))  # fmt: skip
    both = pd.concat([midb_t, oasst], ignore_index=True)
    scorer.encode(both["prompt"].tolist(), both["chosen"].tolist() + both["rejected"].tolist())
    params = LayerHeadTrainConfig()
    shipped_manifest = json.loads((SHIPPED_HEAD / HEAD_MANIFEST).read_text())
    store = scorer.store
    summary = {}
    for name, data in (("midb-sample", midb_t), ("midb-sample+oasst", both)):
        a = store.embeddings([text_key(IP, x) for x in data["prompt"]])
        pk = [text_key(RP, x) for x in data["chosen"]]
        nk = [text_key(RP, x) for x in data["rejected"]]
        trained = train_layer_head(
            a,
            store.embeddings(pk),
            store.embeddings(nk),
            store.layers(pk, params.layers),
            store.layers(nk, params.layers),
            params,
            args.seed,
        )
        manifest = {k: shipped_manifest[k] for k in KEPT_MANIFEST if k in shipped_manifest}
        manifest.update({"layers": list(trained.layers), "quality_gate": trained.gate})
        manifest["data"] = {
            "train_groups": sorted(f"midb:{s}" for s in sources),
            "midb_triplets": len(midb_t),
            "oasst_pairs": len(oasst) if "oasst" in name else 0,
            "oasst_training_trees": sorted(train_trees) if "oasst" in name else [],
            "split_seed": args.seed,
            "layer_head": params.model_dump(),
            "commit": commit,
        }
        save(trained.tensors, manifest, Path(args.out) / name)
        summary[name] = {"rows": len(data), "final_loss": trained.losses[-1]}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
