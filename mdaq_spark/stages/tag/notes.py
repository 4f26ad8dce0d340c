"""A sample's notes from its content alone: rule flags, translation defects, cross-lingual mark, domain."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.config import JobConfig
from mdaq_spark.stages.tag.domains import domain_tag
from mdaq_spark.stages.tag.heuristics import add_flags

NOTE_COLUMNS = (S.FLAGS, S.CROSSLINGUAL, S.DOMAIN)


def annotate(content: DataFrame, cfg: JobConfig) -> DataFrame:
    """sample_id, lang, flags, crosslingual, domain of every sample of `content` (lazy)."""
    notes = add_flags(content, cfg.filters, cfg.translation, cfg.crosslingual).withColumn(
        S.DOMAIN, domain_tag(cfg.domains)
    )
    return notes.select(S.SAMPLE_ID, S.LANG, *NOTE_COLUMNS)


def notable() -> Column:
    """A sample worth writing to flagged/: a flag, a cross-lingual mark or a non-general domain."""
    return (F.size(S.FLAGS) > 0) | F.col(S.CROSSLINGUAL) | (F.col(S.DOMAIN) != F.lit(S.GENERAL))


def with_defaults(candidates: DataFrame) -> DataFrame:
    """Notes of samples absent from flagged/: no flag, not cross-lingual, general."""
    return (
        candidates.withColumn(S.FLAGS, F.coalesce(F.col(S.FLAGS), F.array().cast("array<string>")))
        .withColumn(S.CROSSLINGUAL, F.coalesce(F.col(S.CROSSLINGUAL), F.lit(False)))
        .withColumn(S.DOMAIN, F.coalesce(F.col(S.DOMAIN), F.lit(S.GENERAL)))
    )
