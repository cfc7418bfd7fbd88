"""`make challenge`: the candidate (this work tree's models/model.joblib) against the champion
(the bundle production serves, found through git and read with DVC), scored on the same rows:
the candidate's test split and the prediction log's latest labelled window (as monitoring reads
it). The cost of mistakes per prediction and evaluate.primary_metric side by side; refused when
the candidate is worse by more than deploy.champion allows. The labelled window's labels are
shown by labeller (their provenance) and refused, with the labeller named, when one labeller
supplies too many of them or their mix departs from history (monitor.labels): a flood of wrong
labels must not pick the model that ships. Given the model the image to deploy carries (its
`lineage.model-sha256` label, which the deploy workflow reads from the registry), it refuses an
image of another model than the candidate judged here. Written as markdown (a job summary, a
pull request's body) and JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from {{ cookiecutter.package_name }} import deployments
from {{ cookiecutter.package_name }}.bundle import ModelBundle, load_bundle
from {{ cookiecutter.package_name }}.config import Params, Paths
from {{ cookiecutter.package_name }}.errors import GateError, PipelineError
from {{ cookiecutter.package_name }}.io import file_sha256, write_json, write_text
from {{ cookiecutter.package_name }}.monitoring.frames import labelled
from {{ cookiecutter.package_name }}.monitoring.labels import Provenance, provenance
from {{ cookiecutter.package_name }}.monitoring.labels import markdown as provenance_markdown
from {{ cookiecutter.package_name }}.monitoring.window import load_current
from {{ cookiecutter.package_name }}.pipeline.evaluate import scored
from {{ cookiecutter.package_name }}.task import Task

ENVIRONMENT = "production"
REPORT = Path("reports/challenge.md")
RESULT = Path("reports/challenge.json")
COST = "cost_per_prediction"
TOLERANCE = 1e-12  # float noise: an equal candidate is never "worse"


@dataclass
class Comparison:
    """Both bundles on one set of rows; `judged` False (with the reason) when it cannot count."""

    data: str
    rows: int
    judged: bool
    note: str = ""
    production: dict[str, Any] = field(default_factory=dict)
    candidate: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    labels: dict[str, Any] | None = None  # the labels' provenance (Provenance.dict)


def _scored_by_both(
    rows: pd.DataFrame,
    y_true: np.ndarray,
    candidate: ModelBundle,
    production: ModelBundle,
    params: Params,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """evaluate's metrics of each bundle on `rows`, each deciding as its bundle says; the
    mistakes of both priced by the candidate's costs (this work tree's params.yaml)."""
    if production.task.name != candidate.task.name:
        raise PipelineError(
            f"production's model is a {production.task.name} model, the candidate a"
            f" {candidate.task.name} one: they decide different things and cannot be compared"
        )
    missing = [name for name in production.features if name not in rows.columns]
    if missing:
        raise PipelineError(
            f"production's model takes inputs the candidate's data lacks ({', '.join(missing)}):"
            " the two cannot be scored on the same rows; compare them by hand"
        )
    task = candidate.task
    return (
        scored(task, y_true, production.outputs(rows), production.decision),
        scored(task, y_true, candidate.outputs(rows), candidate.decision),
    )


def judge(comparison: Comparison, params: Params, task: Task) -> list[str]:
    """Why the candidate is worse than production on these rows, each naming its limit."""
    limits = params.deploy.champion
    primary = params.evaluate.primary_metric
    production, candidate = comparison.production, comparison.candidate
    failures = []
    increase = candidate[COST] - production[COST]
    if increase > limits.max_cost_increase + TOLERANCE:
        failures.append(
            f"{comparison.data}: cost per prediction {candidate[COST]:.4f} is {increase:+.4f}"
            f" against production's {production[COST]:.4f}, more than"
            f" deploy.champion.max_cost_increase {limits.max_cost_increase:g}"
        )
    drop = production[primary] - candidate[primary]
    if primary in task.lower_is_better:  # a rise is the worsening
        drop = -drop
    if drop > limits.max_metric_drop + TOLERANCE:
        failures.append(
            f"{comparison.data}: {primary} {candidate[primary]:.4f} is {-drop:+.4f} against"
            f" production's {production[primary]:.4f}, a larger drop than"
            f" deploy.champion.max_metric_drop {limits.max_metric_drop:g}"
        )
    return failures


def on_test_split(candidate: ModelBundle, production: ModelBundle, params: Params) -> Comparison:
    test = candidate.schema.read_csv(Paths.test_data)
    y_true = candidate.encode(test[candidate.target])
    comparison = Comparison(data="test split", rows=len(test), judged=True)
    comparison.production, comparison.candidate = _scored_by_both(
        test, y_true, candidate, production, params
    )
    comparison.failures = judge(comparison, params, candidate.task)
    return comparison


def on_labelled_window(
    candidate: ModelBundle, production: ModelBundle, params: Params, now: datetime
) -> Comparison:
    """The rows monitoring would judge (monitor.current cut to monitor.window) that have a true
    label, re-scored by both bundles: what production decided then does not matter here."""
    try:
        window, info = load_current(params, candidate, now)
    except PipelineError as error:
        return Comparison(data="labelled window", rows=0, judged=False, note=f"not read: {error}")
    name = f"labelled window ({info.source}, {info.window})"
    rows = window[labelled(window, candidate)].reset_index(drop=True)
    y_true = candidate.encode(rows[candidate.target])
    needed = params.deploy.champion.min_labelled_rows
    if len(rows) < needed:
        note = f"{len(rows)} labelled rows, fewer than deploy.champion.min_labelled_rows {needed}"
        return Comparison(data=name, rows=len(rows), judged=False, note=note)
    if len(set(y_true)) < 2:
        note = "every label is the same class: the metrics need both"
        return Comparison(data=name, rows=len(rows), judged=False, note=note)
    unlogged = [
        column.name
        for column in candidate.schema.columns
        if column.log != "keep" and column.name in {*candidate.features, *production.features}
    ]
    if unlogged:
        note = (
            f"the log does not keep the model input(s) {', '.join(unlogged)} (schema.yaml"
            " `log:`): its rows cannot be scored again"
        )
        return Comparison(data=name, rows=len(rows), judged=False, note=note)
    history = candidate.schema.read_csv(Paths.test_data)[candidate.target]
    labels = provenance(rows, history, candidate, params.monitor.labels)
    if not labels.judged:
        return Comparison(
            data=name,
            rows=len(rows),
            judged=False,
            note="its labels are refused (below)",
            failures=[f"{name}: not judged with its labels: {why}" for why in labels.refusals],
            labels=labels.dict(),
        )
    comparison = Comparison(data=name, rows=len(rows), judged=True, labels=labels.dict())
    comparison.production, comparison.candidate = _scored_by_both(
        rows, y_true, candidate, production, params
    )
    comparison.failures = judge(comparison, params, candidate.task)
    return comparison


def image_check(image_sha256: str) -> dict[str, Any]:
    """The model the image to deploy carries (the sha256 of its bundle, the image's
    `lineage.model-sha256` label) against the candidate's models/model.joblib."""
    candidate = file_sha256(Paths.model)
    failures = []
    if not image_sha256:
        failures.append(
            "the image to deploy names no model (no lineage.model-sha256 label): build it with"
            " `make image` or the release workflow"
        )
    elif image_sha256 != candidate:
        failures.append(
            f"the image to deploy serves the model of sha256 {image_sha256[:12]}, but the"
            f" candidate judged here is {candidate[:12]} ({Paths.model}): deploy the image built"
            " from this commit"
        )
    return {"image": image_sha256, "candidate": candidate, "failures": failures}


def markdown(result: dict[str, Any]) -> str:
    """The comparison for a GitHub job summary or a pull request's body."""
    lines = ["### The candidate against production", ""]
    if image := result.get("image"):
        same = "the same model" if not image["failures"] else "**another model**"
        lines += [
            f"Image to deploy: model sha256 `{image['image'][:12] or 'none named'}`; candidate"
            f" judged here: `{image['candidate'][:12]}` ({same}).",
            "",
        ]
    deployment = result["production"]
    if deployment is None:
        lines.append(
            f"No production deployment is recorded (no `{deployments.TAG_PREFIX}/{ENVIRONMENT}/*`"
            " tag in this clone): this is the first deployment, nothing to compare with."
            + (" **Passed.**" if result["passed"] else "")
        )
        if not result["passed"]:
            lines += ["", "**Refused**:", *(f"- {failure}" for failure in result["failures"])]
        return "\n".join(lines) + "\n"
    image = f", image `{deployment['image_digest']}`" if deployment["image_digest"] else ""
    model = f", model `{deployment['model_version']}`" if deployment["model_version"] else ""
    lines += [
        f"Production: commit `{deployment['commit'][:12]}` (tag `{deployment['tag']}`{model}"
        f"{image}), deployed {deployment['deployed_at'] or 'at an unrecorded time'}.",
        "Candidate: `models/model.joblib` of this work tree. Each decides at its own threshold.",
        "",
    ]
    limits = result["limits"]
    primary = result["primary_metric"]
    if result["comparisons"]:
        lines += [
            "| Data | Rows | Metric | Production | Candidate | Change | Limit |",
            "|---|---:|---|---:|---:|---:|---:|",
        ]
    for comparison in result["comparisons"]:
        if not comparison["judged"]:
            lines.append(
                f"| {comparison['data']} | {comparison['rows']} | not judged:"
                f" {comparison['note']} | | | | |"
            )
            continue
        for metric, label, limit in (
            (COST, "cost per prediction", f"+{limits['max_cost_increase']:g}"),
            (primary, primary, f"-{limits['max_metric_drop']:g}"),
        ):
            before, after = comparison["production"][metric], comparison["candidate"][metric]
            lines.append(
                f"| {comparison['data']} | {comparison['rows']} | {label} | {before:.4f}"
                f" | {after:.4f} | {after - before:+.4f} | {limit} |"
            )
    lines.append("")
    for comparison in result["comparisons"]:
        if comparison.get("labels"):
            lines += [*provenance_markdown(Provenance.from_dict(comparison["labels"])), ""]
    if result["passed"]:
        lines.append("**Passed**: the candidate is not worse than production beyond the limits.")
    else:
        lines.append("**Refused**: the candidate is worse than production, or cannot be judged.")
        lines += [f"- {failure}" for failure in result["failures"]]
    return "\n".join(lines) + "\n"


def run(
    params: Params, now: datetime | None = None, image_model_sha256: str | None = None
) -> dict[str, Any]:
    """Compare, write reports/challenge.md and .json, and raise GateError when refused (after
    writing them: the refusal is evidence too). `image_model_sha256`: the image's
    lineage.model-sha256, which must be the candidate's (None: no image to check, as in
    `make challenge` on a laptop)."""
    now = now or datetime.now(UTC)
    candidate = load_bundle(Paths.model)
    deployment = deployments.latest(ENVIRONMENT)
    image = image_check(image_model_sha256) if image_model_sha256 is not None else None
    result: dict[str, Any] = {
        "compared_at": now.isoformat(),
        "image": image,
        "production": deployment.dict() if deployment else None,
        "primary_metric": params.evaluate.primary_metric,
        "limits": params.deploy.champion.model_dump(),
        "comparisons": [],
        "failures": list(image["failures"]) if image else [],
    }
    if deployment is not None:
        try:
            production = deployments.read_bundle(deployment)
            comparisons = [
                on_test_split(candidate, production, params),
                on_labelled_window(candidate, production, params, now),
            ]
        except PipelineError as error:
            comparisons = []
            result["failures"].append(f"production cannot be compared with: {error}")
        result["comparisons"] = [asdict(comparison) for comparison in comparisons]
        result["failures"] += [failure for c in comparisons for failure in c.failures]
    result["passed"] = not result["failures"]
    write_json(result, RESULT)
    write_text(markdown(result), REPORT)
    if not result["passed"]:
        raise GateError("challenge", result["failures"])
    return result
