"""Stage 7, evaluate: test-split metrics for the model and the baseline, each deciding as its
bundle says (and the model by its task's default too, to show what deciding by cost saves),
DVC plots, and a gate that stops the pipeline when the model misses a threshold, does not beat
the baseline, or costs more than it. The task (task.py) owns the metrics and their directions."""

from __future__ import annotations

from typing import Any

import numpy as np

from {{ cookiecutter.package_name }}.bundle import load_bundle
from {{ cookiecutter.package_name }}.config import Params, Paths
from {{ cookiecutter.package_name }}.errors import GateError
from {{ cookiecutter.package_name }}.io import stage_outputs
from {{ cookiecutter.package_name }}.task import Decision, Task


def scored(
    task: Task, y_true: np.ndarray, outputs: np.ndarray, decision: Decision
) -> dict[str, Any]:
    """The task's metrics of deciding by `decision`, with the decision recorded."""
    decisions = task.decide(outputs, decision)
    return {"threshold": decision.value, **task.metrics(y_true, outputs, decisions)}


def run(params: Params) -> dict[str, Any]:
    model, baseline = load_bundle(Paths.model), load_bundle(Paths.baseline_model)
    test = model.schema.read_csv(Paths.test_data)
    config, task = params.evaluate, model.task

    y_true = model.encode(test[model.target])
    outputs = model.outputs(test)  # scored once, decided each way below
    model_metrics = scored(task, y_true, outputs, model.decision)
    baseline_metrics = scored(task, y_true, baseline.outputs(test), baseline.decision)
    failures = task.gate_failures(
        model_metrics,
        baseline_metrics,
        config.thresholds,
        config.primary_metric,
        config.min_gain_over_baseline,
    )
    result = {
        "task": task.name,
        "model": model_metrics,
        "model_at_default_threshold": scored(task, y_true, outputs, task.default_decision),
        "baseline": baseline_metrics,
        "delta_vs_baseline": {
            name: model_metrics[name] - baseline_metrics[name]
            for name, value in model_metrics.items()
            if name != "threshold" and isinstance(value, int | float)
        },
        "decision": {"threshold": model.decision.value, "chosen_by": model.decision.source},
        "test_rows": len(test),
        "gate": {"passed": not failures, "failures": failures},
    }
    with stage_outputs() as outputs_:  # the evidence is written even when the gate fails
        plots = task.plots(y_true, outputs, model.decide(outputs))
        for name, table in plots.items():
            outputs_.table(table.round(4), Paths.evaluation_plots / name)
        outputs_.json(result, Paths.metrics)
    if failures:
        raise GateError("evaluate", failures)
    return result
