"""Stage 6, evaluate: test-split metrics for the model and the baseline, DVC plots, and a gate
that stops the pipeline when the model misses a threshold or does not beat the baseline."""

from __future__ import annotations

from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn import metrics as skm

from {{ cookiecutter.package_name }}.config import CostMatrix, EvaluateConfig, Params, Paths
from {{ cookiecutter.package_name }}.errors import GateError
from {{ cookiecutter.package_name }}.io import write_json, write_table
from {{ cookiecutter.package_name }}.pipeline.train import binary_target
from {{ cookiecutter.package_name }}.schema import load_schema


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, cost: CostMatrix
) -> dict[str, float]:
    """Standard metrics at a 0.5 threshold, plus the business cost of the mistakes."""
    y_pred = (proba >= 0.5).astype(int)
    _, fp, fn, _ = skm.confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    total_cost = float(fp * cost.fp + fn * cost.fn)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(skm.precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(skm.recall_score(y_true, y_pred, zero_division=0)),
        "f1": float(skm.f1_score(y_true, y_pred, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y_true, proba)),
        "cost": total_cost,
        "cost_per_prediction": total_cost / len(y_true),
    }


def gate_failures(
    model: dict[str, float], baseline: dict[str, float], config: EvaluateConfig
) -> list[str]:
    """Why the model must not ship: missed thresholds, no gain over the baseline, higher cost."""
    failures = [
        f"{name} {model[name]:.3f} is below the threshold {threshold:.3f}"
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
            f"cost {model['cost']:.0f} is higher than the baseline's {baseline['cost']:.0f}"
        )
    return failures


def write_plots(y_true: np.ndarray, proba: np.ndarray, labels: tuple[str, str]) -> None:
    """ROC, precision-recall and confusion data in the shapes `dvc plots` expects."""
    fpr, tpr, roc_thresholds = skm.roc_curve(y_true, proba)
    write_table(
        pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(roc_thresholds, 1.0)}).round(
            4
        ),
        Paths.plots / "roc.csv",
    )
    precision, recall, pr_thresholds = skm.precision_recall_curve(y_true, proba)
    write_table(
        pd.DataFrame(
            {"recall": recall[:-1], "precision": precision[:-1], "threshold": pr_thresholds}
        ).round(4),
        Paths.plots / "precision_recall.csv",
    )
    names = np.array(labels)
    confusion = pd.DataFrame(
        {"actual": names[y_true], "predicted": names[(proba >= 0.5).astype(int)]}
    )
    write_table(confusion, Paths.plots / "confusion.csv")


def run(params: Params) -> dict[str, Any]:
    schema = load_schema(params.data.schema_file)
    test = schema.read_csv(Paths.test_data)
    features = test[schema.feature_names]
    y_true = binary_target(test[schema.target], params.data.positive_label).to_numpy()
    config = params.evaluate

    model_proba = joblib.load(Paths.model).predict_proba(features)[:, 1]
    baseline_proba = joblib.load(Paths.baseline_model).predict_proba(features)[:, 1]
    model_metrics = classification_metrics(y_true, model_proba, config.cost_matrix)
    baseline_metrics = classification_metrics(y_true, baseline_proba, config.cost_matrix)
    failures = gate_failures(model_metrics, baseline_metrics, config)

    negative = next(
        str(v) for v in schema.target_values if str(v) != str(params.data.positive_label)
    )
    write_plots(y_true, model_proba, (negative, str(params.data.positive_label)))
    result = {
        "model": model_metrics,
        "baseline": baseline_metrics,
        "delta_vs_baseline": {
            name: model_metrics[name] - baseline_metrics[name] for name in model_metrics
        },
        "test_rows": len(test),
        "gate": {"passed": not failures, "failures": failures},
    }
    write_json(result, Paths.metrics)
    if failures:
        raise GateError("evaluate", failures)
    return result
