"""Translated-copy grouping on MIDB, measured against the corpus's own ground truth.

MIDB's language files are translations of one English source list, record by record, so a
record's position names its source. Not exactly the same position, though: three of the ten
files lack one record (German, Czech and Portuguese have 2300 records, the others 2301), and
everything after the gap is shifted by one. Each shorter file is aligned to a full one by
the numbers its texts contain (numbers survive translation): the gap is where matching at
offset 0 gives way to matching at offset +1; records inside an ambiguous gap get no source.

    # a cosine threshold alone, and LSH settings, on the stored embeddings (a subset of sources: n x n in memory)
    python bench/midb_copies.py calibrate --run-dir runs/midb10_s4 --out bench/results/midb_copies_cosine.json
    # the job's rule (k nearest per language, cosine floor, ratio margin), exact, over every sample
    python bench/midb_copies.py rule --run-dir runs/midb10_s4 --out bench/results/midb_copies_rule.json
    # what a select run with copies.enabled did (run bench/reselect.py on a copy first)
    python bench/midb_copies.py evaluate --run-dir runs/midb10_copies --out bench/results/midb_copies_eval.json
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from mdaq_spark.train.midb import align

# the MIDB files: $MDAQ_SHARED_DATA/midb_train, else ../shared/data/midb_train beside the checkout
_SHARED = os.environ.get("MDAQ_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
MIDB = str(Path(_SHARED) / "midb_train")


def ground_truth(midb_dir: str = MIDB) -> tuple[dict[str, set[int]], dict]:
    """sample_id -> source indices (positions in the full-length files), and the alignment per file."""
    from mdaq_spark import schema as S
    from mdaq_spark.config import InputConfig
    from mdaq_spark.io import records as R
    from mdaq_spark.langcodes import language_code

    files = {
        language_code(Path(f).stem): json.loads(Path(f).read_text()) for f in sorted(glob.glob(f"{midb_dir}/*.json"))
    }
    reference = max(files.values(), key=len)
    settings = R.AdapterSettings(columns=InputConfig().columns, max_field_chars=InputConfig().max_field_chars)
    sources: dict[str, set[int]] = defaultdict(set)
    report = {}
    for lang, recs in files.items():
        mapping, how = align(recs, reference)
        report[lang] = {"records": len(recs), **how}
        for i, rec in enumerate(recs):
            if mapping[i] is None:
                continue
            for sample in R.midb(rec, settings):
                if isinstance(sample, R.Sample):
                    sid = S.compute_sample_id(sample.instruction, sample.input, sample.response, sample.history)
                    sources[sid].add(mapping[i])
    return dict(sources), report


def load_embeddings(run_dir: Path, encode_batch: int | None = None) -> pd.DataFrame:
    """sample_id, lang, embedding (unit vectors) from the run's scores store, or its encodings store.

    `encode_batch` keeps only the samples of one encode batch (a hash-chosen third of MIDB
    with the default 20000 rows per commit): a corpus where each source has fewer copies.
    """
    df = _load_embeddings(run_dir)
    if encode_batch is None:
        return df
    part = run_dir / "encodings" / f"batch={encode_batch:06d}"
    ids = set(
        ds.dataset(str(part), format="parquet", partitioning="hive")
        .to_table(columns=["sample_id"])
        .column(0)
        .to_pylist()
    )
    return df[df["sample_id"].isin(ids)].reset_index(drop=True)


def _load_embeddings(run_dir: Path) -> pd.DataFrame:
    scores = run_dir / "scores"
    if any(scores.glob("batch=*")):
        t = ds.dataset(str(scores), format="parquet", partitioning="hive").to_table(
            columns=["sample_id", "lang", "embedding"]
        )
        df = t.to_pandas()
        df["embedding"] = list(np.stack(df["embedding"].to_numpy()).astype(np.float32))
        return df
    t = ds.dataset(str(run_dir / "encodings"), format="parquet", partitioning="hive").to_table(
        columns=["sample_id", "lang", "prompt_embedding", "response_embedding"]
    )
    df = t.to_pandas()
    x = np.stack(df["prompt_embedding"].to_numpy()) + np.stack(df["response_embedding"].to_numpy())
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # as models.qsm.score_and_embed
    return pd.DataFrame({"sample_id": df["sample_id"], "lang": df["lang"], "embedding": list(x)})


def _true_pairs(ids: list[str], langs: list[str], sources: dict[str, set[int]]) -> set[tuple[int, int]]:
    by_source: dict[int, list[int]] = defaultdict(list)
    for k, sid in enumerate(ids):
        for s in sources.get(sid, ()):
            by_source[s].append(k)
    out = set()
    for members in by_source.values():
        for i, j in itertools.combinations(sorted(set(members)), 2):
            if langs[i] != langs[j]:
                out.add((i, j))
    return out


def calibrate(args) -> dict:
    from mdaq_spark.stages.prune.copies import band_keys, hyperplanes, project

    started = time.perf_counter()
    sources, alignment = ground_truth()
    df = load_embeddings(Path(args.run_dir), args.encode_batch)
    df = df[df["sample_id"].isin(sources)].sort_values("sample_id").reset_index(drop=True)
    # a seeded subset of sources keeps the all-pairs reference affordable
    rng = np.random.default_rng(args.seed)
    all_sources = sorted({s for sid in df["sample_id"] for s in sources[sid]})
    chosen = set(rng.choice(all_sources, size=min(args.sources, len(all_sources)), replace=False).tolist())
    df = df[[bool(sources[sid] & chosen) for sid in df["sample_id"]]].reset_index(drop=True)
    ids, langs = df["sample_id"].tolist(), df["lang"].tolist()
    x = np.stack(df["embedding"].to_numpy()).astype(np.float32)
    lang_arr = np.asarray(langs)
    truth = _true_pairs(ids, langs, sources)
    source = np.array([min(sources[s]) for s in ids])
    ti = np.array([p[0] for p in truth]), np.array([p[1] for p in truth])
    true_cos = np.einsum("ij,ij->i", x[ti[0]], x[ti[1]])
    xc = x.astype(np.float64) - x.astype(np.float64).mean(axis=0)
    xc /= np.linalg.norm(xc, axis=1, keepdims=True)
    true_cos_centred = np.einsum("ij,ij->i", xc[ti[0]], xc[ti[1]])
    sims = x @ x.T
    cross = (lang_arr[:, None] != lang_arr[None, :]) & np.triu(np.ones(sims.shape, dtype=bool), k=1)
    is_true = np.zeros(sims.shape, dtype=bool)
    is_true[ti] = True
    false_cos = sims[cross & ~is_true]
    # per sample: its best true partner and its best impostor in another language
    sym_true = is_true | is_true.T
    other_lang = lang_arr[:, None] != lang_arr[None, :]
    best_impostor = np.where(other_lang & ~sym_true, sims, -1).max(axis=1)
    best_partner = np.where(sym_true, sims, -1).max(axis=1)
    has_partner = sym_true.any(axis=1)

    def pct(v):
        return {str(q): round(float(np.percentile(v, q)), 4) for q in (1, 5, 10, 25, 50, 75, 90, 99)}

    sweep = {}
    for t in args.thresholds:
        predicted = cross & (sims >= t)
        tp = int((predicted & is_true).sum())
        pa, pb = np.nonzero(predicted)
        components = _group_scores(_components(len(ids), np.stack([pa, pb], axis=1)), lang_arr, source, len(truth), 2)
        sweep[str(t)] = {
            "pairs_found": int(predicted.sum()),
            "precision": round(tp / max(int(predicted.sum()), 1), 4),
            "recall": round(tp / len(truth), 4),
            "components": components,
        }

    # LSH: how many of the exact pairs at the threshold share a bucket, and at what comparison cost
    lsh = []
    for centre in (False, True):
        xc = x.astype(np.float64) - (x.astype(np.float64).mean(axis=0) if centre else 0.0)
        proj_all = project(xc, hyperplanes(args.seed, max(b for b, _ in args.lsh) + 1, x.shape[1]))
        for bits, bands in args.lsh:
            keys = band_keys(proj_all[:, :bits], bands)
            shared = np.zeros(sims.shape, dtype=bool)
            comparisons, largest = 0, 0
            for band in range(bands):
                _, inverse, counts = np.unique(keys[:, band], return_inverse=True, return_counts=True)
                shared |= inverse[:, None] == inverse[None, :]
                comparisons += int((counts * (counts - 1) // 2).sum())
                largest = max(largest, int(counts.max()))
            row = {
                "center": centre,
                "bits": bits,
                "bands": bands,
                "comparisons": comparisons,
                "largest_bucket": largest,
            }
            for t in args.thresholds:
                exact = cross & (sims >= t)
                row[f"recall_at_{t}"] = round(float((exact & shared).sum() / max(exact.sum(), 1)), 4)
                row[f"true_pair_recall_at_{t}"] = round(float((exact & shared & is_true).sum() / len(truth)), 4)
            lsh.append(row)
    # pyspark.ml's BucketedRandomProjectionLSH: one projection per table, OR across tables
    brp = []
    t_mid = args.thresholds[len(args.thresholds) // 2]
    exact = cross & (sims >= t_mid)
    for width in args.brp_widths:
        for tables in args.brp_tables:
            planes = hyperplanes(args.seed + 1, tables, x.shape[1])
            planes /= np.linalg.norm(planes, axis=1, keepdims=True)
            buckets = np.floor(project(x.astype(np.float64), planes) / width).astype(np.int64)
            shared = np.zeros(sims.shape, dtype=bool)
            for k in range(tables):
                shared |= buckets[:, k][:, None] == buckets[:, k][None, :]
            brp.append(
                {
                    "bucket_length": width,
                    "hash_tables": tables,
                    "share_of_cross_language_pairs_compared": round(float((shared & cross).sum() / cross.sum()), 4),
                    f"recall_at_{t_mid}": round(float((exact & shared).sum() / max(exact.sum(), 1)), 4),
                }
            )
    n = len(ids)
    return {
        "run_dir": args.run_dir,
        "samples": n,
        "sources": len(chosen),
        "languages": sorted(set(langs)),
        "true_cross_language_pairs": len(truth),
        "all_cross_language_pairs": int(cross.sum()),
        "alignment": alignment,
        "cosine_true_pairs": pct(true_cos),
        "cosine_other_pairs": pct(false_cos),
        "centred_cosine_true_pairs": pct(true_cos_centred),
        "other_pairs_above": {str(t): int((false_cos >= t).sum()) for t in args.thresholds},
        "best_partner_vs_best_impostor": {
            "samples_with_a_partner": int(has_partner.sum()),
            "partner_beats_impostor": round(float((best_partner > best_impostor)[has_partner].mean()), 4),
        },
        "threshold_sweep": sweep,
        "lsh": lsh,
        "bucketed_random_projection": brp,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _components(n: int, pairs: np.ndarray) -> np.ndarray:
    parent = np.arange(n)

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in pairs:
        ra, rb = root(int(a)), root(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(a) for a in range(n)])


def _group_scores(labels: np.ndarray, lang: np.ndarray, source: np.ndarray, n_true: int, max_langs: int) -> dict:
    """Pairs the groups imply (same group, other language) against the truth, and what pruning would remove."""
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    predicted = correct = grouped = groups = largest = pruned = 0
    for members in np.split(order, bounds):
        if len(members) < 2:
            continue
        groups += 1
        grouped += len(members)
        largest = max(largest, len(members))
        diff = np.triu(lang[members][:, None] != lang[members][None, :], 1)
        same = source[members][:, None] == source[members][None, :]
        predicted += int(diff.sum())
        correct += int((diff & same).sum())
        langs, counts = np.unique(lang[members], return_counts=True)
        pruned += int(np.sort(counts)[: max(len(langs) - max_langs, 0)].sum())  # a lower bound: keep the fullest
    return {
        "groups": groups,
        "grouped_samples": grouped,
        "largest_group": largest,
        "group_pair_precision": round(correct / max(predicted, 1), 4),
        "group_pair_recall": round(correct / max(n_true, 1), 4),
        f"pruned_at_most_{max_langs}_langs_min": pruned,
    }


def calibrate_rule(args) -> dict:
    """The copy rule (k nearest per language, cosine floor, ratio margin) with exact neighbours over every sample.

    Chunked over rows, so the all-pairs reference runs on the whole corpus without an n x n matrix.
    """
    from mdaq_spark.stages.prune.copies import band_keys, hyperplanes, project

    started = time.perf_counter()
    sources, _ = ground_truth()
    df = load_embeddings(Path(args.run_dir), args.encode_batch)
    df = df[df["sample_id"].isin(sources)].sort_values("sample_id").reset_index(drop=True)
    ids = df["sample_id"].tolist()
    lang = df["lang"].to_numpy().astype(str)
    source = np.array([min(sources[s]) for s in ids])
    x = np.stack(df["embedding"].to_numpy()).astype(np.float32)
    n, k = len(ids), args.neighbours
    langs = sorted(set(lang))
    cols = {name: np.flatnonzero(lang == name) for name in langs}
    li = np.array([langs.index(name) for name in lang])
    knn = np.zeros((n, len(langs)))
    found_a, found_b, found_c = [], [], []
    for start in range(0, n, args.chunk):
        rows = np.arange(start, min(start + args.chunk, n))
        sims = x[rows] @ x.T
        for t, name in enumerate(langs):
            c = cols[name]
            sub = sims[:, c]
            top = np.argpartition(-sub, k - 1, axis=1)[:, :k]
            vals = np.take_along_axis(sub, top, axis=1)
            other = lang[rows] != name
            knn[rows[other], t] = vals[other].sum(axis=1) / k
            keep = other[:, None] & (vals >= min(args.floors))
            r, q = np.nonzero(keep)
            found_a.append(rows[r])
            found_b.append(c[top[r, q]])
            found_c.append(vals[r, q])
    a, b, cos = np.concatenate(found_a), np.concatenate(found_b), np.concatenate(found_c).astype(np.float64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = lo.astype(np.int64) * n + hi
    _, first = np.unique(key, return_index=True)
    lo, hi, cos = lo[first], hi[first], cos[first]
    margin = cos / ((knn[lo, li[hi]] + knn[hi, li[lo]]) / 2)
    truth = _true_pairs(ids, lang.tolist(), sources)
    is_true = source[lo] == source[hi]
    sweep = []
    for floor in args.floors:
        for m in args.margins:
            sel = (cos >= floor) & (margin >= m)
            row = {
                "threshold": floor,
                "margin": m,
                "pairs": int(sel.sum()),
                "pair_precision": round(float(is_true[sel].mean()) if sel.any() else 0.0, 4),
                "pair_recall": round(float(is_true[sel].sum() / len(truth)), 4),
            }
            row.update(
                _group_scores(
                    _components(n, np.stack([lo[sel], hi[sel]], axis=1)), lang, source, len(truth), args.max_langs
                )
            )
            sweep.append(row)
    # LSH: which of the rule's pairs share a bucket, and how many comparisons the buckets cost
    best = (cos >= args.floors[0]) & (margin >= args.margins[len(args.margins) // 2])
    lsh = []
    xc = x.astype(np.float64)
    centre_rows = np.arange(
        min(n, args.center_sample)
    )  # rows are in sample_id (a hash) order: a fixed pseudo-random sample
    for center in (False, True):
        xx = xc - (xc[centre_rows].mean(axis=0) if center else 0.0)
        proj = project(xx, hyperplanes(args.seed, max(bits for bits, _ in args.lsh) + 1, x.shape[1]))
        for bits, bands in args.lsh:
            keys = band_keys(proj[:, :bits], bands)
            shared = np.zeros(int(best.sum()), dtype=bool)
            comparisons, largest = 0, 0
            for band in range(bands):
                shared |= keys[lo[best], band] == keys[hi[best], band]
                _, counts = np.unique(keys[:, band], return_counts=True)
                comparisons += int((counts.astype(np.int64) ** 2).sum() // 2)
                largest = max(largest, int(counts.max()))
            lsh.append(
                {
                    "center": center,
                    "bits": bits,
                    "bands": bands,
                    "comparisons_vs_all_pairs": round(comparisons / (n * (n - 1) / 2), 4),
                    "largest_bucket": largest,
                    "rule_pairs_sharing_a_bucket": round(float(shared.mean()), 4),
                    "true_rule_pairs_sharing_a_bucket": round(float(shared[is_true[best]].mean()), 4),
                }
            )
    return {
        "run_dir": args.run_dir,
        "samples": n,
        "languages": langs,
        "neighbours": k,
        "true_cross_language_pairs": len(truth),
        "cosine_true_pairs": {
            str(q): round(float(v), 4)
            for q, v in zip(
                (1, 5, 25, 50, 75, 95, 99),
                np.percentile(
                    np.einsum("ij,ij->i", x[[p[0] for p in truth]], x[[p[1] for p in truth]]),
                    (1, 5, 25, 50, 75, 95, 99),
                ),
                strict=False,
            )
        },
        "sweep": sweep,
        "lsh_for_rule_pairs": {
            "threshold": args.floors[0],
            "margin": args.margins[len(args.margins) // 2],
            "settings": lsh,
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def evaluate(args) -> dict:
    """Pairs implied by the copy groups of a finished select vs the ground truth, over the grouped pool."""
    started = time.perf_counter()
    run_dir = Path(args.run_dir)
    stats = json.loads((run_dir / "report" / "stats.json").read_text())
    copies_cfg = stats["config"]["copies"]
    sources, _ = ground_truth()
    cand = (
        ds.dataset(str(run_dir / "candidates"), format="parquet", partitioning="hive")
        .to_table(columns=["sample_id", "lang", "domain", "prune_reason", "copy_group", "copy_count"])
        .to_pandas()
    )
    # the pool the grouping saw: still in the running after flags and near-duplicates, in a grouped domain
    pool = cand[cand["prune_reason"].isna() | cand["prune_reason"].isin(["translated_copy", "domain_cap"])]
    if copies_cfg["domains"]:
        pool = pool[pool["domain"].isin(copies_cfg["domains"])]
    pool = pool.sort_values("sample_id").reset_index(drop=True)
    ids, langs = pool["sample_id"].tolist(), pool["lang"].tolist()
    truth = _true_pairs(ids, langs, sources)
    group = pool["copy_group"].tolist()
    by_group: dict[str, list[int]] = defaultdict(list)
    for k, g in enumerate(group):
        if g is not None:
            by_group[g].append(k)
    predicted = {
        (i, j) for members in by_group.values() for i, j in itertools.combinations(members, 2) if langs[i] != langs[j]
    }
    tp = len(predicted & truth)
    pure = sum(1 for members in by_group.values() if set.intersection(*[sources.get(ids[k], set()) for k in members]))
    sizes = pd.Series([len(m) for m in by_group.values()])
    nlangs = pd.Series([len({langs[k] for k in m}) for m in by_group.values()])
    return {
        "run_dir": str(run_dir),
        "copies_config": copies_cfg,
        "near_dup_enabled": stats["config"]["near_dup"]["enabled"],
        "pool": len(ids),
        "pool_with_known_source": sum(1 for s in ids if s in sources),
        "groups": len(by_group),
        "grouped_samples": int(sizes.sum()) if len(sizes) else 0,
        "group_size_distribution": {str(k): int(v) for k, v in sizes.value_counts().sort_index().items()},
        "group_languages_distribution": {str(k): int(v) for k, v in nlangs.value_counts().sort_index().items()},
        "groups_of_one_source": pure,
        "pruned_translated_copy": int((cand["prune_reason"] == "translated_copy").sum()),
        "pruned_by_reason": stats["pruning"]["pruned_by_reason"],
        "selected": stats["counts"]["selected"],
        "select_seconds": stats["stage_seconds"].get("select"),
        "pairs": {
            "true_cross_language_pairs_in_pool": len(truth),
            "predicted_pairs_in_groups": len(predicted),
            "precision": round(tp / max(len(predicted), 1), 4),
            "recall": round(tp / max(len(truth), 1), 4),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["calibrate", "rule", "evaluate"])
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--sources", type=int, default=600, help="calibrate: source records drawn (all their copies)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.85, 0.88, 0.9, 0.92, 0.95])
    parser.add_argument(
        "--lsh",
        nargs="+",
        default=["32x8", "36x12", "48x12", "64x16", "60x12", "64x8"],
        help="bits x bands settings to simulate",
    )
    parser.add_argument("--brp-widths", type=float, nargs="+", default=[0.01, 0.02, 0.05])
    parser.add_argument("--brp-tables", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--neighbours", type=int, default=4)
    parser.add_argument("--encode-batch", type=int, default=None, help="only the samples of this encode batch")
    parser.add_argument("--floors", type=float, nargs="+", default=[0.85, 0.88])
    parser.add_argument("--margins", type=float, nargs="+", default=[1.0, 1.01, 1.02, 1.03, 1.04])
    parser.add_argument("--max-langs", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=2000)
    parser.add_argument("--center-sample", type=int, default=10000)
    args = parser.parse_args()
    args.lsh = [tuple(int(v) for v in s.split("x")) for s in args.lsh]
    result = {"calibrate": calibrate, "rule": calibrate_rule, "evaluate": evaluate}[args.mode](args)
    result = {"command": "python " + " ".join(sys.argv), **result}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2)[:6000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
