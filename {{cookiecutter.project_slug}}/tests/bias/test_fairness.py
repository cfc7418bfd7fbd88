"""Fairness checks the fairness gate does not make: attributes measured but not used cannot
change a decision, groups too small to judge are left out (and said to be), and the report is
this model's."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.bundle import ModelBundle
from {{ cookiecutter.package_name }}.config import Paths
from {{ cookiecutter.package_name }}.io import read_json

pytestmark = pytest.mark.bias


@pytest.fixture(scope="module")
def test_split(pipeline_outputs: Path, bundle: ModelBundle) -> pd.DataFrame:
    return bundle.schema.read_csv(pipeline_outputs / Paths.test_data)


def test_measured_only_attributes_are_not_model_inputs(bundle: ModelBundle, params) -> None:
    assert set(bundle.measured_only) == set(params.data.not_model_inputs)
    assert not set(bundle.measured_only) & set(bundle.features)


def test_the_fitted_pipeline_takes_no_measured_only_attribute(bundle: ModelBundle, params) -> None:
    """Read from the trained pipeline itself, not from the bundle's list of inputs: the bundle
    hands the pipeline only `features`, so flipping an attribute through it cannot show what
    the pipeline was fitted on, and the service's fast path takes its columns from the pipeline."""
    fitted = getattr(bundle.pipeline, "feature_names_in_", None)
    assert fitted is not None, "the pipeline was fitted without column names: inputs unknown"
    leaked = sorted(set(params.data.not_model_inputs) & set(fitted))
    assert not leaked, f"measured-only attributes are inputs of the trained pipeline: {leaked}"
    assert tuple(fitted) == bundle.features


def test_flipping_a_measured_only_attribute_changes_no_prediction(
    bundle: ModelBundle, test_split: pd.DataFrame
) -> None:
    if not bundle.measured_only:
        pytest.skip("every attribute is a model input (data.not_model_inputs is empty)")
    expected = bundle.outputs(test_split)
    for name in bundle.measured_only:
        column = bundle.schema.column(name)
        flipped = test_split.copy()
        if column.type == "category":
            values = list(column.categories)
            shifted = {value: values[(i + 1) % len(values)] for i, value in enumerate(values)}
            flipped[name] = flipped[name].map(shifted)
        else:
            flipped[name] = column.max if column.max is not None else flipped[name] * 2
        assert not flipped[name].equals(test_split[name])
        np.testing.assert_array_equal(bundle.outputs(flipped), expected, err_msg=name)


def test_small_groups_are_reported_not_judged(
    pipeline_outputs: Path, bundle: ModelBundle, test_split: pd.DataFrame, params
) -> None:
    report = read_json(pipeline_outputs / Paths.fairness)
    least = params.fairness.min_group_rows
    for feature, groups in bundle.sensitive_groups(test_split).items():
        counts = groups.value_counts()
        reported = report["features"][feature]
        judged = {name for name, n in counts.items() if n >= least}
        assert len(judged) >= 2, f"{feature}: fewer than two groups to compare: {counts}"
        assert set(reported["groups"]) == judged, feature
        assert reported["not_judged"] == {
            name: int(n) for name, n in counts.items() if n < least
        }, feature


def test_report_is_this_models_at_its_decision(
    pipeline_outputs: Path, bundle: ModelBundle, test_split: pd.DataFrame, params
) -> None:
    report = read_json(pipeline_outputs / Paths.fairness)
    assert report["decision_threshold"] == bundle.decision.value
    y_true = pd.Series(bundle.encode(test_split[bundle.target]), index=test_split.index)
    y_pred = pd.Series(bundle.decide(bundle.outputs(test_split)), index=test_split.index)
    for feature, groups in bundle.sensitive_groups(test_split).items():
        judged = groups.map(groups.value_counts()) >= params.fairness.min_group_rows
        measured = bundle.task.fairness(y_true[judged], y_pred[judged], groups[judged])
        reported = report["features"][feature]
        assert reported["role"] == bundle.role(feature)
        for measure in bundle.task.disparities:
            assert reported[measure] == pytest.approx(measured[measure]), (feature, measure)
