"""The job, stage by stage: ingest -> score -> (embed) -> cluster -> select -> report.

Each stage reads the previous stages' outputs from the run directory and writes its own,
atomically, then records a marker keyed by everything that determines its result (config
section, upstream keys, input files). A rerun skips stages whose key is unchanged, so a
crashed run resumes from the last finished stage and a config change redoes exactly the
stages it affects. Only this module triggers Spark actions; the stage functions it calls
are lazy transformations, apart from loops that must look at their data to go on (k-means
fitting, the connected components of translated copies).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pyspark import Accumulator
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.cluster import cluster_by_language
from mdaq_spark.config import JobConfig
from mdaq_spark.copies import COPY_COUNT, COPY_GROUP
from mdaq_spark.crosslingual import CROSSLINGUAL, CROSSLINGUAL_GROUP, GROUP, MONOLINGUAL_GROUP
from mdaq_spark.domains import DOMAIN, GENERAL, domain_tag
from mdaq_spark.heuristics import FLAGS, RULES_VERSION, add_flags
from mdaq_spark.io import delta, writers
from mdaq_spark.io.accounting import file_accounting, file_identity_holds
from mdaq_spark.io.readers import parse_units, raw_units, without_accounting
from mdaq_spark.io.store import ModelStore
from mdaq_spark.lang import add_languages, prompt_text
from mdaq_spark.models import registry
from mdaq_spark.neardup import NEAR_DUP_COUNT
from mdaq_spark.prune import PRUNE_REASON, prune
from mdaq_spark.select import select
from mdaq_spark.udfs import embed_udf, encode_udf, sample_text, score_udf

log = logging.getLogger(__name__)

NORMALIZED = "normalized"
QUARANTINE = "quarantine"
ENCODINGS = "encodings"
FLAGGED = "flagged"  # samples with a flag, a cross-lingual mark or a non-general domain
CANDIDATES = "candidates"  # every clustered sample with its prune_reason (null: went on to selection)
DEMOTE_OFFSET = 10.0  # moves a flagged score from [-1, 1] below every clean one
SCORES = "scores"
EMBEDDINGS = "embeddings"
CLUSTERS = "clusters"
CENTROIDS = "centroids"
SELECTED = "selected"
REPORT = "report"
STAGING = "_staging"
STAGE_MARKERS = "_stages"
# model outputs live in a store across runs; each is keyed by the fingerprint named here
STORE_FINGERPRINT = {ENCODINGS: S.ENCODER_FINGERPRINT, SCORES: S.MODEL_FINGERPRINT, EMBEDDINGS: S.MODEL_FINGERPRINT}
STAGE_OF = {ENCODINGS: "encode", SCORES: "score", EMBEDDINGS: "embed"}
_BATCH = "mdaq_batch"  # a partition column: a leading "_" would hide its folders from Spark
_PROMPT = "_prompt"
_TEXT = "_text"


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8") + b"\x1f")
    return h.hexdigest()[:16]


def _flatten(df: DataFrame, fields: tuple[str, ...]) -> DataFrame:
    """(sample_id, lang, <struct from a model UDF>) -> sample_id, lang and the struct's fields as columns."""
    struct = df.columns[-1]
    return df.select(S.SAMPLE_ID, S.LANG, *[F.col(f"`{struct}`.{name}").alias(name) for name in fields])


def _section(model) -> str:
    return model.model_dump_json() if model is not None else "null"


def _input_signature(paths: list[str]) -> str:
    """Names, sizes and modification times of the input files: a changed corpus redoes ingest."""
    entries = []
    for p in paths:
        path = Path(p)
        files = sorted(x for x in path.rglob("*") if x.is_file()) if path.is_dir() else [path]
        for f in files:
            if f.exists():
                st = f.stat()
                entries.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
            else:
                entries.append(str(f))
    return _digest(*entries)


def select_key(cfg: JobConfig, cluster_key: str, score_key: str) -> str:
    """Everything the selection depends on: upstream stages, every section it reads, the rules' version."""
    sections = (cfg.selection, cfg.filters, cfg.translation, cfg.crosslingual, cfg.near_dup, cfg.copies, cfg.domains)
    return _digest(cluster_key, score_key, *map(_section, sections), RULES_VERSION)


@dataclass
class Run:
    spark: SparkSession
    cfg: JobConfig
    timings: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)
    # called with (stage, rows done, rows to do) as model batches commit: the CLI's progress bar
    on_progress: Callable[[str, int, int], None] | None = None
    _stores: dict[str, ModelStore] = field(default_factory=dict, repr=False)

    @property
    def root(self) -> str:
        return self.cfg.output.path.rstrip("/")

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def table(self, name: str) -> DataFrame:
        return self.spark.read.parquet(self.path(name))

    # -------------------------------------------------------------- stage bookkeeping

    def _marker(self, stage: str) -> str:
        return self.path(f"{STAGE_MARKERS}/{stage}.json")

    def _finished(self, stage: str, key: str) -> dict | None:
        marker = Path(self._marker(stage))
        if self.cfg.output.overwrite or not marker.is_file():
            return None
        done = json.loads(marker.read_text())
        return done if done.get("key") == key else None

    def stage(self, name: str, key: str, body: Callable[[], dict]) -> None:
        self.keys[name] = key
        done = self._finished(name, key)
        if done is not None:
            log.info("stage %-8s skipped: finished earlier with the same inputs and config", name)
            self.skipped.append(name)
            self.timings[name] = 0.0
            self.info[name] = done.get("info", {})
            return
        self.spark.sparkContext.setJobGroup(f"mdaq-{name}", f"mdaq stage: {name}", interruptOnCancel=True)
        started = time.perf_counter()
        info = body() or {}
        seconds = time.perf_counter() - started
        self.timings[name] = round(seconds, 2)
        self.info[name] = info
        marker = Path(self._marker(name))
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps({"stage": name, "key": key, "seconds": seconds, "info": info}, indent=2))
        tmp.replace(marker)
        log.info("stage %-8s done in %.1fs %s", name, seconds, json.dumps(info, sort_keys=True))

    # -------------------------------------------------------------- stages

    def ingest(self) -> dict:
        cfg = self.cfg
        units, skipped = raw_units(self.spark, cfg.input)
        accounted = parse_units(units, cfg.input).persist()
        parsed = without_accounting(accounted)
        try:
            good = parsed.where(F.col(S.QUARANTINE_REASON).isNull())
            first = Window.partitionBy(S.SAMPLE_ID).orderBy(S.SOURCE, S.RECORD_FORMAT, S.VARIANT, S.LANG_HINT)
            good = good.withColumn("_copy", F.row_number().over(first))
            duplicates = (
                good.where(F.col("_copy") > 1).drop("_copy").withColumn(S.QUARANTINE_REASON, F.lit(S.DUPLICATE_REASON))
            )
            unique = good.where(F.col("_copy") == 1).drop("_copy", S.QUARANTINE_REASON, S.RAW_RECORD)
            normalized = add_languages(unique, cfg.language)
            rejected = parsed.where(F.col(S.QUARANTINE_REASON).isNotNull()).unionByName(duplicates)
            # repartition, not coalesce: coalesce(1) would pull the whole parse upstream into one task
            writers.write_table(rejected.repartition(1), self.path(QUARANTINE))
            writers.write_table(normalized, self.path(NORMALIZED), partition_by=(S.LANG,))
            parsed_rows = parsed.count()
            files = file_accounting(accounted, [self.table(NORMALIZED), self.table(QUARANTINE)])
        finally:
            accounted.unpersist()
        holds = file_identity_holds(files)
        if not holds:
            log.warning(
                "per-file count identity broken: %s", {k: v for k, v in files.items() if len(set(v.values())) > 1}
            )
        return {
            "parsed_rows": parsed_rows,
            "content_digest": self._content_digest(),
            "files": files,
            "per_file_identity_holds": holds,
            "files_skipped": [{"path": x.path, "reason": x.reason} for x in skipped],
        }

    def _content_digest(self) -> str:
        """What the corpus holds, independent of file names and times: (count, XOR of row hashes).

        Later stages are keyed by this rather than by the input files' signature, so a corpus
        that was copied, touched or re-exported with the same samples re-runs ingest only.
        sample_id already hashes the content; lang is in the hash because it decides grouping.
        """
        row = (
            self.table(NORMALIZED)
            .agg(F.count(F.lit(1)).alias("n"), F.bit_xor(F.xxhash64(S.SAMPLE_ID, S.LANG)).alias("x"))
            .first()
        )
        return f"{row['n']}-{(row['x'] or 0) & 0xFFFFFFFFFFFFFFFF:016x}"

    # -------------------------------------------------------------- model stages (stored across runs)

    def store(self, name: str) -> ModelStore:
        """The store behind a model stage; an old-layout table is adopted once per run, not per call."""
        if name not in self._stores:
            root = (self.cfg.output.store or self.root).rstrip("/")
            store = ModelStore(self.spark, f"{root}/{name}", STORE_FINGERPRINT[name])
            store.adopt_unbatched()
            self._stores[name] = store
        return self._stores[name]

    def model_table(self, name: str) -> DataFrame:
        """A model stage's output for exactly the current corpus, read from the store."""
        fingerprint = self.info[STAGE_OF[name]][STORE_FINGERPRINT[name]]
        return self.store(name).view(self.table(NORMALIZED), fingerprint)

    def _compute_missing(
        self,
        name: str,
        wanted: DataFrame,
        fingerprint: str,
        compute: Callable[[DataFrame, Accumulator], DataFrame],
        rows_per_commit: int | None,
    ) -> dict:
        """Run `compute` on the wanted rows that the store lacks, in batches committed one by one.

        Batches are fixed by the corpus (a hash of sample_id modulo a count from the corpus
        size), not by what is left to do, so a restarted job computes the missing batches with
        exactly the rows, partitions and order an uninterrupted run would have used: the
        stored floats are the same bit for bit. The pending rows are staged once, partitioned
        by batch, so each batch reads its own files instead of re-deriving them from the corpus.
        `rows_per_commit=None` commits everything at once (cheap stages: a rerun costs little).
        """
        store = self.store(name)
        if self.cfg.output.overwrite:
            store.clear()
        store.sweep()
        total = wanted.count()
        n_batches = max(1, math.ceil(total / rows_per_commit)) if rows_per_commit else 1
        pending = store.pending(wanted, fingerprint).withColumn(
            _BATCH, F.pmod(F.xxhash64(S.SAMPLE_ID), F.lit(n_batches))
        )
        # counted before staging: nothing pending (a job killed after its last commit) stages nothing
        todo = {r[_BATCH]: r["count"] for r in pending.groupBy(_BATCH).count().collect()}
        staged = self.path(f"{STAGING}/{name}_pending")
        if n_batches > 1 and todo:
            writers.write_table(pending, staged, partition_by=(_BATCH,))
            pending = self.spark.read.parquet(staged)
        counter = self.spark.sparkContext.accumulator(0)
        started, done = time.perf_counter(), 0
        batches = sorted(b for b, rows in todo.items() if rows)
        for i, batch in enumerate(batches, start=1):
            rows = todo[batch]
            tasks = max(self.cfg.spark.min_model_tasks, math.ceil(rows / self.cfg.spark.rows_per_model_task))
            part = pending.where(F.col(_BATCH) == batch).drop(_BATCH).repartition(tasks, S.SAMPLE_ID)
            self.spark.sparkContext.setJobDescription(f"mdaq {STAGE_OF[name]}: batch {i}/{len(batches)} ({rows} rows)")
            store.commit(compute(part, counter).withColumn(STORE_FINGERPRINT[name], F.lit(fingerprint)))
            done += rows
            self.progress(STAGE_OF[name], done, sum(todo.values()), time.perf_counter() - started)
        self.spark.sparkContext.setJobDescription(None)
        writers.delete(self.spark, staged)
        computed = sum(todo.values())
        return {
            STORE_FINGERPRINT[name]: fingerprint,
            "rows": total,
            "computed": computed,
            "reused": total - computed,
            "rows_through_model_udf": int(counter.value),
            "batches_committed": len(batches),
        }

    def progress(self, stage: str, done: int, total: int, seconds: float) -> None:
        rate = done / seconds if seconds > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        log.info("stage %-8s %d/%d rows committed, %.1f rows/s, about %.0fs left", stage, done, total, rate, eta)
        if self.on_progress is not None:
            self.on_progress(stage, done, total)

    def encode(self, location: str, fingerprint: str) -> dict:
        texts = self.table(NORMALIZED).select(S.SAMPLE_ID, S.LANG, prompt_text().alias(_PROMPT), S.RESPONSE)

        def compute(rows: DataFrame, counter: Accumulator) -> DataFrame:
            # neighbours of similar length share a padded batch: less padding; sample_id breaks ties
            # so the batches, and with them the floats, are the same on every run
            ordered = rows.sortWithinPartitions(F.length(_PROMPT) + F.length(S.RESPONSE), S.SAMPLE_ID)
            udf = encode_udf(self.cfg.model, location, counter)
            return _flatten(
                ordered.select(S.SAMPLE_ID, S.LANG, udf(F.col(_PROMPT), F.col(S.RESPONSE))),
                (S.PROMPT_EMBEDDING, S.RESPONSE_EMBEDDING),
            )

        return self._compute_missing(ENCODINGS, texts, fingerprint, compute, self.cfg.spark.rows_per_commit)

    def score(self, head_dir: str | None, fingerprint: str) -> dict:
        encodings = self.model_table(ENCODINGS).select(S.SAMPLE_ID, S.LANG, S.PROMPT_EMBEDDING, S.RESPONSE_EMBEDDING)

        def compute(rows: DataFrame, counter: Accumulator) -> DataFrame:
            udf = score_udf(self.cfg.model, head_dir, counter)
            # a fixed row order gives fixed Arrow batches: BLAS results depend on a row's place in the batch
            rows = rows.sortWithinPartitions(S.SAMPLE_ID)
            return _flatten(
                rows.select(S.SAMPLE_ID, S.LANG, udf(F.col(S.PROMPT_EMBEDDING), F.col(S.RESPONSE_EMBEDDING))),
                (S.QSM_SCORE, S.EMBEDDING),
            )

        info = self._compute_missing(SCORES, encodings, fingerprint, compute, rows_per_commit=None)
        return {**info, "qsm_head": head_dir or "none (untrained encoder cosine)"}

    def embed(self, location: str, fingerprint: str) -> dict:
        model_cfg = self.cfg.embedding.model
        texts = self.table(NORMALIZED).select(S.SAMPLE_ID, S.LANG, sample_text().alias(_TEXT))

        def compute(rows: DataFrame, counter: Accumulator) -> DataFrame:
            ordered = rows.sortWithinPartitions(F.length(_TEXT), S.SAMPLE_ID)
            udf = embed_udf(model_cfg, location, model_cfg.response_prefix, counter)
            return ordered.select(S.SAMPLE_ID, S.LANG, udf(F.col(_TEXT)).alias(S.EMBEDDING))

        return self._compute_missing(EMBEDDINGS, texts, fingerprint, compute, self.cfg.spark.rows_per_commit)

    def cluster(self) -> dict:
        source = SCORES if self.cfg.embedding.source == "qsm" else EMBEDDINGS
        result = cluster_by_language(self.spark, self.model_table(source), self.cfg.clustering, self.cfg.seed)
        writers.write_table(result.assignments, self.path(CLUSTERS), partition_by=(S.LANG,))
        writers.write_table(result.centroids.coalesce(1), self.path(CENTROIDS))
        return {"k_per_lang": result.k_per_lang}

    def select(self) -> dict:
        cfg = self.cfg
        scores = self.model_table(SCORES).select(S.SAMPLE_ID, S.QSM_SCORE, S.MODEL_FINGERPRINT)
        clusters = self.table(CLUSTERS)
        content = self.table(NORMALIZED)
        embeddings = self.model_table(SCORES if cfg.embedding.source == "qsm" else EMBEDDINGS).select(
            S.SAMPLE_ID, S.EMBEDDING
        )
        # annotations from the content: rule flags, translation defects, cross-lingual, domain
        notes = add_flags(content, cfg.filters, cfg.translation, cfg.crosslingual).withColumn(
            DOMAIN, domain_tag(cfg.domains)
        )
        notes = notes.select(S.SAMPLE_ID, S.LANG, FLAGS, CROSSLINGUAL, DOMAIN)
        notable = (F.size(FLAGS) > 0) | F.col(CROSSLINGUAL) | (F.col(DOMAIN) != F.lit(GENERAL))
        writers.write_table(notes.where(notable).repartition(1), self.path(FLAGGED))
        notes = self.table(FLAGGED).select(S.SAMPLE_ID, FLAGS, CROSSLINGUAL, DOMAIN)
        candidates = (
            clusters.join(scores.drop(S.MODEL_FINGERPRINT), on=S.SAMPLE_ID)
            .join(notes, on=S.SAMPLE_ID, how="left")
            .withColumn(FLAGS, F.coalesce(F.col(FLAGS), F.array().cast("array<string>")))
            .withColumn(CROSSLINGUAL, F.coalesce(F.col(CROSSLINGUAL), F.lit(False)))
            .withColumn(DOMAIN, F.coalesce(F.col(DOMAIN), F.lit(GENERAL)))
        )
        if cfg.filters.action == "demote":
            # scores live in [-1, 1]: shifting flagged ones below -1 ranks them after every clean sample
            flagged = F.size(FLAGS) > 0
            candidates = candidates.withColumn(
                S.QSM_SCORE, F.when(flagged, F.col(S.QSM_SCORE) - F.lit(DEMOTE_OFFSET)).otherwise(F.col(S.QSM_SCORE))
            )
        separate = cfg.crosslingual.enabled and cfg.crosslingual.separate_budget
        group = F.when(F.col(CROSSLINGUAL) & F.lit(separate), F.lit(CROSSLINGUAL_GROUP))
        candidates = candidates.withColumn(GROUP, group.otherwise(F.lit(MONOLINGUAL_GROUP)))
        # every candidate with its pruning decision: candidates = survivors + pruned, per reason
        writers.write_table(prune(candidates, embeddings, cfg), self.path(CANDIDATES), partition_by=(S.LANG,))
        pool = self.table(CANDIDATES).where(F.col(PRUNE_REASON).isNull())
        if cfg.selection.strategy == "mmr":
            pool = pool.join(embeddings, on=S.SAMPLE_ID)
        chosen = select(pool.where(F.col(GROUP) == MONOLINGUAL_GROUP), cfg.selection)
        if separate:
            xl = cfg.selection.model_copy(
                update={
                    "budget_fraction": cfg.crosslingual.budget_fraction,
                    "budget_count": cfg.crosslingual.budget_count,
                    "budget_per_lang": {},
                }
            )
            chosen = chosen.unionByName(select(pool.where(F.col(GROUP) == CROSSLINGUAL_GROUP), xl))
        chosen = chosen.drop(S.QSM_SCORE, S.CLUSTER_ID)
        kept_notes = self.table(CANDIDATES).select(
            S.SAMPLE_ID,
            S.CLUSTER_ID,
            S.CENTROID_DISTANCE,
            FLAGS,
            CROSSLINGUAL,
            GROUP,
            DOMAIN,
            NEAR_DUP_COUNT,
            COPY_GROUP,
            COPY_COUNT,
        )
        out = (
            chosen.join(content.drop(S.LANG), on=S.SAMPLE_ID)
            .join(kept_notes, on=S.SAMPLE_ID)
            .join(scores, on=S.SAMPLE_ID)
        )
        lead = [S.SAMPLE_ID, S.LANG, S.SELECTION_REASON, S.QSM_SCORE, S.QUALITY_RANK, S.CLUSTER_ID]
        out = out.select(*lead, *[c for c in out.columns if c not in lead])
        out = out.repartition(S.LANG).sortWithinPartitions(GROUP, S.QUALITY_RANK)
        info: dict[str, object] = {"filters_action": cfg.filters.action, "strategy": cfg.selection.strategy}
        if cfg.output.format == "delta":
            staged = self.path(f"{STAGING}/{SELECTED}")
            writers.write_table(out, staged, partition_by=(S.LANG,))
            info["delta"] = delta.merge_on_key(
                self.spark.read.parquet(staged), staged, self.path(SELECTED), S.SAMPLE_ID, (S.LANG,)
            )
            writers.delete(self.spark, self.path(STAGING))
        else:
            writers.write_table(out, self.path(SELECTED), partition_by=(S.LANG,))
        info["selected"] = self.selected_table().count()
        return info

    def selected_table(self) -> DataFrame:
        if self.cfg.output.format == "delta":
            return delta.read_delta(self.spark, self.path(SELECTED))
        return self.table(SELECTED)

    # -------------------------------------------------------------- driver

    def execute(self) -> dict:
        from mdaq_spark.report import write_stats

        cfg = self.cfg
        ingest_key = _digest(_section(cfg.input), _section(cfg.language), _input_signature(cfg.input.paths))
        self.stage("ingest", ingest_key, self.ingest)

        encoder_location = registry.ensure_prepared(cfg.model.name, cfg.model.cache_dir)
        encoder_fp = registry.encoder_fingerprint(encoder_location, cfg.model)
        # downstream keys follow the corpus content, not its files (see _content_digest)
        content = str(self.info["ingest"].get("content_digest", ingest_key))
        encode_key = _digest(content, encoder_fp)
        self.stage("encode", encode_key, lambda: self.encode(encoder_location, encoder_fp))

        head_dir = registry.resolve_head(cfg.model.qsm_head, cfg.model.name)
        qsm_fp = registry.fingerprint(head_dir, encoder_fp) if head_dir else encoder_fp
        score_key = _digest(encode_key, qsm_fp)
        self.stage("score", score_key, lambda: self.score(head_dir, qsm_fp))

        upstream = score_key
        if cfg.embedding.source == "model":
            emb_cfg = cfg.embedding.model
            emb_location = registry.ensure_prepared(emb_cfg.name, emb_cfg.cache_dir)
            emb_fp = registry.fingerprint(emb_location, _section(emb_cfg))
            upstream = _digest(content, emb_fp)
            self.stage("embed", upstream, lambda: self.embed(emb_location, emb_fp))

        cluster_key = _digest(upstream, _section(cfg.clustering), str(cfg.seed))
        self.stage("cluster", cluster_key, self.cluster)
        self.stage("select", select_key(cfg, cluster_key, score_key), self.select)

        started = time.perf_counter()
        stats = write_stats(self)
        self.timings["report"] = round(time.perf_counter() - started, 2)
        return stats


def run_pipeline(
    spark: SparkSession, cfg: JobConfig, on_progress: Callable[[str, int, int], None] | None = None
) -> dict:
    return Run(spark, cfg, on_progress=on_progress).execute()
