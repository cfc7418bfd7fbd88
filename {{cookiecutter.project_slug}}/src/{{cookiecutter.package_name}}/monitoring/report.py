"""A monitoring run: Evidently reports of the current window against the reference (data
summary, drift of every feature and of the model's output, and classification performance when
enough feedback labels came back), an explicit gate on `monitor.thresholds` (Evidently's
auto-generated tests are not the gate), and the run's files under reports/monitoring/runs/<id>/:
report.html and snapshot.json (Evidently can load it again), performance.html/.json when
labelled, result.json and summary.md. Each run is also added to the Evidently workspace."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from {{ cookiecutter.package_name }}.bundle import ModelBundle, load_bundle
from {{ cookiecutter.package_name }}.config import P_VALUE_METHODS, MonitorThresholds, Params, Paths
from {{ cookiecutter.package_name }}.errors import ConfigError, GateError
from {{ cookiecutter.package_name }}.io import stage_outputs
from {{ cookiecutter.package_name }}.monitoring.frames import PREDICTION, labelled
from {{ cookiecutter.package_name }}.monitoring.history import write_index
from {{ cookiecutter.package_name }}.monitoring.labels import Provenance, provenance
from {{ cookiecutter.package_name }}.monitoring.labels import markdown as provenance_markdown
from {{ cookiecutter.package_name }}.monitoring.window import (
    WindowInfo,
    load_current,
    load_reference,
)
from {{ cookiecutter.package_name }}.pipeline.explore import SUMMARY_WITHOUT_TESTS
from {{ cookiecutter.package_name }}.privacy import LogPolicy
from {{ cookiecutter.package_name }}.task import TASK_CLASSES

PROJECT_NAME = "{{ cookiecutter.project_name }}"  # the Evidently workspace project


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def _dataset(frame: pd.DataFrame, bundle: ModelBundle, with_target: bool) -> Any:
    """Monitoring's rows as Evidently's Dataset of the bundle's task."""
    rows, outputs, task = bundle.task.evidently_rows(frame, bundle.target, PREDICTION)
    return bundle.schema.evidently_dataset(
        rows, with_target=with_target, prediction=PREDICTION, outputs=outputs, task=task
    )


def output_columns(bundle: ModelBundle) -> list[str]:
    """The columns, as Evidently names them, whose drift is the model's output drifting: the
    probabilities (multiclass: named as the classes), or the decided number."""
    empty = pd.DataFrame(columns=[bundle.target, PREDICTION, *bundle.task.output_names()])
    return bundle.task.evidently_rows(empty, bundle.target, PREDICTION)[1] or [PREDICTION]


def drift_scores(snapshot: Any) -> dict[str, float]:
    """Each column's drift score (a distance or a p-value) from a data snapshot."""
    return {
        metric["config"]["column"]: float(metric["value"])
        for metric in snapshot.dict()["metrics"]
        if metric["metric_name"].startswith("ValueDrift(")
    }


def is_drifted(column: str, score: float, bundle: ModelBundle, params: Params) -> bool:
    drift = params.monitor.drift
    categorical = column in bundle.schema.categorical_features
    method = drift.cat_method if categorical else drift.num_method
    threshold = drift.cat_threshold if categorical else drift.num_threshold
    return score < threshold if method in P_VALUE_METHODS else score >= threshold


def performance(
    frame: pd.DataFrame, bundle: ModelBundle, params: Params
) -> dict[str, float] | None:
    """evaluate's metrics of the model's decisions on the labelled rows (None: one class only,
    or one number)."""
    rows = frame[labelled(frame, bundle)]
    y_true = bundle.encode(rows[bundle.target])
    if len(np.unique(y_true)) < 2:  # one class (or one number) cannot be judged
        return None
    decisions = bundle.encode(rows[PREDICTION])
    return bundle.task.metrics(y_true, bundle.task.read_outputs(rows, PREDICTION), decisions)


def drifted_columns(
    scores: dict[str, float], bundle: ModelBundle, params: Params
) -> dict[str, float]:
    """The feature columns whose drift score crosses their method's threshold."""
    return {
        column: scores[column]
        for column in bundle.schema.feature_names
        if column in scores and is_drifted(column, scores[column], bundle, params)
    }


@dataclass(frozen=True)
class GateInputs:
    """What a monitoring run saw, for the gate to judge."""

    window: WindowInfo
    scores: dict[str, float]  # every compared column's drift score
    drifted: dict[str, float]  # the feature columns whose score crossed their threshold
    missing: dict[str, tuple[float, float]]  # each feature's missing share: current, reference
    current_performance: dict[str, float] | None = None  # None: too few labels, or one class
    reference_performance: dict[str, float] | None = None
    labels: Provenance | None = None  # who labelled the window; None: too few labels to judge


def _rows_check(window: WindowInfo, limits: MonitorThresholds) -> Check:
    return Check(
        "min_rows",
        window.compared >= limits.min_rows,
        f"{window.compared} rows in the window (monitor.thresholds.min_rows {limits.min_rows})",
    )


def _drift_share_check(
    drifted: dict[str, float], features: list[str], limits: MonitorThresholds
) -> Check:
    share = len(drifted) / len(features) if features else 0.0
    named = ", ".join(f"{c} ({score:.3f})" for c, score in drifted.items()) or "none"
    return Check(
        "drift_share",
        share <= limits.drift_share,
        f"{len(drifted)} of {len(features)} columns drifted ({share:.0%}, monitor.thresholds."
        f"drift_share {limits.drift_share:.0%}): {named}",
    )


def _key_feature_checks(seen: GateInputs, limits: MonitorThresholds) -> list[Check]:
    checks = []
    for column in limits.key_features:
        score = seen.scores.get(column, float("nan"))
        drifted = column in seen.drifted
        checks.append(
            Check(
                f"key_feature:{column}",
                not drifted,
                f"{column} drift score {score:.3f}"
                f" ({'drifted' if drifted else 'no drift'}; a key feature)",
            )
        )
    return checks


def _prediction_drift_check(scores: dict[str, float], bundle: ModelBundle, params: Params) -> Check:
    columns = output_columns(bundle)
    found = {column: scores.get(column, float("nan")) for column in columns}
    moved = [column for column, score in found.items() if is_drifted(column, score, bundle, params)]
    named = ", ".join(f"{column} {score:.3f}" for column, score in found.items())
    return Check(
        "prediction_drift",
        not moved,
        f"the model's output drift score: {named}"
        f" ({'drifted: ' + ', '.join(moved) if moved else 'no drift'})",
    )


def _missing_share_check(
    missing: dict[str, tuple[float, float]], limits: MonitorThresholds
) -> Check:
    rising = {
        column: (now, before)
        for column, (now, before) in missing.items()
        if now - before > limits.missing_share_increase
    }
    return Check(
        "missing_share",
        not rising,
        "; ".join(
            f"{c} {now:.1%} missing (reference {before:.1%})" for c, (now, before) in rising.items()
        )
        or f"no column's missing share rose more than {limits.missing_share_increase:.0%}",
    )


def _performance_check(
    current: dict[str, float], reference: dict[str, float], labelled_rows: int, params: Params
) -> Check:
    primary = params.evaluate.primary_metric
    limit = params.monitor.thresholds.performance_drop
    drop = reference[primary] - current[primary]
    if primary in TASK_CLASSES[params.data.task].lower_is_better:
        drop = -drop  # an error metric: a rise is the worsening
    return Check(
        "performance",
        drop <= limit,
        f"{primary} {current[primary]:.3f} on {labelled_rows} labelled rows,"
        f" reference {reference[primary]:.3f} (drop {drop:+.3f},"
        f" monitor.thresholds.performance_drop {limit:.3f})",
    )


def _labels_check(seen: Provenance) -> Check:
    """Whether the labels may judge the model (monitor.labels); when not, performance is not
    judged and this check says why, naming the labellers."""
    if seen.refusals:
        return Check("labels", False, "performance not judged: " + "; ".join(seen.refusals))
    return Check(
        "labels",
        True,
        f"{seen.labels} labels from {len(seen.labellers)} labeller(s), their mix"
        f" {seen.shift:.3f} from the test split's ({seen.test})",
    )


def gate(params: Params, bundle: ModelBundle, seen: GateInputs) -> list[Check]:
    """Every check of `monitor.thresholds`, each naming what it saw."""
    limits = params.monitor.thresholds
    checks = [
        _rows_check(seen.window, limits),
        _drift_share_check(seen.drifted, bundle.schema.feature_names, limits),
        *_key_feature_checks(seen, limits),
    ]
    if limits.prediction_drift:
        checks.append(_prediction_drift_check(seen.scores, bundle, params))
    checks.append(_missing_share_check(seen.missing, limits))
    if seen.labels is not None:
        checks.append(_labels_check(seen.labels))
    current, reference = seen.current_performance, seen.reference_performance
    if current is not None and reference is not None:
        checks.append(_performance_check(current, reference, seen.window.labelled, params))
    return checks


def _missing_shares(
    current: pd.DataFrame, reference: pd.DataFrame, columns: list[str]
) -> dict[str, tuple[float, float]]:
    if current.empty:
        return {}
    return {
        c: (float(current[c].isna().mean()), float(reference[c].isna().mean())) for c in columns
    }


def summary_markdown(result: dict[str, Any]) -> str:
    status = "passed" if result["passed"] else "FAILED"
    stored = result.get("labels")
    labels_lines = [*provenance_markdown(Provenance.from_dict(stored)), ""] if stored else []
    info = result["window"]
    lines = [
        f"## Monitoring {result['run_id']}: {status}",
        "",
        f"Current window: {info['source']}, {info['window']}: {info['rows']} rows"
        + (f" (sampled to {info['compared']}, seeded)" if info["compared"] < info["rows"] else "")
        + f"; {info['labelled']} with feedback labels"
        + (f"; {info['simulated']} simulated" if info["simulated"] else "")
        + (
            f"; {info['unmatched_feedback']} feedback for unknown predictions"
            if info["unmatched_feedback"]
            else ""
        )
        + f". Reference: the test split scored by the model ({result['model']}),"
        f" {result['reference_rows']} rows.",
        "",
        "| check | result | detail |",
        "|---|---|---|",
        *(
            f"| {check['name']} | {'pass' if check['passed'] else '**FAIL**'} | {check['detail']} |"
            for check in result["checks"]
        ),
        "",
        *labels_lines,
        f"Report: `{result['report']}`"
        + (
            f"; performance: `{result['performance_report']}`"
            if result.get("performance_report")
            else ""
        ),
        "",
    ]
    return "\n".join(lines)


def add_to_workspace(location: str, snapshots: list[Any], bundle: ModelBundle) -> None:
    """Add the run's snapshots to the Evidently workspace, creating its project and dashboard
    (drift share, missing share, prediction drift, performance over time) on first use."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import DashboardPanelPlot
    from evidently.ui.workspace import Workspace

    workspace = Workspace.create(location)
    found = workspace.search_project(PROJECT_NAME)
    if found:
        project = found[0]
    else:
        project = workspace.create_project(PROJECT_NAME)
        project.description = "Monitoring runs of the served model (make monitor)"
        for title, metric, labels in (
            ("Share of drifted columns", "DriftedColumnsCount", {"value_type": "share"}),
            (
                "Share of rows with a missing value",
                "DatasetMissingValueCount",
                {"value_type": "share"},
            ),
            (
                f"Prediction drift ({output_columns(bundle)[0]})",
                "ValueDrift",
                {"column": output_columns(bundle)[0]},
            ),
            *(
                (f"{title} on labelled rows", metric, {})
                for title, metric in bundle.task.evidently_panels
            ),
        ):
            project.dashboard.add_panel(
                DashboardPanelPlot(
                    title=title,
                    size="half",
                    values=[PanelMetric(legend=title, metric=metric, metric_labels=labels)],
                    plot_params={"plot_type": "line"},
                )
            )
        project.save()
    for snapshot in snapshots:
        workspace.add_run(project.id, snapshot, include_data=False)


def _check_key_features(params: Params, bundle: ModelBundle, policy: LogPolicy) -> None:
    features = bundle.schema.feature_names
    unknown = [c for c in params.monitor.thresholds.key_features if c not in features]
    if unknown:
        raise ConfigError(
            f"monitor.thresholds.key_features: {unknown} are not columns of the schema ({features})"
        )
    dropped = [c for c in params.monitor.thresholds.key_features if c in policy.dropped]
    if dropped:
        raise ConfigError(
            f"monitor.thresholds.key_features: {dropped} are dropped from the prediction log"
            " (schema.yaml `log: drop`): monitoring cannot compare them; remove them here"
        )


def _data_snapshot(
    current: pd.DataFrame, reference: pd.DataFrame, bundle: ModelBundle, params: Params
) -> Any:
    """Evidently's data summary and drift of every feature and of the model's probability, with
    `monitor.drift`'s methods and thresholds; None when the window holds no rows."""
    from evidently import Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    if not len(current):
        return None
    drift = params.monitor.drift
    data_report = Report(
        [
            DataSummaryPreset(**SUMMARY_WITHOUT_TESTS, column_tests={}),
            DataDriftPreset(
                columns=[*bundle.schema.feature_names, *output_columns(bundle)],
                num_method=drift.num_method,
                num_threshold=drift.num_threshold,
                cat_method=drift.cat_method,
                cat_threshold=drift.cat_threshold,
                include_tests=False,
            ),
        ]
    )
    return data_report.run(
        _dataset(current, bundle, False),
        _dataset(reference, bundle, False),
    )


@dataclass(frozen=True)
class PerformanceComparison:
    """The model's metrics on the window's labelled rows and on the reference, and Evidently's
    classification report of both; all None with too few labels (or one class only)."""

    current: dict[str, float] | None = None
    reference: dict[str, float] | None = None
    snapshot: Any = None


def _performance_comparison(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    window: WindowInfo,
    bundle: ModelBundle,
    params: Params,
    labels: Provenance | None,
) -> PerformanceComparison:
    from evidently import Report

    if labels is None or not labels.judged:  # too few labels, or labels not to be trusted
        return PerformanceComparison()
    current_performance = performance(current, bundle, params)
    reference_performance = performance(reference, bundle, params)
    if current_performance is None:
        return PerformanceComparison(current_performance, reference_performance)
    rows = current[labelled(current, bundle)]
    snapshot = Report([bundle.task.evidently_preset(bundle.decision)]).run(
        _dataset(rows, bundle, True), _dataset(reference, bundle, True)
    )
    return PerformanceComparison(current_performance, reference_performance, snapshot)


def _result(
    now: datetime,
    bundle: ModelBundle,
    reference_rows: int,
    seen: GateInputs,
    checks: list[Check],
    performance_report: bool,
    shown: list[str],
) -> dict[str, Any]:
    """The run's result.json."""
    labels = seen.labels.dict() if seen.labels is not None else None
    run_id = now.strftime("%Y%m%dT%H%M%SZ")
    run_dir = Paths.monitoring / "runs" / run_id
    return {
        "run_id": run_id,
        "time": now.isoformat(timespec="seconds"),
        "model": f"{bundle.task.describe(bundle.decision.value)}, {bundle.family}",
        "reference_rows": reference_rows,
        "window": seen.window.dict(),
        "passed": all(check.passed for check in checks),
        "checks": [check.__dict__ for check in checks],
        "drift_scores": seen.scores,
        "drifted_columns": list(seen.drifted),
        "labels": labels,  # the labels' provenance (None: too few to judge with)
        "performance": {
            "current": seen.current_performance,
            "reference": seen.reference_performance,
            "shown": shown,  # the index page's columns: the primary metric, the gated ones
        },
        "report": str(run_dir / "report.html"),
        "performance_report": str(run_dir / "performance.html") if performance_report else None,
    }


def _write_run(result: dict[str, Any], data_snapshot: Any, performance_snapshot: Any) -> None:
    """The run's folder (reports, snapshots, result, summary) and the latest summary."""
    run_dir = Paths.monitoring / "runs" / result["run_id"]
    with stage_outputs() as outputs:
        if data_snapshot is not None:
            data_snapshot.save_html(str(outputs.path(run_dir / "report.html")))
            outputs.json(data_snapshot.dump_dict(), run_dir / "snapshot.json")
        else:
            outputs.text(
                "<!doctype html><title>No rows</title><p>The window held no rows.</p>\n",
                run_dir / "report.html",
            )
        if performance_snapshot is not None:
            performance_snapshot.save_html(str(outputs.path(run_dir / "performance.html")))
            outputs.json(performance_snapshot.dump_dict(), run_dir / "performance.json")
        outputs.json(result, run_dir / "result.json")
        summary = summary_markdown(result)
        outputs.text(summary, run_dir / "summary.md")
        outputs.text(summary, Paths.monitoring / "summary.md")


def run(params: Params, now: datetime | None = None) -> dict[str, Any]:
    """One monitoring run; raises GateError (after writing everything) when the gate fails."""
    os.environ.setdefault("DO_NOT_TRACK", "1")  # before Evidently is imported
    now = now or datetime.now(UTC)
    scoring = load_bundle(Paths.model)
    policy = LogPolicy.load(scoring.schema, params.serving.privacy.key_file, base_dir=Path.cwd())
    _check_key_features(params, scoring, policy)
    # Both sides as the prediction log keeps them (schema.yaml's `log:`): dropped columns left
    # out, pseudonymised ones compared as pseudonyms under the current key.
    reference = policy.as_logged(load_reference(scoring))
    current, window = load_current(params, scoring, now)
    current = policy.as_logged(current)
    bundle = dataclasses.replace(scoring, schema=policy.logged_schema(scoring.schema))

    data_snapshot = _data_snapshot(current, reference, bundle, params)
    scores = drift_scores(data_snapshot) if data_snapshot is not None else {}
    labels = (
        provenance(current, reference[bundle.target], bundle, params.monitor.labels)
        if window.labelled >= params.monitor.thresholds.min_labelled_rows
        else None
    )
    compared = _performance_comparison(current, reference, window, bundle, params, labels)
    seen = GateInputs(
        window=window,
        scores=scores,
        drifted=drifted_columns(scores, bundle, params),
        missing=_missing_shares(current, reference, bundle.schema.feature_names),
        current_performance=compared.current,
        reference_performance=compared.reference,
        labels=labels,
    )
    checks = gate(params, bundle, seen)
    shown = list(dict.fromkeys([params.evaluate.primary_metric, *params.evaluate.thresholds]))
    result = _result(
        now, bundle, len(reference), seen, checks, compared.snapshot is not None, shown
    )

    _write_run(result, data_snapshot, compared.snapshot)
    write_index(Paths.monitoring)
    snapshots = [s for s in (data_snapshot, compared.snapshot) if s is not None]
    if snapshots:
        add_to_workspace(params.monitor.workspace, snapshots, bundle)
    if not result["passed"]:
        raise GateError("monitor", [f"{c.name}: {c.detail}" for c in checks if not c.passed])
    return result
