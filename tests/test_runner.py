"""The runner holds stages to their declared tables: a missing column fails with the stage's name, no marker."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mdaq_spark import schema as S
from mdaq_spark.io import writers
from mdaq_spark.pipeline.runner import Runner, StageContractError
from mdaq_spark.rundir import CLUSTERS, NORMALIZED, RunDir
from mdaq_spark.stages.base import Stage, StageContext, Table


@dataclass(frozen=True)
class _Copy(Stage):
    """Copies normalized/ to clusters/, declaring what it needs and makes."""

    name = "copy"
    needs: tuple[str, ...]
    makes: tuple[str, ...]

    @property
    def requires(self) -> tuple[Table, ...]:
        return (Table(NORMALIZED, self.needs),)

    @property
    def produces(self) -> tuple[Table, ...]:
        return (Table(CLUSTERS, self.makes),)

    def key(self) -> str:
        return "k"

    def run(self, ctx: StageContext) -> dict:
        writers.write_table(ctx.rundir.table(NORMALIZED), ctx.rundir.path(CLUSTERS))
        return {"rows": ctx.rundir.table(CLUSTERS).count()}


@pytest.fixture
def runner(spark, tmp_path):
    rundir = RunDir(str(tmp_path / "run"), spark=spark)
    rows = spark.createDataFrame([("a", "de"), ("b", "fr")], [S.SAMPLE_ID, S.LANG])
    writers.write_table(rows, rundir.path(NORMALIZED))
    return Runner(StageContext(spark, rundir), "parquet")


def test_a_stage_that_keeps_its_contract_runs_once(runner):
    stage = _Copy((S.SAMPLE_ID, S.LANG), (S.SAMPLE_ID,))
    assert runner.run(stage) == {"rows": 2}
    assert runner.ctx.rundir.marker("copy")["key"] == "k"
    runner.run(stage)
    assert runner.log.skipped == ["copy"]


def test_a_missing_required_column_fails_before_the_stage_runs(runner):
    with pytest.raises(StageContractError, match=r"stage copy needs normalized/ with columns \['qsm_score'\]"):
        runner.run(_Copy((S.SAMPLE_ID, S.QSM_SCORE), (S.SAMPLE_ID,)))
    assert not runner.ctx.rundir.exists(CLUSTERS) and runner.ctx.rundir.marker("copy") is None


def test_a_missing_produced_column_fails_without_a_marker(runner):
    with pytest.raises(StageContractError, match=r"stage copy did not write clusters/ with columns \['cluster_id'\]"):
        runner.run(_Copy((S.SAMPLE_ID,), (S.SAMPLE_ID, S.CLUSTER_ID)))
    assert runner.ctx.rundir.marker("copy") is None


def test_the_run_records_the_commit_it_started_on(runner):
    from mdaq_spark.report.stats import code_commit

    # the checkout's commit, read when the runner was made: a commit during a long run is not what ran
    assert runner.log.code_commit == code_commit()
    assert runner.log.code_commit is None or len(runner.log.code_commit) == 40
