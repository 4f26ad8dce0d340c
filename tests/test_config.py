"""Config: the YAML reference equals the typed defaults, and mistakes fail before Spark starts."""

from __future__ import annotations

import pytest
import yaml

from mdaq_spark.config import JobConfig, check_runnable, load_config
from mdaq_spark.errors import ConfigError
from tests.conftest import REPO


def test_default_yaml_is_exactly_the_typed_defaults():
    tree = yaml.safe_load((REPO / "conf" / "default.yaml").read_text())
    assert JobConfig.model_validate(tree) == JobConfig()
    assert set(tree) == set(JobConfig.model_fields)  # every section is documented


def test_overrides_keep_yaml_types():
    cfg = load_config(
        None, ["selection.budget_count=500", "selection.budget_fraction=null", "language.languages=[de, fr]"]
    )
    assert cfg.selection.budget_count == 500 and cfg.selection.budget_fraction is None
    assert cfg.language.languages == ["de", "fr"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("selection.budget_fractoin=0.1", "budget_fractoin"),
        ("selection.budget_fraction=1.5", "budget_fraction"),
        ("clustering.k=0", "clustering.k"),
        ("model.device=tpu", "model.device"),
        ("nonsense", "section.key=value"),
    ],
)
def test_bad_config_says_what_to_fix(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_both_budgets_is_an_error():
    with pytest.raises(ConfigError, match="budget"):
        load_config(None, ["selection.budget_count=10"])  # the fraction default is also set


def test_missing_input_is_reported_before_spark(tmp_path):
    cfg = load_config(None, [], **{"input.paths": [str(tmp_path / "nope.jsonl")], "output.path": str(tmp_path / "o")})
    with pytest.raises(ConfigError, match="not found"):
        check_runnable(cfg)
    with pytest.raises(ConfigError, match="no input"):
        check_runnable(load_config(None, []))


def test_cluster_yaml_is_a_valid_config():
    cfg = load_config(REPO / "conf" / "cluster.yaml")
    assert cfg.model.device == "cuda" and cfg.spark.conf["spark.task.resource.gpu.amount"] == "1"
