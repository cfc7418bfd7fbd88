"""Stage 7, evaluate: test-split metrics for the model and the baseline, each at the decision
threshold its bundle carries (and the model's at 0.5 too, to show what the cost-based cut-off
saves), DVC plots, and a gate that stops the pipeline when the model misses a threshold, does
not beat the baseline, or costs more than it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from {{ cookiecutter.package_name }}.bundle import ModelBundle, load_bundle
from {{ cookiecutter.package_name }}.config import CostMatrix, EvaluateConfig, Params, Paths
from {{ cookiecutter.package_name }}.errors import GateError
from {{ cookiecutter.package_name }}.io import StageOutputs, stage_outputs

DEFAULT_THRESHOLD = 0.5  # the cut-off a classifier uses when nobody chose one: for comparison


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, decisions: np.ndarray, cost: CostMatrix
) -> dict[str, float]:
    """Standard metrics of the decisions, ROC AUC of the probabilities, and the business cost
    of the mistakes (`cost_matrix.fp` per false positive, `.fn` per false negative)."""
    _, fp, fn, tp = skm.confusion_matrix(y_true, decisions, labels=[0, 1]).ravel()
    total_cost = float(fp * cost.fp + fn * cost.fn)
    return {
        "accuracy": float(skm.accuracy_score(y_true, decisions)),
        "precision": float(skm.precision_score(y_true, decisions, zero_division=0)),
        "recall": float(skm.recall_score(y_true, decisions, zero_division=0)),
        "f1": float(skm.f1_score(y_true, decisions, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y_true, proba)),
        "false_positives": int(fp),
        "false_negatives": int(fn),
        "positive_rate": float((tp + fp) / len(y_true)),
        "cost": total_cost,
        "cost_per_prediction": total_cost / len(y_true),
    }


def scored(
    y_true: np.ndarray, proba: np.ndarray, threshold: float, cost: CostMatrix
) -> dict[str, Any]:
    """Metrics of deciding positive at `threshold`, with the threshold recorded."""
    decisions = (proba >= threshold).astype(int)
    return {"threshold": threshold, **classification_metrics(y_true, proba, decisions, cost)}


def gate_failures(
    model: dict[str, float], baseline: dict[str, float], config: EvaluateConfig
) -> list[str]:
    """Why the model must not ship: missed thresholds, no gain over the baseline, higher cost.
    Each reason names the params.yaml key that sets the limit."""
    failures = [
        f"{name} {model[name]:.3f} is below evaluate.thresholds.{name} {threshold:.3f}"
        f" (set it to what your problem needs)"
        for name, threshold in config.thresholds.items()
        if model[name] < threshold
    ]
    primary = config.primary_metric
    gain = model[primary] - baseline[primary]
    if gain < config.min_gain_over_baseline:
        failures.append(
            f"{primary} gain over the baseline {gain:+.3f} is below"
            f" evaluate.min_gain_over_baseline {config.min_gain_over_baseline:+.3f}"
        )
    if model["cost"] > baseline["cost"]:
        failures.append(
            f"cost {model['cost']:g} is higher than the baseline's {baseline['cost']:g}"
            " (evaluate.cost_matrix): the model decides worse than a rule without features"
        )
    return failures


def write_plots(
    outputs: StageOutputs, bundle: ModelBundle, y_true: np.ndarray, proba: np.ndarray
) -> None:
    """ROC, precision-recall and confusion (at the bundle's threshold) for `dvc plots`."""
    fpr, tpr, roc_thresholds = skm.roc_curve(y_true, proba)
    roc = pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(roc_thresholds, 1.0)})
    outputs.table(roc.round(4), Paths.plots / "roc.csv")
    precision, recall, pr_thresholds = skm.precision_recall_curve(y_true, proba)
    curve = pd.DataFrame(
        {"recall": recall[:-1], "precision": precision[:-1], "threshold": pr_thresholds}
    )
    outputs.table(curve.round(4), Paths.plots / "precision_recall.csv")
    names = np.array([str(bundle.negative_label), str(bundle.positive_label)])
    confusion = pd.DataFrame({"actual": names[y_true], "predicted": names[bundle.decide(proba)]})
    outputs.table(confusion, Paths.plots / "confusion.csv")


def run(params: Params) -> dict[str, Any]:
    model, baseline = load_bundle(Paths.model), load_bundle(Paths.baseline_model)
    test = model.schema.read_csv(Paths.test_data)
    config = params.evaluate

    y_true = model.is_positive(test[model.target]).to_numpy()
    proba = model.probabilities(test)  # scored once, decided at each cut-off below
    model_metrics = scored(y_true, proba, model.threshold, config.cost_matrix)
    baseline_proba = baseline.probabilities(test)
    baseline_metrics = scored(y_true, baseline_proba, baseline.threshold, config.cost_matrix)
    failures = gate_failures(model_metrics, baseline_metrics, config)
    result = {
        "model": model_metrics,
        "model_at_default_threshold": scored(y_true, proba, DEFAULT_THRESHOLD, config.cost_matrix),
        "baseline": baseline_metrics,
        "delta_vs_baseline": {
            name: model_metrics[name] - baseline_metrics[name]
            for name in model_metrics
            if name != "threshold"
        },
        "decision": {"threshold": model.threshold, "chosen_by": model.threshold_source},
        "test_rows": len(test),
        "gate": {"passed": not failures, "failures": failures},
    }
    with stage_outputs() as outputs:  # the evidence is written even when the gate fails
        write_plots(outputs, model, y_true, proba)
        outputs.json(result, Paths.metrics)
    if failures:
        raise GateError("evaluate", failures)
    return result
