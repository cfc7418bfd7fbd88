"""The model bundle: the one contract every stage and the service decide by."""

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.bundle import (
    BUNDLE_FORMAT,
    DerivedGroup,
    ModelBundle,
    load_bundle,
)
from {{ cookiecutter.package_name }}.config import CostMatrix, DataConfig
from {{ cookiecutter.package_name }}.errors import ConfigError, PipelineError
from {{ cookiecutter.package_name }}.pipeline.train import build_model, model_inputs
from {{ cookiecutter.package_name }}.schema import ColumnSpec, Schema
from {{ cookiecutter.package_name }}.task import (
    BinaryClassification,
    Decision,
    binary_target,
    task_for,
)

pytestmark = pytest.mark.unit

SCHEMA = Schema(
    target="risk",
    target_values=(0, 1),
    columns=(
        ColumnSpec("age", "integer", min=18, max=100),
        ColumnSpec("sex", "category", categories=("female", "male")),
    ),
)
TABLE = pd.DataFrame({"age": [20, 30, 50, 70], "sex": ["female", "male"] * 2, "risk": [0, 0, 1, 1]})
DATA = DataConfig(
    source="data.csv",
    schema="schema.yaml",
    target="risk",
    positive_label=1,
    not_model_inputs=["sex"],
)
DATA_COSTS = CostMatrix(fp=5, fn=1)


def make(threshold: float = 0.5) -> ModelBundle:
    """A bundle around a real pipeline, chosen and fitted as train does it (its inputs, its
    preprocessing): a stand-in model that ignores its inputs could not show what reaches it."""
    inputs = model_inputs(SCHEMA, DATA)
    task = BinaryClassification(positive_label=1, negative_label=0, cost_fp=5, cost_fn=1)
    model = build_model(task, "logistic_regression", SCHEMA.subset(inputs), seed=0)
    model.fit(TABLE[list(inputs)], TABLE["risk"])
    return ModelBundle(
        pipeline=model,
        schema=SCHEMA,
        features=inputs,
        task=task,
        decision=Decision(threshold, "params"),
        family="logistic_regression",
        sensitive_features=("sex", "age_group"),
        derived_groups={
            "age_group": DerivedGroup("age", (0, 25, 45, 200), ("<25", "25-44", "45+"))
        },
    )


def test_decisions_follow_the_threshold() -> None:
    bundle = make(threshold=0.6)
    np.testing.assert_array_equal(bundle.decide(np.array([0.59, 0.6, 0.9])), [0, 1, 1])
    assert [bundle.label(d) for d in (1, 0)] == [1, 0]
    positive_column = list(bundle.pipeline.classes_).index(1)
    expected = bundle.pipeline.predict_proba(TABLE[["age"]])[:, positive_column]
    np.testing.assert_allclose(bundle.outputs(TABLE), expected)


def test_measured_only_columns_never_reach_the_model() -> None:
    bundle = make()
    assert bundle.measured_only == ("sex",)
    assert list(bundle.pipeline.feature_names_in_) == ["age"]  # what the model was fitted on
    with_sex_missing = TABLE.assign(sex=None)
    np.testing.assert_array_equal(bundle.outputs(with_sex_missing), bundle.outputs(TABLE))
    older = TABLE.assign(age=TABLE["age"] + 10)  # the model does read its inputs
    assert not np.allclose(bundle.outputs(older), bundle.outputs(TABLE))
    assert bundle.role("sex") == "measured only, not a model input"
    assert bundle.role("age_group") == "derived from age, a model input"


def test_sensitive_groups_bin_derived_attributes_left_closed() -> None:
    table = pd.DataFrame({"age": [19, 25, 44, 45, None], "sex": ["f", "m", None, "f", "m"]})
    groups = make().sensitive_groups(table)
    assert groups["age_group"].tolist() == ["<25", "25-44", "25-44", "45+", "unknown"]
    assert groups["sex"].tolist() == ["f", "m", "unknown", "f", "m"]
    with pytest.raises(ConfigError, match=r"data\.derived_columns\.age_group: source column 'age'"):
        make().sensitive_groups(table.drop(columns=["age"]))


def test_labels_are_compared_as_text() -> None:
    assert binary_target(pd.Series(["1", 1, 0, "yes"]), 1).tolist() == [1, 1, 0, 0]
    costs = DATA_COSTS
    binary = task_for("binary", "1", costs, SCHEMA.target_values)
    assert isinstance(binary, BinaryClassification) and binary.negative_label == 0
    with pytest.raises(ConfigError, match=r"data\.positive_label 'yes' is not one of"):
        task_for("binary", "yes", costs, SCHEMA.target_values)


def test_load_refuses_anything_but_a_current_bundle(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    make().save(path)
    assert load_bundle(path).decision.value == 0.5
    joblib.dump({"not": "a bundle"}, path)
    with pytest.raises(PipelineError, match="holds a dict, not a model bundle"):
        load_bundle(path)
    joblib.dump(ModelBundle(**{**vars(make()), "format": BUNDLE_FORMAT + 1}), path)
    with pytest.raises(PipelineError, match="rerun the train stage"):
        load_bundle(path)
    with pytest.raises(PipelineError, match="missing"):
        load_bundle(tmp_path / "none.joblib")
