import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.task import BinaryClassification

pytestmark = pytest.mark.unit


def test_assess_measures_known_disparities() -> None:
    groups = pd.Series(["a"] * 4 + ["b"] * 4)
    y_true = pd.Series([1, 1, 0, 0, 1, 1, 0, 0])
    y_pred = pd.Series([1, 1, 1, 0, 1, 0, 0, 0])  # selection: a 3/4, b 1/4
    task = BinaryClassification(positive_label=1, negative_label=0, cost_fp=5, cost_fn=1)
    result = task.fairness(y_true, y_pred, groups)
    assert result["groups"]["a"]["selection_rate"] == pytest.approx(0.75)
    assert result["groups"]["b"]["count"] == 4
    assert result["demographic_parity_difference"] == pytest.approx(0.5)
    # true positive rates 1.0 vs 0.5, false positive rates 0.5 vs 0.0
    assert result["equalized_odds_difference"] == pytest.approx(0.5)
