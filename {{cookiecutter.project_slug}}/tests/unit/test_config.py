from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.package_name }}.config import Paths, load_params
from {{ cookiecutter.package_name }}.errors import ConfigError
from tests.conftest import edit_params

pytestmark = pytest.mark.unit

# A binary task's settings, whatever task the project was made for: the tests below start from it.
BINARY = {
    "data__task": "binary",
    "data__positive_label": 1,
    "evaluate__primary_metric": "roc_auc",
    "evaluate__thresholds": {"roc_auc": 0.7, "precision": 0.8},
    "evaluate__cost_matrix": {"fp": 5, "fn": 1},
    "fairness__thresholds": {
        "demographic_parity_difference": 0.45,
        "equalized_odds_difference": 0.55,
    },
    "train__baseline": "prior",
    "train__scoring": "roc_auc",
    "train__decision_threshold": "minimize_cost",
}


@pytest.fixture
def binary(workspace: Path) -> Path:
    """The workspace with a binary task's settings."""
    edit_params(workspace, **BINARY)
    return workspace


def test_project_params_load(params) -> None:
    assert params.train.model in params.train.search
    assert params.data.sensitive_features


def test_the_target_cannot_be_a_measured_only_column(workspace: Path, params) -> None:
    with pytest.raises(ConfigError, match=r"data\.not_model_inputs"):
        edit_params(workspace, data__not_model_inputs=[params.data.target])


def test_a_pinned_threshold_is_a_number(binary: Path) -> None:
    assert edit_params(binary, train__decision_threshold=0.7).train.decision_threshold == 0.7


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train__cv_folds": 1}, "train.cv_folds"),
        ({"train__model": "svm"}, "train.model"),
        ({"split__test_size": 1.5}, "split.test_size"),
        ({"evaluate__thresholds": {"roc_auc": 0.7, "speed": 1}}, "evaluate.thresholds.speed"),
        ({"evaluate__cost_matrix": {"fp": -1, "fn": 1}}, "evaluate.cost_matrix.fp"),
        ({"validate__max_missing_share": 2}, "validate.max_missing_share"),
        ({"data__unknown_key": 1}, "data.unknown_key"),
        (
            {
                "data__derived_columns": {
                    "age_group": {"source": "age", "bins": [0, 30, 99], "labels": ["young"]}
                }
            },
            "one label per bin",
        ),
        ({"serving__max_records": 0}, "serving.max_records"),
        ({"serving__workers": 0}, "serving.workers"),
        ({"serving__inference_threads": "all"}, "serving.inference_threads"),
        ({"serving__timeout": -1}, "serving.timeout"),
        ({"serving__max_batch_size": 0}, "serving.max_batch_size"),
        ({"train__decision_threshold": 1.5}, "train.decision_threshold"),
        ({"train__decision_threshold": "lowest_cost"}, "minimize_cost"),
        ({"train__decision_threshold": True}, "train.decision_threshold"),
        ({"deploy__champion__max_cost_increase": -0.1}, "deploy.champion.max_cost_increase"),
        ({"deploy__champion__max_metric_drop": -1}, "deploy.champion.max_metric_drop"),
        ({"deploy__champion__min_labelled_rows": 0}, "deploy.champion.min_labelled_rows"),
    ],
)
def test_bad_params_name_the_key(binary: Path, change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=r"params\.yaml") as caught:
        edit_params(binary, **change)
    assert message in str(caught.value)


def test_missing_and_malformed_params_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_dvc_yaml_outputs_are_the_paths_the_code_writes(project_root: Path) -> None:
    stages = yaml.safe_load((project_root / "dvc.yaml").read_text())["stages"]
    declared = set()
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                declared.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    written = {
        str(value)
        for name, value in vars(Paths).items()
        if isinstance(value, Path)
        and name not in ("plots", "problem", "bentoml_home", "monitoring")
    }
    assert written - declared == set(), "written by code but not declared in dvc.yaml"
    undeclared = {path for path in declared - written if not path.startswith(f"{Paths.plots}/")}
    assert undeclared == set(), "declared in dvc.yaml but not written by code"


def test_another_task_lists_every_key_whose_meaning_depends_on_it(binary: Path) -> None:
    with pytest.raises(ConfigError) as error:
        edit_params(binary, data__task="regression")
    message = str(error.value)
    for expected in (
        "data.positive_label: a regression task has no positive class: set it to null",
        "evaluate.cost_matrix.under: Field required",
        "evaluate.primary_metric: 'roc_auc' is not one of a regression task's",
        "evaluate.thresholds.precision: 'precision' is not one of",
        "fairness.thresholds.equalized_odds_difference: 'equalized_odds_difference' is not",
        "train.baseline: 'prior' is not one of a regression task's ['median', 'mean']",
        "train.scoring: 'roc_auc' does not score a regression model",
    ):
        assert expected in message, (expected, message)


def test_a_multiclass_task_takes_a_class_cost_mapping(binary: Path) -> None:
    workspace = binary
    multiclass = {
        "data__task": "multiclass",
        "data__positive_label": None,
        "evaluate__primary_metric": "macro_f1",
        "evaluate__thresholds": {"macro_f1": 0.3},
        "fairness__thresholds": {"accuracy_difference": 0.2},
        "train__scoring": "f1_macro",
        "train__decision_threshold": "most_probable",
    }
    params = edit_params(workspace, **multiclass, evaluate__cost_matrix={"a": {"b": 2}})
    assert params.costs.model_dump() == {"a": {"b": 2.0}}
    with pytest.raises(ConfigError, match=r"evaluate\.cost_matrix\.a\.b: Input should be"):
        edit_params(workspace, evaluate__cost_matrix={"a": {"b": -1}})
    with pytest.raises(ConfigError, match=r"train\.decision_threshold: must be 'minimize_cost'"):
        edit_params(workspace, evaluate__cost_matrix={"a": {"b": 1}}, train__decision_threshold=0.5)
