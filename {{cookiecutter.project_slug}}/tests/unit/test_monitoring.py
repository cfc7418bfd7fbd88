"""Monitoring: the window's sampling, the simulator's shifts, and a whole run in a scratch
workspace (simulated traffic passes the gate, shifted traffic fails it naming the columns, both
runs are in the history page and the Evidently workspace)."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.bundle import load_bundle
from {{ cookiecutter.package_name }}.config import Paths, load_params
from {{ cookiecutter.package_name }}.errors import ConfigError, GateError
from {{ cookiecutter.package_name }}.monitoring import report, simulate
from {{ cookiecutter.package_name }}.monitoring.window import load_current, sample
from {{ cookiecutter.package_name }}.pipeline import (
    curate,
    ingest,
    reference,
    split,
    train,
    validate,
)
from {{ cookiecutter.package_name }}.serving.prediction_log import open_sink
from tests.conftest import edit_params

pytestmark = pytest.mark.unit


def test_sampling_is_seeded_and_keeps_the_label_mix() -> None:
    frame = pd.DataFrame({"x": range(1000), "y": ["a"] * 800 + ["b"] * 150 + [None] * 50})
    first = sample(frame, 100, seed=7, strata=frame["y"])
    assert len(first) == 100
    assert first.equals(sample(frame, 100, seed=7, strata=frame["y"]))
    assert first["y"].fillna("none").value_counts().to_dict() == {"a": 80, "b": 15, "none": 5}
    assert sample(frame, 5000, seed=7, strata=None).equals(frame)  # small windows stay whole


@pytest.fixture
def scored_workspace(workspace: Path) -> Path:
    """A workspace with a bundle and the reference, key features taken from its own schema."""
    params = load_params()
    for stage in (ingest, curate, validate, split, train, reference):
        stage.run(params)
    bundle = load_bundle(Paths.model)
    rows = bundle.schema.read_csv(Paths.test_data)
    numeric = [  # columns a multiplier moves: most of their values are not 0
        n for n in bundle.schema.numeric_features if n in bundle.features and rows[n].median() > 0
    ][:2]
    edit_params(
        workspace,
        monitor__thresholds__key_features=numeric,
        monitor__simulate__drift={name: 3.0 for name in numeric},
        monitor__workspace=(workspace / "evidently").as_uri(),  # a URL, through fsspec
        serving__prediction_log="logs/predictions",
    )
    return workspace


def test_shifted_rows_stay_valid_and_bad_drift_settings_are_named(scored_workspace: Path) -> None:
    bundle = load_bundle(Paths.model)
    rows = bundle.schema.read_csv(Paths.test_data)
    name = bundle.schema.numeric_features[0]
    moved = simulate.shifted(rows, {name: 50.0}, bundle, seed=1)
    column = bundle.schema.column(name)
    assert column.max is None or moved[name].max() <= column.max
    with pytest.raises(ConfigError, match=r"monitor\.simulate\.drift: 'nope'"):
        simulate.shifted(rows, {"nope": 2.0}, bundle, seed=1)


def test_simulated_traffic_passes_and_shifted_traffic_fails_naming_columns(
    scored_workspace: Path,
) -> None:
    params = load_params()
    key_features = params.monitor.thresholds.key_features

    first, second = datetime.now(UTC), datetime.now(UTC) + timedelta(minutes=1)
    simulate.run(params)
    passed = report.run(params, now=first)
    assert passed["passed"] is True
    assert passed["window"]["simulated"] == params.monitor.simulate.rows
    assert passed["performance"]["current"] is not None  # the feedback share came back
    # the task's own metrics, and Evidently's preset for the task, on the labelled rows
    assert params.evaluate.primary_metric in passed["performance"]["current"]
    performance = Path(passed["performance_report"])
    assert performance.stat().st_size > 10_000
    drift = {check["name"]: check for check in passed["checks"]}["prediction_drift"]
    for column in report.output_columns(load_bundle(Paths.model)):  # probabilities, or the number
        assert column in drift["detail"], drift["detail"]

    simulate.run(params, drift=True)
    with pytest.raises(GateError) as failure:
        report.run(params, now=second)
    for name in key_features:
        assert f"key_feature:{name}" in str(failure.value)

    runs = sorted((Paths.monitoring / "runs").iterdir())
    names = [moment.strftime("%Y%m%dT%H%M%SZ") for moment in (first, second)]
    assert [run.name for run in runs] == names
    for run in runs:
        result = json.loads((run / "result.json").read_text())
        assert (run / "report.html").stat().st_size > 100_000
        assert Path(result["report"]) == run / "report.html"
        from evidently.core.report import Snapshot

        loaded = Snapshot.load(str(run / "snapshot.json"))
        assert loaded.dict()["metrics"], "the snapshot loads back with its metrics"
    index = (Paths.monitoring / "index.html").read_text()
    assert index.count("<tr><td>") == 2 and "failed" in index and "passed" in index
    assert f'href="runs/{names[1]}/report.html"' in index
    assert f"## Monitoring {names[1]}: FAILED" in (Paths.monitoring / "summary.md").read_text()

    from evidently.ui.workspace import Workspace

    stored = Workspace.create(params.monitor.workspace)
    [project] = stored.search_project(report.PROJECT_NAME)
    assert len(stored.list_runs(project.id)) == 4  # data + performance, per run


def test_the_window_reads_a_sql_prediction_log_and_any_source(
    scored_workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREDICTION_LOG", f"sqlite:///{scored_workspace / 'log.db'}")
    params = load_params()
    bundle = load_bundle(Paths.model)
    simulate.run(params)
    frame, info = load_current(params, bundle, datetime.now(UTC) + timedelta(seconds=1))
    rows = params.monitor.simulate.rows
    assert (info.rows, info.simulated) == (rows, rows)
    assert info.labelled == round(rows * params.monitor.simulate.feedback_share)
    sink = open_sink(params.serving.prediction_log, base_dir=Path.cwd())  # who asked, labelled
    assert set(sink.read_predictions()["caller"]) == {simulate.CALLER}
    assert set(sink.read_feedback()["labeller"]) == {simulate.CALLER}

    test_rows = bundle.schema.read_csv(Paths.test_data).head(120)
    test_rows.to_csv("current.csv", index=False)
    params = edit_params(scored_workspace, monitor__current="current.csv")
    frame, info = load_current(params, bundle, datetime.now(UTC))
    assert (info.source, info.rows, info.labelled) == ("current.csv", 120, 120)
    assert frame["prediction"].notna().all()
    for name in bundle.task.output_names():  # probabilities (a number has none)
        assert frame[name].between(0, 1).all()
