"""Stage 7, fairness: per-group metrics for each sensitive feature and the disparities between
groups (fairlearn), gated by the maximum differences in params.yaml."""

from __future__ import annotations

from typing import Any

import joblib
import pandas as pd
from fairlearn import metrics as flm
from sklearn.metrics import accuracy_score

from {{ cookiecutter.package_name }}.config import DerivedColumn, Params, Paths
from {{ cookiecutter.package_name }}.errors import ConfigError, GateError
from {{ cookiecutter.package_name }}.io import write_json, write_table
from {{ cookiecutter.package_name }}.pipeline.train import binary_target
from {{ cookiecutter.package_name }}.schema import load_schema

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


def add_derived_columns(table: pd.DataFrame, derived: dict[str, DerivedColumn]) -> pd.DataFrame:
    """Add the binned columns declared in data.derived_columns (e.g. age_group from age)."""
    table = table.copy()
    for name, spec in derived.items():
        if spec.source not in table.columns:
            raise ConfigError(
                f"data.derived_columns.{name}: source column '{spec.source}' is not in the data"
            )
        binned = pd.cut(table[spec.source], bins=spec.bins, labels=spec.labels, right=False)
        table[name] = binned.astype("string").fillna("unknown").astype(str)
    return table


def sensitive_columns(table: pd.DataFrame, names: list[str]) -> dict[str, pd.Series]:
    """The sensitive feature columns, missing values as their own group."""
    missing = [name for name in names if name not in table.columns]
    if missing:
        raise ConfigError(
            f"data.sensitive_features: {missing} are neither data columns nor data.derived_columns"
        )
    return {name: table[name].astype("string").fillna("unknown").astype(str) for name in names}


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
    schema = load_schema(params.data.schema_file)
    test = add_derived_columns(schema.read_csv(Paths.test_data), params.data.derived_columns)
    y_true = binary_target(test[schema.target], params.data.positive_label)
    y_pred = joblib.load(Paths.model).predict(test[schema.feature_names])

    results: dict[str, Any] = {}
    failures: list[str] = []
    rows = []
    for feature, groups in sensitive_columns(test, params.data.sensitive_features).items():
        results[feature] = assessment = assess(y_true, y_pred, groups)
        for measure, limit in params.fairness.thresholds.items():
            if assessment[measure] > limit:
                failures.append(
                    f"{feature}: {measure} {assessment[measure]:.3f} exceeds {limit:.3f}"
                )
        rows += [
            {"feature": feature, "group": f"{feature}={group}", **metrics}
            for group, metrics in assessment["groups"].items()
        ]
    write_table(pd.DataFrame(rows).round(4), Paths.plots / "fairness.csv")
    summary = {"features": results, "thresholds": dict(params.fairness.thresholds)}
    summary["gate"] = {"passed": not failures, "failures": failures}
    write_json(summary, Paths.fairness)
    if failures:
        raise GateError("fairness", failures)
    return summary
