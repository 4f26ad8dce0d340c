"""The dataset card (README.md) of a Parquet export: Hub metadata first, then what made the subset.

The YAML front matter is what `datasets` and the Hugging Face Hub read: the languages, and one
config per language besides the default one of every file, so `load_dataset(folder, "de")`
gives one language. The body is for people: counts per language, the budgets, the models'
fingerprints, and the command, config and commit that produced the selection. Everything
comes from the run's stats.json, so the card of one run is the same on every export.
"""

from __future__ import annotations

import json

import yaml

from mdaq_spark import schema as S
from mdaq_spark.config import ExportConfig

NO_LANGUAGE = "und"


def front_matter(files: dict[str, list[str]]) -> dict:
    """Hub metadata: languages (ISO codes, undetermined left out) and configs by file pattern."""
    configs = [{"config_name": "default", "default": True, "data_files": [{"split": "train", "path": "*.parquet"}]}]
    for lang, names in files.items():
        prefix = names[0].rsplit("-", 3)[0]
        configs.append({"config_name": lang, "data_files": [{"split": "train", "path": f"{prefix}-*.parquet"}]})
    return {
        "language": [lang for lang in files if lang != NO_LANGUAGE],
        "pretty_name": "mdaq-spark selection",
        "tags": ["mdaq-spark", "instruction-tuning", "multilingual"],
        "task_categories": ["text-generation"],
        "configs": configs,
    }


def _row(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _budget_line(selection: dict) -> str:
    if selection.get("budget_count") is not None:
        budget = f"{selection['budget_count']} samples per language"
    else:
        budget = f"{selection.get('budget_fraction')} of each language's candidates"
    line = (
        f"strategy `{selection.get('strategy')}`, budget {budget}, quality : diversity = "
        f"{selection.get('quality_parts')} : {selection.get('diversity_parts')}"
    )
    overrides = selection.get("budget_per_lang") or {}
    if overrides:
        line += "; per-language budgets: " + ", ".join(f"{k}: {v}" for k, v in sorted(overrides.items()))
    return line


def render(
    stats: dict, counts: dict[str, int], files: dict[str, list[str]], spec: ExportConfig, *, command: str | None
) -> str:
    cfg = stats.get("config", {})
    info = stats.get("stage_info", {})
    per_lang = stats.get("per_language", {})
    meta = yaml.safe_dump(front_matter(files), sort_keys=False, allow_unicode=True)
    lines = [
        "---",
        meta.rstrip("\n"),
        "---",
        "",
        "# mdaq-spark selection",
        "",
        f"{sum(counts.values())} instruction samples in {len(counts)} languages, chosen by mdaq-spark "
        f"{stats.get('mdaq_spark_version', '')} (M-DaQ: a Quality Scoring Model and diversity-aware selection "
        "over k-means clusters, per language). Each row is one conversation in `messages` (role, content; tool "
        "calls as JSON text)" + (", with the pipeline's fields under `mdaq`." if spec.with_metadata else "."),
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("parquet", data_files="<this folder>/*.parquet", split="train")',
        'de = load_dataset("<this folder>", "de", split="train")  # one language',
        "```",
        "",
        "## Languages",
        "",
        _row(["language", "rows", "candidates", "selected for quality", "selected for diversity", "files"]),
        _row(["---"] * 6),
    ]
    for lang, n in counts.items():
        entry = per_lang.get(lang, {})
        chosen = entry.get("selected", {})
        lines.append(
            _row(
                [
                    lang,
                    n,
                    entry.get("candidates", ""),
                    chosen.get(S.REASON_QUALITY, 0),
                    chosen.get(S.REASON_DIVERSITY, 0),
                    len(files.get(lang, [])),
                ]
            )
        )
    lines += [
        "",
        "## Budgets",
        "",
        _budget_line(cfg.get("selection", {})) + ".",
        "",
        "## Models",
        "",
        _row(["what", "value"]),
        _row(["---", "---"]),
        _row(["encoder", cfg.get("model", {}).get("name", "")]),
        _row(["encoder fingerprint", info.get("encode", {}).get(S.ENCODER_FINGERPRINT, "")]),
        _row(["QSM head", info.get("score", {}).get("qsm_head", "")]),
        _row(["QSM fingerprint", info.get("score", {}).get(S.MODEL_FINGERPRINT, "")]),
        "",
        "## How it was made",
        "",
        f"- run directory: `{stats.get('run_dir', '')}`, finished {stats.get('finished_at', '')}",
        f"- code commit: `{stats.get('code_commit') or 'unknown'}`",
        f"- run command: `{stats.get('command') or 'unknown'}`",
    ]
    if command:
        lines.append(f"- export command: `{command}`")
    lines += [
        "",
        "The run's configuration:",
        "",
        "```json",
        json.dumps(cfg, indent=2, ensure_ascii=False, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)
