"""Checks on the trained model: it beats the baseline, and its predictions behave."""

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.config import Paths
from {{ cookiecutter.package_name }}.io import read_json
from {{ cookiecutter.package_name }}.pipeline.evaluate import classification_metrics
from {{ cookiecutter.package_name }}.pipeline.train import binary_target

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def model(pipeline_outputs: Path):
    return joblib.load(pipeline_outputs / Paths.model)


@pytest.fixture(scope="module")
def test_set(pipeline_outputs: Path, schema, params) -> tuple[pd.DataFrame, np.ndarray]:
    table = schema.read_csv(pipeline_outputs / Paths.test_data)
    return table[schema.feature_names], binary_target(
        table[schema.target], params.data.positive_label
    ).to_numpy()


def test_model_beats_the_baseline_on_the_test_split(
    pipeline_outputs: Path, model, test_set, params
) -> None:
    features, y_true = test_set
    baseline = joblib.load(pipeline_outputs / Paths.baseline_model)
    cost = params.evaluate.cost_matrix
    ours = classification_metrics(y_true, model.predict_proba(features)[:, 1], cost)
    theirs = classification_metrics(y_true, baseline.predict_proba(features)[:, 1], cost)
    primary = params.evaluate.primary_metric
    assert ours[primary] - theirs[primary] >= params.evaluate.min_gain_over_baseline
    assert ours["cost"] <= theirs["cost"]
    for name, threshold in params.evaluate.thresholds.items():
        assert ours[name] >= threshold, name
    assert read_json(pipeline_outputs / Paths.metrics)["model"][primary] == pytest.approx(
        ours[primary]
    )


def test_probabilities_are_valid_and_deterministic(model, test_set) -> None:
    features, _ = test_set
    first = model.predict_proba(features)
    assert np.all((first >= 0) & (first <= 1))
    np.testing.assert_allclose(first.sum(axis=1), 1.0)
    np.testing.assert_array_equal(first, model.predict_proba(features))


def test_column_order_and_batching_do_not_change_predictions(model, test_set) -> None:
    features, _ = test_set
    expected = model.predict_proba(features)[:, 1]
    shuffled = features[list(reversed(features.columns))]
    np.testing.assert_allclose(model.predict_proba(shuffled)[:, 1], expected)
    one_by_one = [model.predict_proba(features.iloc[[i]])[0, 1] for i in range(10)]
    np.testing.assert_allclose(one_by_one, expected[:10])


def test_missing_optional_values_still_get_a_prediction(model, test_set, schema) -> None:
    features, _ = test_set
    nullable = [column.name for column in schema.columns if column.nullable]
    blanked = features.head(5).copy()
    blanked[nullable] = np.nan
    assert model.predict_proba(blanked).shape == (5, 2)
