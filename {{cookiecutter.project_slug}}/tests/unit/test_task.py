"""The tasks (task.py): each one's decision by cost, its metrics and gates, its fairness
measures, on small tables whose answers can be worked out by hand."""

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.linear_model import LinearRegression

from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.task import (
    MINIMIZE_COST,
    MOST_PROBABLE,
    BinaryClassification,
    Decision,
    MulticlassClassification,
    Regression,
    class_costs,
    task_for,
)

pytestmark = pytest.mark.unit

CLASSES = ("low", "mid", "high")
# Deciding `low` for a `high` case is the expensive mistake.
COSTS = class_costs({"high": {"low": 10}}, CLASSES)
MULTICLASS = MulticlassClassification(CLASSES, COSTS)


def test_class_costs_default_to_one_per_mistake_and_name_unknown_classes() -> None:
    assert COSTS == ((0, 1, 1), (1, 0, 1), (10, 1, 0))
    with pytest.raises(ConfigError, match=r"evaluate\.cost_matrix: \['high\.top', 'huge'\]"):
        class_costs({"high": {"top": 1}, "huge": {"low": 1}}, CLASSES)


def test_multiclass_decides_the_lowest_expected_cost_not_the_likeliest_class() -> None:
    outputs = np.array([[0.6, 0.1, 0.3], [0.1, 0.8, 0.1], [0.9, 0.05, 0.05]])
    # row 0: deciding low costs 0.3 * 10 = 3.0 expected, mid 0.9, high 0.7 -> high
    decided = MULTICLASS.decide(outputs, Decision(MINIMIZE_COST, MINIMIZE_COST))
    assert decided.tolist() == [2, 1, 0]
    likeliest = MULTICLASS.decide(outputs, Decision(MOST_PROBABLE, "params"))
    assert likeliest.tolist() == [0, 1, 0]
    assert [MULTICLASS.label(code) for code in decided] == ["high", "mid", "low"]


def test_multiclass_encodes_by_the_schema_order_and_refuses_unknown_labels() -> None:
    assert MULTICLASS.encode(pd.Series(["high", "low", "mid"])).tolist() == [2, 0, 1]
    with pytest.raises(ConfigError, match=r"\['top'\] are not among the schema's classes"):
        MULTICLASS.encode(pd.Series(["low", "top"]))


def test_multiclass_fit_chooses_the_cheaper_rule_by_cross_validation() -> None:
    """A model that knows nothing gives the class shares: the likeliest class (low) risks the
    expensive mistake on every high case, so the expected-cost rule wins."""
    target = np.array([0] * 50 + [1] * 20 + [2] * 30)
    features = pd.DataFrame({"x": np.arange(len(target))})
    fitted, decision = MULTICLASS.fit(DummyClassifier(), features, target, MINIMIZE_COST, 5, 0)
    assert decision.value == MINIMIZE_COST and decision.source == MINIMIZE_COST
    # Deciding high everywhere costs 50 + 20 = 70 per 100 rows; low would cost 20 + 300.
    assert decision.cv_cost_per_prediction == pytest.approx(0.7)
    decided = MULTICLASS.decide(MULTICLASS.outputs(fitted, features), decision)
    assert set(decided) == {2}
    pinned = MULTICLASS.fit(DummyClassifier(), features, target, MOST_PROBABLE, 5, 0)[1]
    assert pinned == Decision(MOST_PROBABLE, "params")


def test_multiclass_metrics() -> None:
    y_true = np.array([0, 0, 1, 1, 2, 2])
    decided = np.array([0, 1, 1, 1, 2, 0])
    outputs = np.eye(3)[decided] * 0.8 + 0.2 / 3
    metrics = MULTICLASS.metrics(y_true, outputs, decided)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert metrics["per_class"]["mid"] == {
        "precision": pytest.approx(2 / 3),
        "recall": 1.0,
        "support": 2,
        "decided_share": pytest.approx(0.5),
    }
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert metrics["cost"] == 11.0  # low for mid (1), low for high (10)
    assert metrics["macro_f1"] == pytest.approx(np.mean([0.5, 0.8, 2 / 3]))
    failures = MULTICLASS.gate_failures(
        metrics,
        {**metrics, "log_loss": metrics["log_loss"] - 0.1, "cost": 5.0},
        {"macro_f1": 0.7, "log_loss": 0.1},
        "log_loss",
        0.0,
    )
    assert failures[0].startswith("macro_f1 0.656 is below evaluate.thresholds.macro_f1 0.700")
    assert (
        failures[1].startswith("log_loss")
        and "is above evaluate.thresholds.log_loss" in failures[1]
    )
    assert "log_loss gain over the baseline -0.100" in failures[2]
    assert "cost 11 is higher than the baseline's 5" in failures[3]


def test_multiclass_fairness_takes_the_largest_gap_of_any_class() -> None:
    groups = pd.Series(["a"] * 4 + ["b"] * 4)
    y_true = pd.Series([0, 1, 2, 2, 0, 1, 2, 2])
    decided = pd.Series([0, 1, 2, 2, 0, 0, 0, 2])  # b: class 0 decided 3/4 of the time, a 1/4
    result = MULTICLASS.fairness(y_true, decided, groups)
    assert result["groups"]["b"]["selection_rate[low]"] == pytest.approx(0.75)
    assert result["demographic_parity_difference"] == pytest.approx(0.5)
    assert result["accuracy_difference"] == pytest.approx(0.5)


REGRESSION = Regression(cost_under=3, cost_over=1)  # predicting too low costs three times more


def test_regression_decides_the_cost_quantile_of_cross_validated_errors() -> None:
    rng = np.random.default_rng(0)
    features = pd.DataFrame({"x": rng.uniform(0, 10, 2000)})
    target = 2 * features["x"].to_numpy() + rng.normal(0, 1, 2000)
    fitted, decision = REGRESSION.fit(LinearRegression(), features, target, MINIMIZE_COST, 5, 0)
    assert REGRESSION.quantile == 0.75
    assert decision.value == pytest.approx(0.674, abs=0.08)  # the normal's 75th percentile
    decided = REGRESSION.decide(REGRESSION.outputs(fitted, features), decision)
    metrics = REGRESSION.metrics(target, REGRESSION.outputs(fitted, features), decided)
    assert metrics["under_share"] == pytest.approx(0.25, abs=0.03)
    unshifted = REGRESSION.decide(REGRESSION.outputs(fitted, features), Decision(0.0, "params"))
    assert metrics["cost"] < REGRESSION.cost_of(target, unshifted)


def test_regression_baseline_is_the_cost_quantile_of_the_target() -> None:
    target = np.arange(1.0, 101.0)
    features = pd.DataFrame({"x": np.zeros(100)})
    baseline = DummyRegressor(strategy="median")
    fitted, decision = REGRESSION.fit(baseline, features, target, MINIMIZE_COST, 5, 0)
    decided = REGRESSION.decide(REGRESSION.outputs(fitted, features), decision)
    assert np.unique(decided).size == 1
    assert decided[0] == pytest.approx(75, abs=3)


def test_regression_metrics_cost_and_gates() -> None:
    y_true = np.array([10.0, 20.0, 30.0])
    decided = np.array([12.0, 15.0, 30.0])  # over by 2, under by 5
    metrics = REGRESSION.metrics(y_true, decided, decided)
    assert metrics["mae"] == pytest.approx(7 / 3)
    assert metrics["rmse"] == pytest.approx(np.sqrt(29 / 3))
    assert metrics["cost"] == 2 * 1 + 5 * 3
    failures = REGRESSION.gate_failures(
        metrics, {**metrics, "mae": 2.0, "cost": 100.0}, {"mae": 2.0, "r2": 0.9}, "mae", 0.5
    )
    assert failures[0].startswith("mae 2.333 is above evaluate.thresholds.mae 2.000")
    assert failures[1].startswith("r2 0.855 is below evaluate.thresholds.r2 0.900")
    assert "mae gain over the baseline -0.333" in failures[2]
    assert len(failures) == 3  # cheaper than the baseline


def test_regression_fairness_compares_errors_by_group() -> None:
    groups = pd.Series(["a", "a", "b", "b"])
    y_true = pd.Series([10.0, 20.0, 10.0, 20.0])
    decided = pd.Series([11.0, 19.0, 15.0, 25.0])
    result = REGRESSION.fairness(y_true, decided, groups)
    assert result["groups"]["b"]["mae"] == 5.0
    assert result["mae_difference"] == 4.0
    assert result["mean_error_difference"] == 5.0


def test_pinned_decisions_are_checked_per_task() -> None:
    assert BinaryClassification.check_pinned(0.4) is None
    assert "between 0 and 1" in str(BinaryClassification.check_pinned(1.5))
    assert MulticlassClassification.check_pinned(MOST_PROBABLE) is None
    assert "'most_probable'" in str(MulticlassClassification.check_pinned(0.5))
    assert Regression.check_pinned(-2.5) is None
    assert "a number added" in str(Regression.check_pinned("up"))


def test_task_for_builds_each_task_from_params() -> None:
    binary = task_for("binary", "1", type("C", (), {"fp": 5, "fn": 1})(), (0, 1))
    assert isinstance(binary, BinaryClassification)
    assert (binary.positive_label, binary.negative_label) == ("1", 0)
    multiclass = task_for("multiclass", None, {"high": {"low": 10}}, CLASSES)
    assert multiclass == MULTICLASS
    regression = task_for("regression", None, type("C", (), {"under": 3, "over": 1})(), ())
    assert regression == REGRESSION


def test_train_scoring_must_score_the_tasks_models() -> None:
    assert BinaryClassification.scores("roc_auc") and not BinaryClassification.scores("r2")
    assert MulticlassClassification.scores("f1_macro")
    assert not MulticlassClassification.scores("roc_auc")
    assert Regression.scores("neg_mean_absolute_error") and not Regression.scores("accuracy")


def test_each_task_sums_up_decisions_for_people() -> None:
    """What the model card's partial dependence shows: each class's share, or the mean."""
    binary = BinaryClassification(positive_label="bad", negative_label="good", cost_fp=1, cost_fn=5)
    assert binary.decision_summary(np.array([1, 0, 0, 1])) == {"share decided bad": 0.5}
    assert MULTICLASS.decision_summary(np.array([2, 2, 0, 1])) == {
        "share decided low": 0.25,
        "share decided mid": 0.25,
        "share decided high": 0.5,
    }
    assert REGRESSION.decision_summary(np.array([1.0, 2.0, 6.0])) == {"mean decided": 3.0}
