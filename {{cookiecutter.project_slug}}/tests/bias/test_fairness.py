"""Fairness across the sensitive groups named in params.yaml, recomputed from the model."""

from pathlib import Path

import joblib
import pytest

from {{ cookiecutter.package_name }}.config import Paths
from {{ cookiecutter.package_name }}.io import read_json
from {{ cookiecutter.package_name }}.pipeline.fairness import (
    add_derived_columns,
    assess,
    sensitive_columns,
)
from {{ cookiecutter.package_name }}.pipeline.train import binary_target

pytestmark = pytest.mark.bias


@pytest.fixture(scope="module")
def assessments(pipeline_outputs: Path, schema, params) -> dict[str, dict]:
    test = add_derived_columns(
        schema.read_csv(pipeline_outputs / Paths.test_data), params.data.derived_columns
    )
    y_pred = joblib.load(pipeline_outputs / Paths.model).predict(test[schema.feature_names])
    y_true = binary_target(test[schema.target], params.data.positive_label)
    groups = sensitive_columns(test, params.data.sensitive_features)
    return {feature: assess(y_true, y_pred, column) for feature, column in groups.items()}


def test_every_sensitive_feature_is_assessed(assessments, params) -> None:
    assert set(assessments) == set(params.data.sensitive_features)
    for feature, result in assessments.items():
        assert len(result["groups"]) >= 2, f"{feature} has a single group: nothing to compare"


def test_disparities_within_thresholds(assessments, params) -> None:
    assert params.fairness.thresholds, "no fairness threshold configured"
    for measure, limit in params.fairness.thresholds.items():
        for feature, result in assessments.items():
            assert result[measure] <= limit, f"{feature}: {measure} {result[measure]:.3f} > {limit}"


def test_report_matches_the_model(assessments, pipeline_outputs: Path) -> None:
    report = read_json(pipeline_outputs / Paths.fairness)
    assert report["gate"]["passed"]
    for feature, result in assessments.items():
        assert report["features"][feature]["demographic_parity_difference"] == pytest.approx(
            result["demographic_parity_difference"]
        )
