"""A realistic multilingual instruction corpus of any size, grown from the real MIDB records.

    python bench/make_corpus.py --rows 1000000 --out runs/corpus_1m [--seed 7] [--shard-rows 50000]
    python bench/make_corpus.py --rows 50000 --turns 4 --out runs/corpus_50k_4turns   # conversations

Why not just repeat MIDB: repeated rows are exact duplicates (the job quarantines them) and
would not exercise the encoder, clustering or selection at scale. Each generated row takes
a real MIDB sample (raw or revised variant, any of the 10 languages) and replaces one of
its response's sentences with a sentence from another sample of the same language, so
rows are unique, every text stays in its language, and the length distribution is MIDB's
(a sentence is swapped for a sentence, not added). On top of that, as a real crawl has:
- three record shapes: Alpaca (most), ShareGPT conversations and OpenAI messages, JSONL;
- ~1% bad rows of several kinds (BAD_KINDS: invalid JSON, invalid UTF-8, empty or missing
  fields, wrong types, unknown shape, an over-long field), each a quarantine row for the job;
- ~0.5% exact duplicates of a recent row.

`--turns N` (N > 1) makes every good row a conversation (ShareGPT or OpenAI, half each) of N
exchanges, each a generated sample of the row's language as above: a corpus for what scoring
every turn costs. Deterministic by seed (same arguments -> same bytes) and streaming: rows are written as they
are made, shard by shard, so memory holds only the MIDB pool, never the corpus. A
`MANIFEST` (JSON) beside the shards counts rows by kind, language and shape.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter, deque
from pathlib import Path

DEFAULT_MIDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "midb_train"
MANIFEST = "MANIFEST"  # JSON, but no .json suffix: the job reads every *.json in the folder

BAD_FRACTION = 0.01
DUPLICATE_FRACTION = 0.005
DUPLICATE_WINDOW = 2000  # a duplicate copies one of this many most recent good rows
SHAPES = (("alpaca", 0.8), ("sharegpt", 0.1), ("openai", 0.1))
# kind -> relative weight among bad rows; an over-long field is rare (and 200 kB each)
BAD_KINDS = {
    "invalid_json": 1.0,
    "invalid_utf8": 1.0,
    "empty_instruction": 1.0,
    "empty_response": 1.0,
    "missing_response": 1.0,
    "wrong_type": 1.0,
    "unknown_shape": 1.0,
    "too_long": 0.05,
}
TOO_LONG_CHARS = 200_001  # just over the job's default input.max_field_chars

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


def _lang_code(stem: str) -> str:
    from mdaq_spark.langcodes import language_code

    return language_code(stem)


def load_pool(midb_dir: Path) -> dict[str, list[tuple[str, str, str]]]:
    """lang -> [(instruction, input, response)] over both MIDB variants, complete samples only."""
    pool: dict[str, list[tuple[str, str, str]]] = {}
    for path in sorted(midb_dir.glob("*.json")):
        records = json.loads(path.read_text(encoding="utf-8"))
        samples = pool.setdefault(_lang_code(path.stem), [])
        for r in records:
            for variant in ("Raw", "Revised"):
                ins, inp, out = (r.get(f"{variant} {f}") for f in ("Instruction", "Input", "Response"))
                if isinstance(ins, str) and isinstance(out, str) and ins.strip() and out.strip():
                    samples.append((ins, inp if isinstance(inp, str) else "", out))
    if not pool:
        raise SystemExit(f"no MIDB *.json files in {midb_dir}")
    return pool


def _sentences(pool: dict[str, list[tuple[str, str, str]]]) -> dict[str, list[str]]:
    return {
        lang: [s for _, _, out in samples for s in _SENTENCE_END.split(out) if len(s) > 3]
        for lang, samples in pool.items()
    }


def _perturb(response: str, sentences: list[str], rng: random.Random) -> str:
    parts = _SENTENCE_END.split(response)
    parts[rng.randrange(len(parts))] = sentences[rng.randrange(len(sentences))]
    return " ".join(parts)


def _shape(lang: str, ins: str, inp: str, out: str, shape: str) -> dict:
    if shape == "alpaca":
        return {"instruction": ins, "input": inp, "output": out, "lang": lang}
    prompt = f"{ins}\n\n{inp}" if inp else ins
    if shape == "sharegpt":
        return {"conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": out}], "lang": lang}
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": out}], "lang": lang}


def _conversation(lang: str, exchanges: list[tuple[str, str, str]], shape: str) -> dict:
    turns = []
    for ins, inp, out in exchanges:
        prompt = f"{ins}\n\n{inp}" if inp else ins
        if shape == "sharegpt":
            turns += [{"from": "human", "value": prompt}, {"from": "gpt", "value": out}]
        else:
            turns += [{"role": "user", "content": prompt}, {"role": "assistant", "content": out}]
    return {("conversations" if shape == "sharegpt" else "messages"): turns, "lang": lang}


def _dumps(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


def _bad(kind: str, lang: str, ins: str, inp: str, out: str) -> bytes:
    good = {"instruction": ins, "input": inp, "output": out, "lang": lang}
    if kind == "invalid_json":
        text = json.dumps(good, ensure_ascii=False)
        # cut off mid-record, as a torn write leaves it (on a character boundary: still valid UTF-8)
        return text[: max(1, len(text) // 2)].encode("utf-8")
    if kind == "invalid_utf8":
        return _dumps(good).replace(b'"output": "', b'"output": "\xff\xfe', 1)
    if kind == "empty_instruction":
        return _dumps({**good, "instruction": "  "})
    if kind == "empty_response":
        return _dumps({**good, "output": ""})
    if kind == "missing_response":
        return _dumps({k: v for k, v in good.items() if k != "output"})
    if kind == "wrong_type":
        return _dumps({**good, "instruction": 12345})
    if kind == "unknown_shape":
        return _dumps({"text": f"{ins}\n{out}", "lang": lang})
    if kind == "too_long":
        return _dumps({**good, "output": (out + " ") * (TOO_LONG_CHARS // (len(out) + 1) + 1)})
    raise ValueError(kind)


def generate(rows: int, out_dir: Path, seed: int, shard_rows: int, midb_dir: Path, turns: int = 1) -> dict:
    rng = random.Random(seed)
    pool = load_pool(midb_dir)
    sentences = _sentences(pool)
    langs = sorted(pool)
    shapes, shape_weights = zip(*SHAPES, strict=True)
    bad_kinds, bad_weights = zip(*BAD_KINDS.items(), strict=True)
    counts: Counter[str] = Counter()
    by_lang: Counter[str] = Counter()
    by_shape: Counter[str] = Counter()
    recent: deque[bytes] = deque(maxlen=DUPLICATE_WINDOW)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("part-*.jsonl"):
        old.unlink()
    written = 0
    shard = 0
    while written < rows:
        n = min(shard_rows, rows - written)
        path = out_dir / f"part-{shard:05d}.jsonl"
        with path.open("wb") as f:
            for _ in range(n):
                lang = langs[rng.randrange(len(langs))]
                ins, inp, out = pool[lang][rng.randrange(len(pool[lang]))]
                out = _perturb(out, sentences[lang], rng)
                draw = rng.random()
                if draw < BAD_FRACTION:
                    kind = rng.choices(bad_kinds, bad_weights)[0]
                    line = _bad(kind, lang, ins, inp, out)
                    counts[f"bad:{kind}"] += 1
                elif draw < BAD_FRACTION + DUPLICATE_FRACTION and recent:
                    line = recent[rng.randrange(len(recent))]
                    counts["duplicate"] += 1
                elif turns > 1:
                    shape = ("sharegpt", "openai")[rng.randrange(2)]
                    more = [pool[lang][rng.randrange(len(pool[lang]))] for _ in range(turns - 1)]
                    more = [(i, n, _perturb(o, sentences[lang], rng)) for i, n, o in more]
                    line = _dumps(_conversation(lang, [(ins, inp, out), *more], shape))
                    recent.append(line)
                    counts["good"] += 1
                    by_lang[lang] += 1
                    by_shape[shape] += 1
                else:
                    shape = rng.choices(shapes, shape_weights)[0]
                    line = _dumps(_shape(lang, ins, inp, out, shape))
                    recent.append(line)
                    counts["good"] += 1
                    by_lang[lang] += 1
                    by_shape[shape] += 1
                f.write(line + b"\n")
        written += n
        shard += 1
    manifest = {
        "rows": rows,
        "seed": seed,
        "turns": turns,
        "shards": shard,
        "good": counts["good"],
        "duplicates": counts["duplicate"],
        "bad": {k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("bad:")},
        "good_by_lang": dict(sorted(by_lang.items())),
        "good_by_shape": dict(sorted(by_shape.items())),
        "midb_pool": {lang: len(s) for lang, s in sorted(pool.items())},
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", required=True, help="output folder (outside the repository)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--shard-rows", type=int, default=50_000)
    parser.add_argument("--midb", default=str(DEFAULT_MIDB))
    parser.add_argument("--turns", type=int, default=1, help="exchanges per good row (>1: conversations only)")
    args = parser.parse_args(argv)
    manifest = generate(args.rows, Path(args.out), args.seed, args.shard_rows, Path(args.midb), args.turns)
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
