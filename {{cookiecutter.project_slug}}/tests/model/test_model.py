"""Checks on the trained model bundle that the pipeline's gates do not make: its reports are
its own, its decisions hold up per group and under small input changes, and it is what train
chose on the training rows alone."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from {{ cookiecutter.package_name }}.bundle import ModelBundle
from {{ cookiecutter.package_name }}.config import MINIMIZE_COST, Paths
from {{ cookiecutter.package_name }}.io import read_json

pytestmark = pytest.mark.model

MIN_GROUP_ROWS = 20  # smaller groups are too noisy to judge
MAX_FLIPPED_SHARE = 0.10  # at most this share of decisions may flip under a 1% nudge


@pytest.fixture(scope="module")
def test_split(pipeline_outputs: Path, bundle: ModelBundle) -> pd.DataFrame:
    return bundle.schema.read_csv(pipeline_outputs / Paths.test_data)


def test_reported_metrics_are_this_bundles(pipeline_outputs: Path, bundle, test_split) -> None:
    """metrics.json was computed from this bundle at its threshold (not a stale model)."""
    metrics = read_json(pipeline_outputs / Paths.metrics)
    y_true = bundle.is_positive(test_split[bundle.target])
    proba = bundle.probabilities(test_split)
    decisions = bundle.decide(proba)
    assert metrics["decision"]["threshold"] == bundle.threshold
    assert metrics["model"]["roc_auc"] == pytest.approx(roc_auc_score(y_true, proba))
    assert metrics["model"]["positive_rate"] == pytest.approx(decisions.mean())


def test_threshold_is_the_one_train_chose(pipeline_outputs: Path, bundle, params) -> None:
    report = read_json(pipeline_outputs / Paths.train_report)
    assert report["decision_threshold"]["value"] == bundle.threshold
    if params.train.decision_threshold == MINIMIZE_COST:
        assert bundle.threshold_source == MINIMIZE_COST
        assert report["decision_threshold"]["cv_folds"] == params.train.cv_folds
    else:
        assert bundle.threshold == params.train.decision_threshold
    assert report["train_rows"] == len(pd.read_csv(pipeline_outputs / Paths.train_data))


def test_model_ranks_better_than_chance_in_every_group(bundle, test_split) -> None:
    y_true = bundle.is_positive(test_split[bundle.target])
    proba = bundle.probabilities(test_split)
    for feature, groups in bundle.sensitive_groups(test_split).items():
        for group in groups.unique():
            rows = (groups == group).to_numpy()
            if rows.sum() < MIN_GROUP_ROWS or y_true[rows].nunique() < 2:
                continue
            auc = roc_auc_score(y_true[rows], proba[rows])
            assert auc > 0.5, f"{feature}={group}: ROC AUC {auc:.3f} is no better than chance"


def test_decisions_are_stable_under_small_numeric_changes(bundle, test_split) -> None:
    numeric = [name for name in bundle.schema.numeric_features if name in bundle.features]
    if not numeric:
        pytest.skip("no numeric model input")
    nudged = test_split.copy()
    for name in numeric:
        column = bundle.schema.column(name)
        scaled = nudged[name].astype(float) * 1.01
        if column.type == "integer":
            scaled = scaled.round()
        nudged[name] = scaled.clip(column.min, column.max).astype(nudged[name].dtype)
    before = bundle.decide(bundle.probabilities(test_split))
    after = bundle.decide(bundle.probabilities(nudged))
    assert (before != after).mean() <= MAX_FLIPPED_SHARE


def test_probabilities_are_valid_and_deterministic(bundle, test_split) -> None:
    first = bundle.pipeline.predict_proba(test_split[list(bundle.features)])
    assert np.all((first >= 0) & (first <= 1))
    np.testing.assert_allclose(first.sum(axis=1), 1.0)
    np.testing.assert_array_equal(
        first, bundle.pipeline.predict_proba(test_split[list(bundle.features)])
    )


def test_column_order_and_batching_do_not_change_predictions(bundle, test_split) -> None:
    expected = bundle.probabilities(test_split)
    shuffled = test_split[list(reversed(test_split.columns))]
    np.testing.assert_allclose(bundle.probabilities(shuffled), expected)
    one_by_one = [bundle.probabilities(test_split.iloc[[i]])[0] for i in range(10)]
    np.testing.assert_allclose(one_by_one, expected[:10])


def test_missing_optional_values_still_get_a_prediction(bundle, test_split) -> None:
    nullable = [column.name for column in bundle.schema.columns if column.nullable]
    blanked = test_split.head(5).copy()
    blanked[nullable] = np.nan
    assert bundle.probabilities(blanked).shape == (5,)
