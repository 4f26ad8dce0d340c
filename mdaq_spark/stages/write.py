"""Write the selection: the chosen samples with their content, notes and scores, as parquet or Delta.

With output.format: delta the table is refreshed by MERGE on sample_id, so a scheduled run
updates the rows that changed and readers of the table never see it half written.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from mdaq_spark import schema as S
from mdaq_spark.io import delta, writers
from mdaq_spark.rundir import SELECTED, STAGING, RunDir

LEAD_COLUMNS = (S.SAMPLE_ID, S.LANG, S.SELECTION_REASON, S.QSM_SCORE, S.QUALITY_RANK, S.CLUSTER_ID)
# what selected/ carries of each candidate besides its content and score
CANDIDATE_NOTES = (
    S.SAMPLE_ID,
    S.CLUSTER_ID,
    S.CENTROID_DISTANCE,
    S.FLAGS,
    S.CROSSLINGUAL,
    S.GROUP,
    S.DOMAIN,
    S.NEAR_DUP_COUNT,
    S.COPY_GROUP,
    S.COPY_COUNT,
)


def assemble(chosen: DataFrame, content: DataFrame, candidates: DataFrame, scores: DataFrame) -> DataFrame:
    """One row per chosen sample: ids and decision first, then content, notes and the model's score."""
    out = (
        chosen.drop(S.QSM_SCORE, S.CLUSTER_ID)
        .join(content.drop(S.LANG), on=S.SAMPLE_ID)
        .join(candidates.select(*CANDIDATE_NOTES), on=S.SAMPLE_ID)
        .join(scores, on=S.SAMPLE_ID)
    )
    out = out.select(*LEAD_COLUMNS, *[c for c in out.columns if c not in LEAD_COLUMNS])
    return out.repartition(S.LANG).sortWithinPartitions(S.GROUP, S.QUALITY_RANK)


def write_selected(spark: SparkSession, rundir: RunDir, out: DataFrame, file_format: str) -> dict:
    """Write selected/ (parquet: replaced; delta: merged); returns what the marker records of it."""
    info: dict[str, object] = {}
    if file_format == "delta":
        staged = rundir.staging(SELECTED)
        writers.write_table(out, staged, partition_by=(S.LANG,))
        info["delta"] = delta.merge_on_key(
            spark.read.parquet(staged), staged, rundir.path(SELECTED), S.SAMPLE_ID, (S.LANG,)
        )
        writers.delete(spark, rundir.path(STAGING))
    else:
        writers.write_table(out, rundir.path(SELECTED), partition_by=(S.LANG,))
    info["selected"] = rundir.selected_table(file_format).count()
    return info
