"""The dataset card (README.md) of an export: Hub metadata first, then what made the subset.

The YAML front matter is what `datasets` and the Hugging Face Hub read: the license, the size
bucket, the languages, the features of every record (so a JSON Lines folder loads with the same
types whatever its first file holds, see io/export_schema.py), and one config per language
besides the default one of every file, so `load_dataset(folder, "de")` gives one language. The
data files sit in data/, below the card. The body is for people: counts per language, the
budgets, the models' fingerprints, and the command, config and commit that produced the
selection. Everything comes from the run's stats.json, so the card of one run is the same on
every export; local paths are written as their last part only, since a card is made to leave
the machine.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import PurePosixPath, PureWindowsPath

import yaml

from mdaq_spark import schema as S
from mdaq_spark.config import ExportConfig
from mdaq_spark.io.export_schema import DATA_DIR, JSON_TEXT, export_schema, features_yaml
from mdaq_spark.report.run_stats import RunStats

NO_LANGUAGE = "und"
# the Hub's size buckets: (upper bound, label), the last open-ended
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
    (100_000_000_000, "10B<n<100B"),
    (1_000_000_000_000, "100B<n<1T"),
)
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def size_category(rows: int) -> str:
    return next((label for bound, label in SIZE_CATEGORIES if rows < bound), "n>1T")


def _is_path(text: str) -> bool:
    return bool(_URI.match(text)) or text.startswith(("/", "~")) or PureWindowsPath(text).drive != ""


def public(value):
    """`value` with every absolute path or URI replaced by its last part: nothing of the machine leaves on a card."""
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items()}
    if isinstance(value, list):
        return [public(v) for v in value]
    if isinstance(value, str) and _is_path(value):
        return PurePosixPath(value.rstrip("/")).name or value
    return value


def public_command(command: str) -> str:
    """A command line with its paths (also in `--flag=/path` and `key=/path` arguments) cut to their last part."""
    out = []
    for token in shlex.split(command):
        key, sep, val = token.partition("=")
        out.append(f"{key}={public(val)}" if sep and not _is_path(key) else public(token))
    return shlex.join(out)


def front_matter(
    files: dict[str, list[str]],
    spec: ExportConfig,
    license_id: str,
    rows: int,
    turn_keys: dict[str, str] | None = None,
    scorers: tuple[str, ...] = ("qsm",),
) -> dict:
    """Hub metadata: license, size, languages (ISO codes, undetermined left out), features and configs."""
    ext = files[next(iter(files))][0].rsplit(".", 1)[-1] if files else "parquet"
    configs = [
        {"config_name": "default", "default": True, "data_files": [{"split": "train", "path": f"{DATA_DIR}/*.{ext}"}]}
    ]
    for lang, names in files.items():
        prefix = names[0].rsplit("-", 3)[0]
        configs.append(
            {"config_name": lang, "data_files": [{"split": "train", "path": f"{DATA_DIR}/{prefix}-*.{ext}"}]}
        )
    return {
        "license": license_id,
        "size_categories": [size_category(rows)],
        "language": [lang for lang in files if lang != NO_LANGUAGE],
        "pretty_name": "mdaq-spark selection",
        "tags": ["mdaq-spark", "instruction-tuning", "multilingual"],
        "task_categories": ["text-generation"],
        "dataset_info": {
            "features": features_yaml(export_schema(spec.format, spec.with_metadata, turn_keys, scorers))
        },
        "configs": configs,
    }


def _row(cells) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _budget_line(stats: RunStats) -> str:
    selection = stats.config.selection
    if selection.budget_count is not None:
        budget = f"{selection.budget_count} samples per language"
    else:
        budget = f"{selection.budget_fraction} of each language's candidates"
    line = (
        f"strategy `{selection.strategy}`, budget {budget}, quality : diversity = "
        f"{selection.quality_parts} : {selection.diversity_parts}"
    )
    if selection.budget_per_lang:
        line += "; per-language budgets: " + ", ".join(
            f"{k}: {v}" for k, v in sorted(selection.budget_per_lang.items())
        )
    return line


_SHAPE_LINE = {
    "alpaca": "Each row is one exchange (`instruction`, `input`, `output`), earlier exchanges in `history`",
    "sharegpt": "Each row is one conversation in `conversations` (`from`, `value`)",
    "openai": "Each row is one conversation in `messages` (`role`, `content`)",
    "parquet": "Each row is one conversation in `messages` (`role`, `content`)",
}


def _turn_key_lines(turn_keys: dict[str, str], left_out: list[str]) -> list[str]:
    lines = []
    if turn_keys:
        kinds = ", ".join(f"`{k}` ({'JSON text' if kind == JSON_TEXT else kind})" for k, kind in turn_keys.items())
        lines += [f"Besides role, text and tool calls, turns carry {kinds}; null where a turn has none.", ""]
    if left_out:
        names = ", ".join(f"`{k}`" for k in left_out)
        lines += [
            f"The source conversations' turns also carry {names}, which this format has no place for; "
            "a sharegpt or openai export keeps them.",
            "",
        ]
    return lines


def render(
    stats: RunStats,
    counts: dict[str, int],
    files: dict[str, list[str]],
    spec: ExportConfig,
    *,
    command: str | None,
    license_id: str | None = None,
    turn_keys: dict[str, str] | None = None,
    left_out: list[str] | None = None,
    scorers: tuple[str, ...] = ("qsm",),
) -> str:
    """The card; `license_id` overrides the run's output.license.

    `turn_keys`: the other keys the turns carry (io/turn_keys.py); `left_out`: those the
    format has no place for (alpaca's), named so a reader knows they exist; `scorers`: the
    run's scorer names, the fields of the metadata's `scorer_scores`.
    """
    total = sum(counts.values())
    meta = front_matter(files, spec, license_id or stats.config.output.license, total, turn_keys, scorers)
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip("\n"),
        "---",
        "",
        "# mdaq-spark selection",
        "",
        f"{total} instruction samples in {len(counts)} languages, chosen by mdaq-spark "
        f"{stats.mdaq_spark_version} (M-DaQ: a Quality Scoring Model and diversity-aware selection "
        f"over k-means clusters, per language). {_SHAPE_LINE[spec.format]}"
        + (", with the pipeline's fields under `mdaq`." if spec.with_metadata else "."),
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("<this folder>", split="train")',
        'de = load_dataset("<this folder>", "de", split="train")  # one language',
        "```",
        "",
        *_turn_key_lines(turn_keys or {}, left_out or []),
        "## Languages",
        "",
        _row(["language", "rows", "candidates", "selected for quality", "selected for diversity", "files"]),
        _row(["---"] * 6),
    ]
    for lang, n in counts.items():
        entry = stats.per_language[lang]
        chosen = entry.selected
        lines.append(
            _row(
                [
                    lang,
                    n,
                    entry.candidates,
                    chosen.get(S.REASON_QUALITY, 0),  # a reason no sample was selected for has no entry
                    chosen.get(S.REASON_DIVERSITY, 0),
                    len(files.get(lang, [])),
                ]
            )
        )
    lines += [
        "",
        "## Budgets",
        "",
        _budget_line(stats) + ".",
        "",
        "## Models",
        "",
        _row(["what", "value"]),
        _row(["---", "---"]),
        *[_row([what, value]) for what, value in stats.model_rows()],
        "",
        "## How it was made",
        "",
        f"- run directory: `{public(stats.run_dir)}`, finished {stats.finished_at}",
        f"- code commit: `{stats.code_commit or 'unknown'}`",
        f"- run command: `{public_command(stats.command) if stats.command else 'unknown'}`",
    ]
    if command:
        lines.append(f"- export command: `{public_command(command)}`")
    lines += [
        "",
        "The run's configuration (local paths cut to their last part):",
        "",
        "```json",
        json.dumps(public(stats.config.model_dump(mode="json")), indent=2, ensure_ascii=False, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)
