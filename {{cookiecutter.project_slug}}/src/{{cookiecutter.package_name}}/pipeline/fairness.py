"""Stage 8, fairness: per-group metrics of the model's decisions (as its bundle decides) for
each sensitive attribute and the disparities between groups (fairlearn; the task, task.py,
says which), gated by the maximum differences in params.yaml. Attributes that are measured but
not model inputs are assessed the same way. Groups smaller than `fairness.min_group_rows` are
reported as not judged rather than compared."""

from __future__ import annotations

from typing import Any

import pandas as pd

from {{ cookiecutter.package_name }}.bundle import ModelBundle, load_bundle
from {{ cookiecutter.package_name }}.config import Params, Paths
from {{ cookiecutter.package_name }}.errors import GateError
from {{ cookiecutter.package_name }}.io import stage_outputs
from {{ cookiecutter.package_name }}.progress import step


def assess(
    feature: str,
    groups: pd.Series,
    y_true: pd.Series,
    y_pred: pd.Series,
    bundle: ModelBundle,
    params: Params,
    failures: list[str],
) -> dict[str, Any]:
    """The task's per-group metrics and disparities of one attribute, over the groups with at
    least fairness.min_group_rows rows; the smaller ones are listed as not judged."""
    least = params.fairness.min_group_rows
    counts = groups.value_counts()
    small = {str(name): int(n) for name, n in counts[counts < least].items()}
    if counts.size - len(small) < 2:
        failures.append(
            f"{feature}: fewer than two groups of fairness.min_group_rows {least} test rows,"
            f" nothing to compare (group sizes {counts.to_dict()})"
        )
        return {"groups": {}, "not_judged": small}
    judged = ~groups.isin(list(small))
    assessment = bundle.task.fairness(y_true[judged], y_pred[judged], groups[judged])
    return {**assessment, "not_judged": small}


def run(params: Params) -> dict[str, Any]:
    bundle = load_bundle(Paths.model)
    test = bundle.schema.read_csv(Paths.test_data)
    y_true = pd.Series(bundle.encode(test[bundle.target]), index=test.index)
    y_pred = pd.Series(bundle.decide(bundle.outputs(test)), index=test.index)

    results: dict[str, Any] = {}
    failures: list[str] = []
    rows = []
    sensitive = bundle.sensitive_groups(test)
    progress_name = f"fairness: {len(test):,} rows, by group"
    with step(progress_name, len(sensitive), "sensitive features") as progress:
        for feature, groups in sensitive.items():
            results[feature] = assess(feature, groups, y_true, y_pred, bundle, params, failures)
            progress.advance()
    for feature, assessment in results.items():
        assessment["role"] = bundle.role(feature)
        for measure, limit in params.fairness.thresholds.items():
            if measure in assessment and assessment[measure] > limit:
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
        "decision_threshold": bundle.decision.value,
        "gate": {"passed": not failures, "failures": failures},
    }
    with stage_outputs() as outputs:  # the evidence is written even when the gate fails
        outputs.table(pd.DataFrame(rows).round(4), Paths.plots / "fairness.csv")
        outputs.json(summary, Paths.fairness)
    if failures:
        raise GateError("fairness", failures)
    return summary
