"""From exchange scores to a sample's score: scorers combined per exchange, then turns aggregated.

One scorer: an exchange's score is the scorer's own, so a single-turn sample's qsm_score is
exactly the QSM's. Several: each scorer's exchange scores are normalised within the language
(percentile rank, or z-score) and combined by weight, since a reward model's logits and a
cosine share no scale. Then a sample's exchanges, in turn order, give `turn_scores`, its
score (min: the weakest turn decides; mean; softmin: a smooth min) and the weakest turn.
Each scorer's raw aggregate is kept in `scorer_scores`.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from mdaq_spark import schema as S
from mdaq_spark.config import ScoringConfig


def _normalised(column: str, how: str) -> Column:
    by_lang = Window.partitionBy(S.LANG)
    if how == "rank":
        return F.percent_rank().over(by_lang.orderBy(F.col(column)))
    std = F.stddev_pop(column).over(by_lang)
    return F.when(std > 0, (F.col(column) - F.mean(column).over(by_lang)) / std).otherwise(F.lit(0.0))


def aggregate_array(scores: Column, how: str, temperature: float) -> Column:
    """One value from a non-empty array of turn scores; one element is that element exactly."""
    if how == "min":
        return F.array_min(scores)
    if how == "mean":
        return F.aggregate(scores, F.lit(0.0), lambda acc, x: acc + x) / F.size(scores)
    low = F.array_min(scores)  # softmin = low - t * log(mean(exp(-(x - low) / t))): stable, and low for one turn
    t = F.lit(float(temperature))
    mean_exp = F.aggregate(scores, F.lit(0.0), lambda acc, x: acc + F.exp(-(x - low) / t)) / F.size(scores)
    return low - t * F.log(mean_exp)


SINGLE = "_single"  # a turns row that is its sample's only exchange (sample_scores' input)


def score_column(i: int) -> str:
    """The column of the i-th scorer's raw exchange score in `sample_scores`' input (names may hold any character)."""
    return f"_score{i}"


def sample_scores(turns: DataFrame, names: list[str], weights: list[float], cfg: ScoringConfig) -> DataFrame:
    """turns: SAMPLE_ID, LANG, TURN, SINGLE and score_column(i) per scorer ->
    SAMPLE_ID, LANG, QSM_SCORE, TURN_SCORES, WEAKEST_TURN, SCORER_SCORES (keyed by `names`).

    SINGLE marks a sample with one exchange and no other row: its scores are that exchange's
    as they are (every aggregate of one value is the value), so most corpora never group.
    """
    columns = [score_column(i) for i in range(len(names))]
    if len(names) == 1:
        combined = F.col(columns[0])
    else:
        total = sum(weights)
        combined = sum(F.lit(w / total) * _normalised(c, cfg.normalise) for c, w in zip(columns, weights, strict=True))
    turns = turns.withColumn("_combined", combined.cast("double"))
    single = turns.where(F.col(SINGLE)).select(
        S.SAMPLE_ID,
        S.LANG,
        F.col("_combined").alias(S.QSM_SCORE),
        F.array("_combined").alias(S.TURN_SCORES),
        F.lit(0).alias(S.WEAKEST_TURN),
        F.map_from_arrays(F.array(*[F.lit(n) for n in names]), F.array(*columns)).alias(S.SCORER_SCORES),
    )
    ordered = F.array_sort(F.collect_list(F.struct(S.TURN, "_combined", *columns)))
    per_sample = turns.where(~F.col(SINGLE)).groupBy(S.SAMPLE_ID, S.LANG).agg(ordered.alias("_turns"))
    scores = F.col("_turns._combined")
    temperature = cfg.softmin_temperature
    grouped = per_sample.select(
        S.SAMPLE_ID,
        S.LANG,
        aggregate_array(scores, cfg.aggregate, temperature).alias(S.QSM_SCORE),
        scores.alias(S.TURN_SCORES),
        (F.array_position(scores, F.array_min(scores)) - 1).cast("int").alias(S.WEAKEST_TURN),
        F.map_from_arrays(
            F.array(*[F.lit(n) for n in names]),
            F.array(*[aggregate_array(F.col(f"_turns.{c}"), cfg.aggregate, temperature) for c in columns]),
        ).alias(S.SCORER_SCORES),
    )
    return single.unionByName(grouped)
