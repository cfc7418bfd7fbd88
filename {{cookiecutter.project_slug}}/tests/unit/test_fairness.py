import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.config import DerivedColumn
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.pipeline.fairness import (
    add_derived_columns,
    assess,
    sensitive_columns,
)

pytestmark = pytest.mark.unit


def test_derived_columns_bin_with_left_closed_intervals() -> None:
    derived = {
        "age_group": DerivedColumn(
            source="age", bins=[0, 25, 45, 200], labels=["<25", "25-44", "45+"]
        )
    }
    table = add_derived_columns(pd.DataFrame({"age": [19, 25, 44, 45, None]}), derived)
    assert table["age_group"].tolist() == ["<25", "25-44", "25-44", "45+", "unknown"]


def test_unknown_columns_are_config_errors() -> None:
    derived = {"band": DerivedColumn(source="income", bins=[0, 1], labels=["low"])}
    with pytest.raises(ConfigError, match=r"data\.derived_columns\.band: source column 'income'"):
        add_derived_columns(pd.DataFrame({"age": [1]}), derived)
    with pytest.raises(ConfigError, match=r"data\.sensitive_features: \['race'\]"):
        sensitive_columns(pd.DataFrame({"sex": ["f"]}), ["sex", "race"])


def test_assess_measures_known_disparities() -> None:
    groups = pd.Series(["a"] * 4 + ["b"] * 4)
    y_true = pd.Series([1, 1, 0, 0, 1, 1, 0, 0])
    y_pred = pd.Series([1, 1, 1, 0, 1, 0, 0, 0])  # selection: a 3/4, b 1/4
    result = assess(y_true, y_pred, groups)
    assert result["groups"]["a"]["selection_rate"] == pytest.approx(0.75)
    assert result["groups"]["b"]["count"] == 4
    assert result["demographic_parity_difference"] == pytest.approx(0.5)
    # true positive rates 1.0 vs 0.5, false positive rates 0.5 vs 0.0
    assert result["equalized_odds_difference"] == pytest.approx(0.5)
