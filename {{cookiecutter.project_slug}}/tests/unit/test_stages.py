"""The stages chained in a scratch workspace, as dvc.yaml runs them, with a quick search grid."""

from pathlib import Path

import joblib
import pytest

from {{ cookiecutter.package_name }}.bundle import ModelBundle, load_bundle
from {{ cookiecutter.package_name }}.config import Paths, load_params
from {{ cookiecutter.package_name }}.errors import ConfigError, DataValidationError, GateError
from {{ cookiecutter.package_name }}.io import file_sha256, load_table, read_json, write_table
from {{ cookiecutter.package_name }}.pipeline import (
    curate,
    evaluate,
    explain,
    explore,
    fairness,
    ingest,
    model_card,
    split,
    train,
    validate,
)
from {{ cookiecutter.package_name }}.schema import load_schema
from {{ cookiecutter.package_name }}.task import TASK_CLASSES
from tests.conftest import edit_params

pytestmark = pytest.mark.unit


def test_stages_write_their_outputs(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    params = load_params()
    manifest = ingest.run(params)
    assert manifest["sha256"] == file_sha256(Paths.raw_data)
    assert manifest["rows"] > 0
    for stage in (curate, validate, explore, split, train, evaluate, fairness, explain, model_card):
        stage.run(params)
    explored = read_json(Paths.explore_summary)
    assert explored["rows"] == read_json(Paths.curate_report)["rows_out"]
    assert Paths.explore_report.stat().st_size > 0
    # not a terminal: the search says what it will do and what it did, a line each
    logged = capsys.readouterr().err.splitlines()
    folds = params.train.cv_folds
    assert f"train: search, 1 candidates x {folds} folds: {folds} fits" in logged
    assert any(
        line.startswith(f"train: search, 1 candidates x {folds} folds: done, {folds}/")
        for line in logged
    )
    # the other long stages too: explore's two parts over the rows, fairness by feature
    rows_in = f"{explored['rows']:,} rows"
    assert f"explore: {rows_in} (figures, then Evidently's report): 2 parts" in logged
    assert any(
        line.startswith(f"explore: {rows_in} (") and ": done, 2/2 parts in " in line
        for line in logged
    )
    features = len(params.data.sensitive_features)
    assert any(
        line.startswith("fairness: ") and f": done, {features}/{features} sensitive" in line
        for line in logged
    )
    rows = {path: len(load_table(str(path))) for path in (Paths.train_data, Paths.test_data)}
    assert abs(rows[Paths.test_data] / sum(rows.values()) - params.split.test_size) < 0.01
    metrics = read_json(Paths.metrics)
    assert metrics["gate"]["passed"]
    assert set(read_json(Paths.fairness)["features"]) == set(params.data.sensitive_features)
    plots = sorted(path.name for path in Paths.evaluation_plots.iterdir())
    assert plots, "evaluate wrote no plot"  # the task's: ROC, confusion, predicted ...
    for name in plots:
        assert (Paths.evaluation_plots / name).stat().st_size > 0
    assert (Paths.plots / "fairness.csv").stat().st_size > 0
    card = Paths.model_card.read_text()
    assert f"{metrics['model'][params.evaluate.primary_metric]:.3f}" in card
    # explain: every model input ranked by what shuffling it costs, the top ones' dependence
    explained = read_json(Paths.explanations)
    ranked = [row["input"] for row in explained["importance"]]
    assert sorted(ranked) == sorted(load_bundle(Paths.model).features)
    increases = [row["cost_increase"] for row in explained["importance"]]
    assert increases == sorted(increases, reverse=True) and increases[0] > 0
    top = ranked[: params.explain.top_inputs]
    assert [entry["input"] for entry in explained["partial_dependence"]] == top
    assert all(f"every row's `{name}` set to each value" in card for name in top)
    assert f"| {ranked[0]} | {increases[0]:.3f} |" in card
    chart = Paths.importance_chart.read_text()  # the card's chart: a bar and a label per input
    assert "](importance.svg)" in card and chart.count("<rect ") == len(ranked)
    assert all(f">{name}</text>" in chart for name in ranked)


def test_invalid_data_stops_at_validate(workspace: Path) -> None:
    params = load_params()
    table = load_table(params.data.source, params.data.query)
    dropped = load_schema(params.data.schema_file).feature_names[0]
    write_table(table.drop(columns=[dropped]), "data/external/broken.csv")
    params = edit_params(workspace, data__source="data/external/broken.csv", data__query=None)
    ingest.run(params)
    curate.run(params)
    with pytest.raises(DataValidationError, match=f"missing column: '{dropped}'"):
        validate.run(params)
    assert not Paths.validated_data.exists()
    assert read_json(Paths.validation_report)["passed"] is False


def test_gate_failure_keeps_the_evidence_but_raises(trained_workspace: Path) -> None:
    primary = load_params().evaluate.primary_metric
    error = primary in TASK_CLASSES[load_params().data.task].lower_is_better  # a maximum
    impossible = 0.0 if error else 0.999
    params = edit_params(trained_workspace, evaluate__thresholds={primary: impossible})
    side = "above" if error else "below"
    with pytest.raises(GateError, match=rf"{primary} .* {side} evaluate\.thresholds\.{primary} "):
        evaluate.run(params)
    assert read_json(Paths.metrics)["gate"]["passed"] is False


def test_fairness_gate_failure(trained_workspace: Path) -> None:
    measure = next(iter(load_params().fairness.thresholds))
    params = edit_params(trained_workspace, fairness__thresholds={measure: 0.0})
    with pytest.raises(GateError, match=measure):
        fairness.run(params)


def test_bad_search_grid_leaves_the_previous_model(trained_workspace: Path) -> None:
    params = load_params()
    before = file_sha256(Paths.model)
    family = params.train.model
    params = edit_params(trained_workspace, train__search={family: {"no_such_parameter": [1]}})
    with pytest.raises(ConfigError, match=f"train.search.{family}"):
        train.run(params)
    assert file_sha256(Paths.model) == before
    assert isinstance(joblib.load(Paths.model), ModelBundle)
    assert not list(Paths.model.parent.glob(".*.tmp"))


def test_a_stage_failing_mid_write_leaves_all_its_previous_files(
    trained_workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train writes three files; a crash while writing the second leaves all three as they were."""
    params = load_params()
    files = (Paths.baseline_model, Paths.model, Paths.train_report)
    before = {path: file_sha256(path) for path in files}
    params = edit_params(trained_workspace, split__seed=params.split.seed + 1)  # another model
    saves = []

    def save_then_crash(self: ModelBundle, path: Path) -> None:
        saves.append(path)
        if len(saves) == 2:
            raise OSError("disk full")
        joblib.dump(self, path)

    monkeypatch.setattr(ModelBundle, "save", save_then_crash)
    with pytest.raises(OSError, match="disk full"):
        train.run(params)
    assert {path: file_sha256(path) for path in files} == before
    assert not list(Paths.model.parent.glob(".*.tmp"))


# A pinned decision per task: a cut-off, the most probable class, an offset.
PINNED: dict[str, float | str] = {"binary": 0.35, "multiclass": "most_probable", "regression": 1.5}


def test_decision_minimises_cost_on_training_rows_or_is_pinned(trained_workspace: Path) -> None:
    params = load_params()
    chosen = load_bundle(Paths.model)
    report = read_json(Paths.train_report)["decision_threshold"]
    assert chosen.decision.source == "minimize_cost"
    assert report["value"] == chosen.decision.value and report["cv_cost_per_prediction"] > 0
    evaluate.run(params)
    metrics = read_json(Paths.metrics)  # chosen on the training rows: close to best on the test
    assert metrics["model"]["cost"] <= metrics["model_at_default_threshold"]["cost"] * 1.05

    value = PINNED[params.data.task]
    pinned = edit_params(trained_workspace, train__decision_threshold=value)
    train.run(pinned)
    assert load_bundle(Paths.model).decision.value == value
    assert load_bundle(Paths.model).decision.source == "params"
