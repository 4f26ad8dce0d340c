"""Config: the YAML reference equals the typed defaults, and mistakes fail before Spark starts."""

from __future__ import annotations

import pytest
import yaml

from mdaq_spark.config import JobConfig, check_runnable, load_config
from mdaq_spark.errors import ConfigError
from tests.conftest import REPO


def test_default_yaml_is_exactly_the_typed_defaults():
    tree = yaml.safe_load((REPO / "mdaq_spark" / "conf" / "default.yaml").read_text())
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
        ("selection.budget_per_lang={de: 0}", r"at least 1 sample: fix \['de'\]"),
        ("selection.quality_parts=0", None),
        ("spark.rows_per_commit=0", "rows_per_commit"),
    ],
)
def test_bad_config_says_what_to_fix(override, message):
    if message is None:  # a valid corner: quality 0 parts is a pure diversity selection
        load_config(None, [override])
        return
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
    from mdaq_spark.resources import check_model_resources

    cfg = load_config(REPO / "conf" / "cluster.yaml")
    assert cfg.model.device == "cuda" and cfg.spark.model_task_resources.gpu == 1
    # only the model stages ask for the GPU, and the executors have it
    assert "spark.task.resource.gpu.amount" not in cfg.spark.conf
    check_model_resources("spark://master:7077", cfg.spark.conf, cfg.spark.model_task_resources)


def _leaf_keys(model_cls, prefix: str = "") -> list[str]:
    """Every settable key of a pydantic config class, dotted; nested sections are walked."""
    from pydantic import BaseModel

    keys = []
    for name, info in model_cls.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _leaf_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_config_reference_is_generated_and_complete():
    import importlib.util

    from mdaq_spark.config import JobConfig
    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("config_reference", REPO / "scripts" / "config_reference.py")
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    table = ref.render((REPO / "mdaq_spark" / "conf" / "default.yaml").read_text(encoding="utf-8"))
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert f"{ref.START}\n{table}\n{ref.END}" in page, "run: python scripts/config_reference.py --write"
    documented = {
        key for key, _, _ in ref.rows((REPO / "mdaq_spark" / "conf" / "default.yaml").read_text(encoding="utf-8"))
    }
    missing = [k for k in _leaf_keys(JobConfig) if k not in documented]
    assert not missing, f"keys without a line in conf/default.yaml: {missing}"


def test_config_reference_keeps_quoted_keys_section_comments_and_pipes():
    """`"no":` is a key (YAML would read a bare no as false), a section's comment is its row, and
    `|` in a comment stays a pipe inside the table cell."""
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("config_reference", REPO / "scripts" / "config_reference.py")
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    yaml_text = (
        "langs:                 # allowed pairs\n"
        '  allowed:\n    "no": [da, nb]   # Norwegian\n    cs: [sk]\n'
        '  mode: "a||b"         # a|| | b\n'
    )
    assert ref.rows(yaml_text) == [
        ("langs", "(section)", "allowed pairs"),
        ("langs.allowed", "(section)", ""),
        ("langs.allowed.no", "[da, nb]", "Norwegian"),
        ("langs.allowed.cs", "[sk]", ""),
        ("langs.mode", '"a||b"', "a|| | b"),
    ]
    assert '| `langs.mode` | `"a\\|\\|b"` | a\\|\\| \\| b |' in ref.render(yaml_text).splitlines()


def test_spark_conf_keys_keep_their_dots_and_values_become_text():
    """`--set spark.conf.<a spark key>=v` sets one key of the map; YAML's true and 8 reach Spark as text."""
    cfg = load_config(
        None,
        [
            "spark.conf.spark.hadoop.fs.s3a.endpoint=http://127.0.0.1:9000",
            "spark.conf.spark.hadoop.fs.s3a.path.style.access=true",
            "spark.conf.spark.executor.cores=8",
            "spark.packages=[delta]",
            "spark.delta_engine=delta-rs",
        ],
    )
    assert cfg.spark.conf == {
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.executor.cores": "8",
    }
    assert cfg.spark.packages == ["delta"] and cfg.spark.delta_engine == "delta-rs"
    with pytest.raises(ConfigError, match="spark.delta_engine"):
        load_config(None, ["spark.delta_engine=spark"])
    with pytest.raises(ConfigError, match="spark.packages"):
        load_config(None, ["spark.packages=[hdfs]"])
