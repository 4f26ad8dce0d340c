"""Typed configuration: YAML file + command-line overrides, validated before Spark starts.

Every knob of the job lives here with its default; `mdaq_spark/conf/default.yaml` (shipped in
the package) is this model written out with comments. Unknown keys are errors, so a misspelt
option fails loudly instead of being ignored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mdaq_spark.errors import ConfigError

# the job's reference config, every knob with its default and a comment; shipped in the package
DEFAULT_CONFIG = Path(__file__).resolve().parent / "conf" / "default.yaml"

# a band's bits are packed into one signed 64-bit bucket key
MAX_BAND_BITS = 62


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnsConfig(_Section):
    """Field names in the input records; change them when a corpus spells fields differently."""

    instruction: str = "instruction"
    input: str = "input"
    response: str = "output"
    conversations: str = "conversations"
    messages: str = "messages"
    lang: str = "lang"


class InputConfig(_Section):
    paths: list[str] = Field(default_factory=list)
    file_type: Literal["auto", "json", "jsonl", "parquet", "delta"] = "auto"
    record_format: Literal["auto", "alpaca", "sharegpt", "openai", "midb"] = "auto"
    columns: ColumnsConfig = ColumnsConfig()
    passthrough: list[str] = Field(default_factory=list)
    # quarantine keeps this many characters of a rejected raw record (enough to debug it)
    raw_record_chars: int = Field(default=2000, ge=0)
    # a text field longer than this is quarantined as too long (protects the tokenizer and memory)
    max_field_chars: int = Field(default=200_000, ge=1)
    # MIDB files are named after their language ("German.json"): use that as the language hint
    midb_lang_from_filename: bool = True


EXPORT_FORMATS = ("alpaca", "sharegpt", "openai", "parquet")


class ExportConfig(_Section):
    """One trainer-ready copy of selected/ (mdaq_spark/io/export.py), written when the run ends."""

    format: Literal["alpaca", "sharegpt", "openai", "parquet"]
    # where to write it; null: export/<format>/ in the run directory
    path: str | None = None
    # add lang, qsm_score, cluster_id, selection_reason and sample_id under one key, `mdaq`
    with_metadata: bool = False
    # rows per file (per language); null: one file per language
    max_rows_per_file: int | None = Field(default=None, ge=1)


class OutputConfig(_Section):
    # the run directory; a scheduled refresh reuses the same one
    path: str = ""
    # format of `selected/`: parquet (replaced each run) or a Delta table refreshed with MERGE on
    # sample_id, so consumers see one versioned table (delta-spark on a cluster, delta-rs offline)
    format: Literal["parquet", "delta"] = "parquet"
    # where encodings, scores and embeddings are kept across runs, keyed by (sample_id, model
    # fingerprint); null = inside the run directory. Share one store between dated run directories
    # to compute each sample once
    store: str | None = None
    # redo every stage even when its output is complete, and forget the stored model outputs
    overwrite: bool = False
    # the data's license as a Hugging Face Hub identifier (apache-2.0, cc-by-4.0, other...), written to the
    # dataset card of every export; the selection inherits the corpus's terms, which only the user knows
    license: str = Field(default="unknown", pattern=r"^[a-z0-9][a-z0-9.+-]*$")
    # trainer-ready exports written after the report, e.g. [{format: sharegpt}, {format: parquet}]
    export: list[ExportConfig] = Field(default_factory=list)


class ModelTaskResources(_Section):
    """What one model task (encode, embed) asks of its executor: a stage-level ResourceProfile."""

    # CPU cores held by one model task
    cpus: int = Field(default=1, ge=1)
    # GPUs held by one model task: 1 = one model task per GPU at a time; 0.5 = two share one GPU
    gpu: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _spark_amount(self) -> ModelTaskResources:
        # Spark takes a fraction of one GPU or a whole number of them, nothing in between
        if self.gpu > 1 and not float(self.gpu).is_integer():
            raise ValueError(f"spark.model_task_resources.gpu must be <= 1 or a whole number, not {self.gpu}")
        return self


class SparkConfig(_Section):
    master: str = "local[*]"
    app_name: str = "mdaq-spark"
    shuffle_partitions: int = Field(default=8, ge=1)
    # rows per Arrow batch handed to the Python maps and UDFs; the model batch size divides it
    # rows per task in the model stages: many small tasks spread the encoder over every executor
    # and make a retried task cheap (the corpus files' own layout may give only a few partitions)
    rows_per_model_task: int = Field(default=2000, ge=1)
    # fewest tasks per model batch, whatever its size: fixed by config rather than by the cluster's
    # size so that the same config gives the same batches, hence bit-identical embeddings
    min_model_tasks: int = Field(default=2, ge=1)
    # rows encoded between two commits to the store: a job killed mid-encode loses at most this much
    rows_per_commit: int = Field(default=20000, ge=1)
    arrow_batch_size: int = Field(default=512, ge=1)
    driver_memory: str = "4g"
    conf: dict[str, str] = Field(default_factory=dict)
    # JVM packages a session built by this job loads from the jar folder (`mdaq jars fetch`):
    # auto = whichever of delta (delta-spark) and s3a (hadoop-aws) are there; a list = those,
    # missing ones an error. Under spark-submit the cluster's --packages / image decide instead
    packages: Literal["auto"] | list[Literal["delta", "s3a"]] = "auto"
    # the jar folder; null: $MDAQ_JARS_DIR or ~/.cache/mdaq_spark/jars
    jars_dir: str | None = None
    # who reads and MERGEs Delta tables: auto = delta-spark when the session has it, else delta-rs
    # (driver-side, no JVM package); delta-spark or delta-rs forces one
    delta_engine: Literal["auto", "delta-spark", "delta-rs"] = "auto"

    @field_validator("conf", mode="before")
    @classmethod
    def _conf_as_text(cls, value: Any) -> Any:
        # YAML reads `true` and `8` as a bool and an int; Spark's settings are text, booleans lower-case
        if not isinstance(value, dict):
            return value
        return {
            k: str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, int | float) else v
            for k, v in value.items()
        }

    # resources of each model task (encode, embed) on a cluster, e.g. {cpus: 1, gpu: 1}: those stages
    # run under their own ResourceProfile and every other stage asks for CPU cores only. Needs a
    # standalone, YARN or Kubernetes master whose executors have the GPUs
    # (spark.executor.resource.gpu.amount). null: every stage has Spark's default task resources
    model_task_resources: ModelTaskResources | None = None


class LanguageConfig(_Section):
    # restrict identification to these ISO 639-1 codes (null: all the detector knows)
    languages: list[str] | None = None
    # the record's own language field (or MIDB file name) wins over detection when present
    use_hint: bool = True
    # characters of each text given to the detector; the start of a text is enough to identify it
    max_chars: int = Field(default=1000, ge=20)
    # a text takes its expected language (the record's hint; for a prompt without one, its
    # response's language) when the detector gives that language at least this probability:
    # short texts are ambiguous, long ones never are. 1: plain detection only
    expected_lang_min_prob: float = Field(default=0.05, ge=0, le=1)
    # a text with fewer letters than this ("12 + 30 = ?", "OK") has no detectable language: 'und'
    min_letters: int = Field(default=3, ge=0)
    # a detection whose probability stays below this is no evidence of any language: 'und'
    min_confidence: float = Field(default=0.03, ge=0, le=1)


class ModelConfig(_Section):
    # registry name (see mdaq_spark.models.registry), a local directory, or a hub name already
    # in the local Hugging Face cache (loaded with HF_HUB_OFFLINE=1)
    name: str = "multilingual-e5-small"
    # QSM head: "auto" = the head shipped in the package for this encoder (the untrained
    # cosine if none ships for it), "none" = the untrained cosine, or a `mdaq train-qsm` output dir
    qsm_head: str = "auto"
    # a head trained under other encoder settings (model, max_seq_length, prefixes, precision) than
    # the run's is a warning in the log, stats.json and report.html; true makes it an error (exit 2)
    qsm_head_strict: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    batch_size: int = Field(default=32, ge=1)
    max_seq_length: int = Field(default=256, ge=8)
    instruction_prefix: str = "query: "
    response_prefix: str = "passage: "
    # where prepared packaged models live; null: $MDAQ_MODEL_CACHE or ~/.cache/mdaq_spark/models
    cache_dir: str | None = None


class ScorerConfig(_Section):
    """One scorer of exchanges (mdaq_spark/scoring): its kind, what it loads, its weight in the combination."""

    # a registered kind: qsm | cosine | length | sequence_classifier, or one a plug-in module registers
    kind: str = "qsm"
    # qsm: a head (null: model.qsm_head); sequence_classifier: a local model dir or a hub id; others: unused
    model: str | None = None
    weight: float = Field(default=1.0, gt=0)
    # a name for the scorer in scorer_scores and the report; null: its kind (kind#2 for a second of one kind)
    name: str | None = None
    # sequence_classifier: the most tokens it reads of an exchange, the answer kept at the end
    # (null: 512; never more than the model's own limit); others: unused
    max_length: int | None = Field(default=None, ge=16)
    # sequence_classifier: exchanges per forward pass (null: model.batch_size); a large reward model wants fewer
    batch_size: int | None = Field(default=None, ge=1)


class ScoringConfig(_Section):
    """How exchanges become a sample's score: which turns, which scorers, how they combine."""

    # all: every answer of a conversation is an exchange; first: the first answer only (the rest is history)
    turns: Literal["all", "first"] = "all"
    # a sample's score from its exchanges': mean (default; docs/training.md), min (the weakest turn decides), softmin
    aggregate: Literal["min", "mean", "softmin"] = "mean"
    # softmin's temperature, in score units: small is min, large is mean
    softmin_temperature: float = Field(default=0.05, gt=0)
    # several scorers: each one's exchange scores per language as percentile ranks (rank) or z-scores (z)
    normalise: Literal["rank", "z"] = "rank"
    scorers: list[ScorerConfig] = Field(default_factory=lambda: [ScorerConfig()], min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> ScoringConfig:
        names = scorer_names(self.scorers)
        if len(set(names)) != len(names):
            raise ValueError(f"scoring.scorers: names must differ, got {names}")
        return self


def scorer_names(scorers: list[ScorerConfig]) -> list[str]:
    """Each scorer's name: its own, else its kind, numbered from the second of a kind on (length, length#2)."""
    seen: dict[str, int] = {}
    names = []
    for entry in scorers:
        seen[entry.kind] = seen.get(entry.kind, 0) + 1
        n = seen[entry.kind]
        names.append(entry.name or (entry.kind if n == 1 else f"{entry.kind}#{n}"))
    return names


class EmbeddingConfig(_Section):
    # qsm: the sample embedding is the normalised sum of the QSM's instruction and response
    # embeddings (no text is encoded twice); model: a separate encoder over the whole sample
    source: Literal["qsm", "model"] = "qsm"
    model: ModelConfig | None = None


class ClusteringConfig(_Section):
    # spark: Spark ML KMeans per language (one Spark job per iteration; scales past one machine's
    # memory). faiss: each language's fit sample is clustered by faiss inside one task (an order of
    # magnitude faster; the sample, at most fit_sample_max x dim floats, must fit one executor).
    # rapids: spark-rapids-ml's KMeans on the executors' GPUs (the spark-rapids-ml package; untested here)
    backend: Literal["spark", "faiss", "rapids"] = "spark"
    # spark and rapids: languages fitted at once, each from its own driver thread in its own FAIR
    # scheduler pool; a fit is a chain of small jobs that alone leaves most cores idle. The clusters
    # do not depend on it
    parallel_fits: int = Field(default=4, ge=1)
    # fixed k per language; null: ceil(sqrt(N_lang / 2)) as in M-DaQ
    k: int | None = Field(default=None, ge=1)
    max_k: int = Field(default=2000, ge=1)
    # fit k-means on at most this many rows per language, then assign every row
    fit_sample_max: int = Field(default=200_000, ge=1)
    # spark and rapids: a language whose fit sample has at most this many rows is fitted inside one
    # task (scikit-learn's k-means, one thread, seeded) instead of by a chain of Spark jobs, about
    # 0.5 s each per iteration whatever the rows; 0: every language by the backend
    local_fit_max: int = Field(default=5000, ge=0)
    max_iter: int = Field(default=30, ge=1)
    tol: float = Field(default=1e-4, gt=0)  # spark only: faiss always runs max_iter iterations
    init_mode: Literal["k-means||", "random"] = "k-means||"  # spark only: faiss starts from random rows
    # spark only: how Spark ML finds each row's nearest centre. block stacks a partition's rows into
    # matrices and takes all distances in one level-3 BLAS product per block (dense embeddings: several
    # times faster per iteration); row walks the centres one row at a time with triangle-inequality
    # bounds (Spark's choice for sparse features); auto lets Spark choose
    solver: Literal["block", "row", "auto"] = "block"
    # partitions of each language's k-means input, fixed by config (not by the number of cores) so
    # the same seed gives the same clusters on a laptop, a cluster, or a cluster that lost a worker
    fit_partitions: int = Field(default=8, ge=1)


class SelectionConfig(_Section):
    strategy: Literal["das", "cluster_top_k", "mmr"] = "das"
    # per-language budget: exactly one of fraction or count
    budget_fraction: float | None = Field(default=0.2, gt=0, le=1)
    budget_count: int | None = Field(default=None, ge=1)
    # per-language overrides of the budget as a count
    budget_per_lang: dict[str, int] = Field(default_factory=dict)
    # DAS split of the budget: quality : diversity (M-DaQ uses 6 : 1)
    quality_parts: int = Field(default=6, ge=0)
    diversity_parts: int = Field(default=1, ge=0)
    # cluster_top_k: a fixed k per cluster; null: share the budget across clusters by size
    top_k_per_cluster: int | None = Field(default=None, ge=1)
    # mmr: greedy lambda * quality - (1 - lambda) * max cosine to the already selected samples
    mmr_lambda: float = Field(default=0.7, ge=0, le=1)
    # mmr: only the best max(budget * factor, budget) of a language are candidates, and never more
    # than mmr_max_pool: the greedy walk costs budget x pool similarity updates in one worker
    mmr_pool_factor: float = Field(default=5.0, ge=1)
    mmr_max_pool: int = Field(default=50_000, ge=1)

    @model_validator(mode="after")
    def _one_budget(self) -> SelectionConfig:
        if (self.budget_fraction is None) == (self.budget_count is None):
            raise ValueError("set exactly one of selection.budget_fraction and selection.budget_count")
        if self.quality_parts + self.diversity_parts == 0:
            raise ValueError("selection.quality_parts + selection.diversity_parts must be > 0")
        bad = sorted(lang for lang, n in self.budget_per_lang.items() if n < 1)
        if bad:
            raise ValueError(f"selection.budget_per_lang must give each language at least 1 sample: fix {bad}")
        return self


class FiltersConfig(_Section):
    """Rule-based flags (mdaq_spark/heuristics.py) and what they do to the selection."""

    # flag: only mark; demote: flagged samples rank after every clean one of their language;
    # drop: flagged samples are not candidates (they stay in normalized/, counted in stats)
    action: Literal["flag", "demote", "drop"] = "demote"
    rules: list[
        Literal[
            "response_copies_instruction",
            "truncated_response",
            "response_too_short",
            "response_too_long",
            "repetitive_response",
        ]
    ] = Field(
        default_factory=lambda: [
            "response_copies_instruction",
            "truncated_response",
            "response_too_short",
            "response_too_long",
            "repetitive_response",
        ]
    )
    lang_mismatch: bool = False  # also flag instruction/response language mismatch (off: cross-lingual data is valid)
    min_response_chars: int = Field(default=2, ge=0)
    max_response_chars: int = Field(default=20000, ge=1)
    truncation_min_chars: int = Field(default=80, ge=1)  # shorter answers may end without punctuation
    truncation_min_last_line_words: int = Field(default=8, ge=1)  # shorter last lines are titles/list items
    copy_max_extra_ratio: float = Field(default=1.2, ge=1)  # response = instruction + at most 20% more
    repetition_window_chars: int = Field(default=5000, ge=100)  # only the head is checked, for speed
    repetition_min_lines: int = Field(default=4, ge=2)
    repetition_max_duplicate_share: float = Field(default=0.5, gt=0, lt=1)


class NearDupConfig(_Section):
    """SemDeDup-style semantic near-duplicates inside clusters (mdaq_spark/neardup.py)."""

    enabled: bool = False
    # cosine of the sample embeddings; E5 cosines are compressed (MIDB: unrelated ~0.75,
    # translation-revision twins ~0.98), so only very close pairs count as duplicates
    threshold: float = Field(default=0.97, gt=0, le=1)
    # a cluster larger than this is cut into blocks of at most this many rows (by centroid
    # distance, so close samples share a block): pairwise work stays block_size^2 per block
    max_block_size: int = Field(default=2000, ge=2)


class TranslationConfig(_Section):
    """MIDB translation-defect flags (mdaq_spark/translation.py); they join `flags`, so filters.action applies."""

    enabled: bool = True
    rules: list[
        Literal[
            "response_language_differs",
            "instruction_language_differs",
            "untranslated_span",
            "leftover_placeholder",
            "translation_note",
        ]
    ] = Field(
        default_factory=lambda: [
            "response_language_differs",
            "instruction_language_differs",
            "untranslated_span",
            "leftover_placeholder",
            "translation_note",
        ]
    )
    # detected languages easily confused with the sample's language: not a mismatch (the
    # Iberian, Romance and Malay ones were seen on MIDB: Spanish prompts read as Aragonese...)
    allowed_langs: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "id": ["ms", "jv", "su"],
            "ms": ["id", "jv"],
            "pt": ["gl", "es", "ext"],
            "es": ["gl", "pt", "ca", "an", "ext", "ast", "oc"],
            "gl": ["pt", "es"],
            "ca": ["es", "oc"],
            "it": ["la"],
            "fr": ["oc", "wa"],
            "de": ["lb"],
            "ar": ["arz", "ary"],
            "ary": ["ar", "arz"],
            "arz": ["ar", "ary"],
            "cs": ["sk"],
            "sk": ["cs"],
            "no": ["da", "nb", "nn"],
            "da": ["no", "nb"],
            "hr": ["sr", "bs"],
            "sr": ["hr", "bs"],
            "bs": ["hr", "sr"],
        }
    )
    # detector answers that say nothing about a language (numbers, symbols)
    ignore_langs: list[str] = Field(default_factory=lambda: ["und", "zxx"])
    # texts with fewer letters than this are too short to identify (numbers, names, one word)
    min_letters: int = Field(default=40, ge=1)
    max_chars: int = Field(default=1000, ge=20)  # characters given to the detector when re-identifying
    # untranslated span: the language translated from, and the shortest run of it that counts
    source_lang: str = "en"
    untranslated_min_chars: int = Field(default=120, ge=1)
    untranslated_min_segment_chars: int = Field(default=25, ge=1)  # shorter segments are not judged
    # regular expressions (Java syntax, case-insensitive) of template slots left unfilled and of
    # notes a translator or a translating model added
    placeholder_patterns: list[str] = Field(
        default_factory=lambda: [
            r"\{\{\s*[A-Za-z_][A-Za-z0-9_ ]*\s*\}\}",
            r"<\s*/?\s*(noinput|nooutput|placeholder)\s*>",
            r"\[(insert|your|placeholder|todo)[^\]]{0,40}\]|\[name\]",
            r"(?-i:__[A-Z][A-Z0-9_]+__)",
        ]
    )
    note_patterns: list[str] = Field(
        default_factory=lambda: [
            r"\((note|nota|notes?|anmerkung|remarque|catatan|poznámka|not)\s*:",
            r"translator'?s note|note du traducteur|anmerkung des übersetzers|nota del traductor|"
            r"nota del traduttore|nota do tradutor|catatan penerjemah|poznámka překladatele|çevirmenin notu|역자 주",
            r"\b(translated|translation) (from|into|to) (english|the original)",
            r"\bn\. ?d\. ?t\.|\bn\. ?del ?t\.",
        ]
    )


class CrossLingualConfig(_Section):
    """XL-Instruct cross-lingual samples (mdaq_spark/crosslingual.py): their own group and budget."""

    enabled: bool = True  # detect them (cheap); detected samples are never flagged as wrong-language
    # give them their own group and budget; off: they compete in their language's pool
    separate_budget: bool = False
    # the group's budget per language, as a fraction of the group's candidates or as a count
    budget_fraction: float | None = Field(default=0.2, gt=0, le=1)
    budget_count: int | None = Field(default=None, ge=1)
    # fewer letters than this in the response: too short to identify its language
    min_letters: int = Field(default=10, ge=1)
    # extra names by which an instruction may ask for a language (added to the built-in table)
    language_names: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_budget(self) -> CrossLingualConfig:
        if (self.budget_fraction is None) == (self.budget_count is None):
            raise ValueError("set exactly one of crosslingual.budget_fraction and crosslingual.budget_count")
        return self


class DomainCapConfig(_Section):
    """UltraLink pruning of language-agnostic domains (mdaq_spark/domains.py)."""

    enabled: bool = False  # tag (always, cheap) but cap only when enabled
    # most samples of a domain kept per language (best QSM scores first); domains not listed are uncapped
    max_per_lang: dict[Literal["math", "code"], int] = Field(default_factory=lambda: {"math": 32000, "code": 16000})
    exempt_langs: list[str] = Field(default_factory=lambda: ["en"])  # the source language keeps everything
    # a response with at least this many arithmetic expressions (e.g. "3 * 4 = 12") is math
    math_min_expressions: int = Field(default=2, ge=1)


class CopyGroupConfig(_Section):
    """UltraLink pruning of translated copies across languages (mdaq_spark/copies.py)."""

    enabled: bool = False  # off by default: it costs a pass over the pool's embeddings and a few joins
    # two samples in different languages are copies when one is among the other's `neighbours`
    # nearest samples of its language, their cosine is >= threshold, and the ratio margin (cosine
    # over the mean of both sides' k-nearest cosines) is >= margin. The margin is what separates
    # copies on E5: raw cosines of translations and of unrelated samples overlap (MIDB: copies
    # 0.85-0.98, unrelated 0.75-0.88, many more of them); 0 = cosine and neighbours only
    threshold: float = Field(default=0.85, gt=0, le=1)
    margin: float = Field(default=1.02, ge=0)
    neighbours: int = Field(default=4, ge=1)
    # languages a group keeps (every sample of a kept language stays); the others are pruned
    max_langs_per_group: int = Field(default=2, ge=1)
    # domain tags that are grouped (UltraLink: language-agnostic math/code); empty = every sample
    domains: list[Literal["math", "code", "general"]] = Field(default_factory=lambda: ["math", "code"])
    # spread: a seeded hash of (group, language) picks the kept languages, so every language loses
    # about equally; best_score: the languages holding the group's best QSM scores
    keep: Literal["spread", "best_score"] = "spread"
    # random-hyperplane LSH: `bits` hyperplanes cut into `bands` equal bands; two samples are
    # compared when all the bits of one band agree
    bits: int = Field(default=48, ge=1)
    bands: int = Field(default=12, ge=1)
    # subtract the pool's mean embedding before hashing (E5 vectors share one dominant direction,
    # which makes uncentred hyperplane signs agree for unrelated samples); the mean is taken
    # over a fixed hash-chosen sample of at most `center_sample` rows, so it is the same every run
    center: bool = True
    center_sample: int = Field(default=10000, ge=1)
    # a bucket larger than this is cut into blocks (ordered along one more random direction):
    # exact comparisons stay at most max_block_size^2 per block; pairs split across blocks are missed
    max_block_size: int = Field(default=2000, ge=2)
    # rounds of min-label propagation (with pointer jumping) for the connected components
    max_iterations: int = Field(default=30, ge=1)

    @model_validator(mode="after")
    def _bands_divide_bits(self) -> CopyGroupConfig:
        if self.bits % self.bands:
            raise ValueError(f"copies.bits ({self.bits}) must be a multiple of copies.bands ({self.bands})")
        if self.bits // self.bands > MAX_BAND_BITS:
            raise ValueError(f"copies: at most {MAX_BAND_BITS} bits per band (bits / bands), to fit a 64-bit key")
        return self


class ReportConfig(_Section):
    html: bool = True  # report/report.html next to stats.json
    histogram_bins: int = Field(default=20, ge=2, le=200)
    projection_sample: int = Field(default=1500, ge=0, le=20000)  # embeddings drawn in the 2-D map
    examples_per_lang: int = Field(default=3, ge=0, le=50)  # highest and lowest scored samples shown
    skew_warning_factor: float = Field(default=3.0, gt=1)  # warn when a cluster exceeds this x the mean size


class JobConfig(_Section):
    input: InputConfig = InputConfig()
    output: OutputConfig = OutputConfig()
    spark: SparkConfig = SparkConfig()
    language: LanguageConfig = LanguageConfig()
    model: ModelConfig = ModelConfig()
    scoring: ScoringConfig = ScoringConfig()
    embedding: EmbeddingConfig = EmbeddingConfig()
    clustering: ClusteringConfig = ClusteringConfig()
    selection: SelectionConfig = SelectionConfig()
    filters: FiltersConfig = FiltersConfig()
    translation: TranslationConfig = TranslationConfig()
    crosslingual: CrossLingualConfig = CrossLingualConfig()
    near_dup: NearDupConfig = NearDupConfig()
    domains: DomainCapConfig = DomainCapConfig()
    copies: CopyGroupConfig = CopyGroupConfig()
    report: ReportConfig = ReportConfig()
    seed: int = 42

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True)


class HeadTrainConfig(_Section):
    """QSM head on the frozen encoder (CPU-friendly; the shipped default is one of these)."""

    epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    margin: float = Field(default=0.05, ge=0)  # cosine-distance units: E5 cosines sit in a narrow band
    identity_penalty: float = Field(default=1e-2, ge=0)  # keeps the head near the encoder's geometry
    # per training triplet, this many more whose negative is another instruction's response in the
    # same language: the head must keep ranking the answer to the question above a fluent non-answer
    relevance_negatives: int = Field(default=0, ge=0)


class LayerHeadTrainConfig(_Section):
    """QSM layer head (the shipped default): the affine head's cosine plus an MLP over several layers."""

    layers: list[int] = Field(default_factory=lambda: [2, 4, 6, 8, 10, 12])  # 0: token embeddings, 12: output
    hidden: int = Field(default=256, ge=1)
    epochs: int = Field(default=12, ge=1)
    batch_size: int = Field(default=256, ge=2)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    margin: float = Field(default=0.05, ge=0)
    identity_penalty: float = Field(default=0.1, ge=0)
    # weight of the second triplet loss, whose negative is another instruction's revised response
    # in the same batch: what the quality term learns may never outvote an answer to the question
    relevance_weight: float = Field(default=1.0, ge=0)
    # false: the cosine term stays the untrained encoder's (identity maps); only the MLP learns
    train_relevance: bool = True
    # > 0 (the shipped design): the fluency term is bounded and opened only for a response on the
    # instruction's topic, score = cos + scale * sigmoid(q) * sigmoid((cos - tau) /
    # gate_temperature), tau learned: an off-topic response gets back the cosine alone, so fluency
    # cannot lift it far above a true answer. 0: the fluency term is added as it is (cos + q)
    gate_scale: float = Field(default=0.2, ge=0)
    gate_temperature: float = Field(default=0.02, gt=0)


class FinetuneConfig(_Section):
    """Full fine-tuning of the encoder (for GPU users; ~2.5 s per step of 16 on a 2-core CPU)."""

    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=16, ge=1)
    lr: float = Field(default=2e-5, gt=0)
    margin: float = Field(default=0.05, ge=0)
    max_steps: int | None = Field(default=None, ge=1)  # stop early (smoke runs)
    # per training triplet, this many more whose negative is another instruction's response in the
    # same language: fine-tuned on the MT contrast alone, the encoder learns "polished beats raw"
    # and loses the relevance the untrained encoder has
    relevance_negatives: int = Field(default=1, ge=0)


class TrainQsmConfig(_Section):
    data: list[str] = Field(default_factory=list)  # MIDB files/folders or triplet JSONL
    output: str = ""
    # layers: a head over several encoder layers (default, CPU); head: the affine head alone;
    # full: fine-tune the whole encoder (GPU)
    mode: Literal["layers", "head", "full"] = "layers"
    eval_fraction: float = Field(default=0.1, gt=0, lt=1)  # of prompts, seen languages
    holdout_langs: list[str] = Field(default_factory=list)  # never trained on: cross-language check
    max_per_lang: int | None = Field(default=None, ge=1)  # cap training triplets per language
    max_records_per_file: int | None = Field(default=None, ge=1)  # read only the first N records of each file
    encoding_cache: str | None = None  # null: <model cache>/../qsm_encodings
    feature_store: str | None = None  # mode layers: every layer's states; null: <encoding cache>/<encoder>/layers
    reuse_run: str | None = None  # a pipeline run dir whose stored encodings are reused
    model: ModelConfig = ModelConfig(qsm_head="none")
    head: HeadTrainConfig = HeadTrainConfig()
    layer_head: LayerHeadTrainConfig = LayerHeadTrainConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    seed: int = 42


# maps whose own keys contain dots (`spark.conf.spark.hadoop.fs.s3a.endpoint=...`): past these
# prefixes, the rest of an override's name is one key
_DOTTED_KEY_MAPS = (("spark", "conf"),)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for prefix in _DOTTED_KEY_MAPS:
        if tuple(keys[: len(prefix)]) == prefix and len(keys) > len(prefix) + 1:
            keys = [*prefix, ".".join(keys[len(prefix) :])]
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{dotted}': '{key}' is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=value`, the value read as YAML so numbers, booleans, lists and null keep their type."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    **fields: Any,
) -> JobConfig:
    """Load YAML, apply `section.key=value` overrides and keyword fields (dotted names), validate."""
    tree: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        tree = loaded or {}
    for text in overrides:
        _set_dotted(tree, *parse_override(text))
    for dotted, value in fields.items():
        if value is not None:
            _set_dotted(tree, dotted, value)
    return _validate(JobConfig, tree, "invalid configuration")


def _validate(model: type[BaseModel], tree: dict[str, Any], what: str):
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{what}: {problems}") from None


def load_train_config(overrides: list[str] | tuple[str, ...] = (), **fields: Any) -> TrainQsmConfig:
    """`mdaq train-qsm` options: keyword fields (dotted names; None: unset), then `key=value` overrides."""
    tree: dict[str, Any] = {}
    for dotted, value in fields.items():
        if value is not None:
            _set_dotted(tree, dotted, value)
    for text in overrides:
        _set_dotted(tree, *parse_override(text))
    return _validate(TrainQsmConfig, tree, "invalid train-qsm options")


def check_runnable(cfg: JobConfig) -> None:
    """Checks that need the file system; run before any SparkSession is built."""
    if not cfg.input.paths:
        raise ConfigError("no input: set input.paths or pass --input")
    missing = [p for p in cfg.input.paths if "://" not in p and not Path(p).exists()]
    if missing:
        raise ConfigError(f"input path(s) not found: {', '.join(missing)}")
    if not cfg.output.path:
        raise ConfigError("no output: set output.path or pass --output")
