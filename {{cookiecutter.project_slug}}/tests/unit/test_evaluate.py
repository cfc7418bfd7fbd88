import numpy as np
import pytest

from {{ cookiecutter.package_name }}.task import BinaryClassification

pytestmark = pytest.mark.unit

TASK = BinaryClassification(positive_label=1, negative_label=0, cost_fp=5, cost_fn=1)


def test_metrics_and_cost_of_mistakes() -> None:
    y_true = np.array([1, 1, 0, 0, 1])
    proba = np.array([0.9, 0.2, 0.7, 0.1, 0.6])
    decisions = (proba >= 0.5).astype(int)  # one false negative, one false positive
    metrics = TASK.metrics(y_true, proba, decisions)
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["roc_auc"] == pytest.approx(4 / 6)  # 4 of 6 positive-negative pairs ordered
    assert metrics["cost"] == 6.0
    assert metrics["cost_per_prediction"] == pytest.approx(1.2)
    assert (metrics["false_positives"], metrics["false_negatives"]) == (1, 1)
    assert metrics["positive_rate"] == pytest.approx(0.6)


def test_a_higher_cut_off_trades_false_positives_for_false_negatives() -> None:
    y_true = np.array([1, 1, 0, 0, 1])
    proba = np.array([0.9, 0.2, 0.7, 0.1, 0.6])
    strict = TASK.metrics(y_true, proba, (proba >= 0.8).astype(int))
    assert (strict["false_positives"], strict["false_negatives"]) == (0, 2)
    assert strict["cost"] == 2.0  # cheaper than 6.0 at 0.5 when a false positive costs 5


BASELINE = {"roc_auc": 0.5, "f1": 0.8, "cost": 300.0}


def gate(model: dict[str, float], **thresholds: float) -> list[str]:
    return TASK.gate_failures(model, BASELINE, thresholds, "roc_auc", 0.05)


def test_gate_passes_a_model_that_beats_everything() -> None:
    assert gate({"roc_auc": 0.8, "f1": 0.85, "cost": 200.0}, roc_auc=0.7, f1=0.75) == []


def test_gate_lists_every_reason() -> None:
    failures = gate({"roc_auc": 0.52, "f1": 0.6, "cost": 320.0}, roc_auc=0.7, f1=0.75)
    assert len(failures) == 4
    assert failures[0].startswith("roc_auc 0.520 is below evaluate.thresholds.roc_auc 0.700")
    assert "gain over the baseline +0.020" in failures[2]
    assert "cost 320 is higher than the baseline's 300" in failures[3]
