"""Stage 8, fairness: per-group metrics of the model's decisions (at its bundle's threshold)
for each sensitive attribute and the disparities between groups (fairlearn), gated by the
maximum differences in params.yaml. Attributes that are measured but not model inputs are
assessed the same way."""

from __future__ import annotations

from typing import Any

import pandas as pd
from fairlearn import metrics as flm
from sklearn.metrics import accuracy_score

from {{ cookiecutter.package_name }}.bundle import load_bundle
from {{ cookiecutter.package_name }}.config import Params, Paths
from {{ cookiecutter.package_name }}.errors import GateError
from {{ cookiecutter.package_name }}.io import stage_outputs
from {{ cookiecutter.package_name }}.progress import step

GROUP_METRICS = {
    "count": flm.count,
    "selection_rate": flm.selection_rate,
    "true_positive_rate": flm.true_positive_rate,
    "false_positive_rate": flm.false_positive_rate,
    "accuracy": accuracy_score,
}
DISPARITIES = {
    "demographic_parity_difference": flm.demographic_parity_difference,
    "demographic_parity_ratio": flm.demographic_parity_ratio,
    "equalized_odds_difference": flm.equalized_odds_difference,
    "equalized_odds_ratio": flm.equalized_odds_ratio,
}


def assess(y_true: pd.Series, y_pred: Any, groups: pd.Series) -> dict[str, Any]:
    """Per-group metrics and the disparity measures for one sensitive feature."""
    frame = flm.MetricFrame(
        metrics=GROUP_METRICS, y_true=y_true, y_pred=y_pred, sensitive_features=groups
    )
    per_group = {
        str(group): {metric: float(value) for metric, value in row.items()}
        for group, row in frame.by_group.iterrows()
    }
    disparities = {
        name: float(measure(y_true, y_pred, sensitive_features=groups))
        for name, measure in DISPARITIES.items()
    }
    return {"groups": per_group, **disparities}


def run(params: Params) -> dict[str, Any]:
    bundle = load_bundle(Paths.model)
    test = bundle.schema.read_csv(Paths.test_data)
    y_true = bundle.is_positive(test[bundle.target])
    y_pred = bundle.decide(bundle.probabilities(test))

    results: dict[str, Any] = {}
    failures: list[str] = []
    rows = []
    sensitive = bundle.sensitive_groups(test)
    progress_name = f"fairness: {len(test):,} rows, by group"
    with step(progress_name, len(sensitive), "sensitive features") as progress:
        for feature, groups in sensitive.items():
            results[feature] = assess(y_true, y_pred, groups)
            progress.advance()
    for feature, assessment in results.items():
        assessment["role"] = bundle.role(feature)
        for measure, limit in params.fairness.thresholds.items():
            if assessment[measure] > limit:
                failures.append(
                    f"{feature}: {measure} {assessment[measure]:.3f} exceeds"
                    f" fairness.thresholds.{measure} {limit:.3f}"
                )
        rows += [
            {"feature": feature, "group": f"{feature}={group}", **metrics}
            for group, metrics in assessment["groups"].items()
        ]
    summary = {
        "features": results,
        "thresholds": dict(params.fairness.thresholds),
        "decision_threshold": bundle.threshold,
        "gate": {"passed": not failures, "failures": failures},
    }
    with stage_outputs() as outputs:  # the evidence is written even when the gate fails
        outputs.table(pd.DataFrame(rows).round(4), Paths.plots / "fairness.csv")
        outputs.json(summary, Paths.fairness)
    if failures:
        raise GateError("fairness", failures)
    return summary
