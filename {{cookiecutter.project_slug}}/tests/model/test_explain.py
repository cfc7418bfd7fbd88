"""The explain stage's report (reports/explain.json, rendered in the model card) agrees with
the model and the other stages: its cost is evaluate's, its partial dependence is what the
bundle decides when every test row gets the value."""

from pathlib import Path

import numpy as np
import pytest

from {{ cookiecutter.package_name }}.bundle import ModelBundle
from {{ cookiecutter.package_name }}.config import Params, Paths
from {{ cookiecutter.package_name }}.io import read_json

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def report(pipeline_outputs: Path) -> dict:
    return read_json(pipeline_outputs / Paths.explanations)


def test_the_cost_shuffling_raises_is_the_cost_evaluate_reports(
    report: dict, pipeline_outputs: Path, bundle: ModelBundle
) -> None:
    metrics = read_json(pipeline_outputs / Paths.metrics)["model"]
    assert report["cost_per_prediction"] == pytest.approx(metrics["cost_per_prediction"])
    assert sorted(row["input"] for row in report["importance"]) == sorted(bundle.features)


def test_partial_dependence_is_what_the_model_decides_with_the_value_everywhere(
    report: dict, params: Params, pipeline_outputs: Path, bundle: ModelBundle
) -> None:
    test = bundle.schema.read_csv(pipeline_outputs / Paths.test_data)
    ranked = [row["input"] for row in report["importance"]]
    shown = report["partial_dependence"]
    assert [entry["input"] for entry in shown] == ranked[: params.explain.top_inputs]
    for entry in shown:
        assert 2 <= len(entry["values"]) <= params.explain.grid_points
        for row in (entry["values"][0], entry["values"][-1]):
            decisions = bundle.decide(bundle.outputs(test.assign(**{entry["input"]: row["value"]})))
            expected = bundle.task.decision_summary(decisions)
            assert {key: row[key] for key in expected} == pytest.approx(expected), entry["input"]
    # the most important input moves the decisions: its dependence is not flat
    first = shown[0]["values"]
    measures = [key for key in first[0] if key != "value"]
    assert np.ptp([[row[key] for key in measures] for row in first], axis=0).max() > 0
