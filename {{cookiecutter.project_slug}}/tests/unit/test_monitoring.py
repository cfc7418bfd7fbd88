"""Monitoring: the window's sampling, the simulator's shifts, and a whole run in a scratch
workspace (simulated traffic passes the gate, shifted traffic fails it naming the columns, both
runs are in the history page and the Evidently workspace)."""

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.bundle import load_bundle
from {{ cookiecutter.package_name }}.config import Paths, load_params
from {{ cookiecutter.package_name }}.errors import ConfigError, GateError
from {{ cookiecutter.package_name }}.monitoring import report, simulate
from {{ cookiecutter.package_name }}.monitoring.labels import provenance
from {{ cookiecutter.package_name }}.monitoring.window import WindowInfo, load_current, sample
from {{ cookiecutter.package_name }}.privacy import KEY_ENV_VAR, LogPolicy, rotate_key
from {{ cookiecutter.package_name }}.serving.prediction_log import (
    DirectorySink,
    decided_records,
    open_sink,
)
from {{ cookiecutter.package_name }}.task import output_rows
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
def scored_workspace(trained_workspace: Path) -> Path:
    """A workspace with a bundle and the reference, key features taken from its own schema."""
    workspace = trained_workspace
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


def test_the_window_leaves_out_explanation_requests_unless_labelled(
    scored_workspace: Path, log_key: Path
) -> None:
    """/explain's logged decisions often repeat /predict's: out of the window, but one that
    was labelled counts (its outcome is evidence like any other)."""
    bundle = load_bundle(Paths.model)
    rows = bundle.schema.read_csv(Paths.test_data).head(6)
    policy = LogPolicy.load(bundle.schema)
    predicted, explained = (
        _logged_as_served(rows.head(3), policy),
        _logged_as_served(rows.tail(3), policy),
    )
    for record in explained:
        record["explained"] = True
    sink = DirectorySink(scored_workspace / "logs" / "predictions")
    sink.write("predictions", predicted + explained)
    labelled = explained[0]
    label = {"label": str(rows[bundle.target].iloc[3]), "labeller": "outcomes"}
    sink.write(
        "feedback",
        [{"prediction_id": labelled["prediction_id"], "timestamp": labelled["timestamp"]} | label],
    )
    frame, info = load_current(load_params(), bundle, datetime.now(UTC) + timedelta(seconds=1))
    assert (info.rows, info.labelled) == (4, 1)
    assert frame[bundle.target].notna().sum() == 1


def _logged_as_served(rows: pd.DataFrame, policy: LogPolicy) -> list[dict]:
    """`rows` scored and recorded as the service records them: each request row through the
    log policy (`decided_records(..., redact=policy.apply)` where the log has the hook)."""
    bundle = load_bundle(Paths.model)
    outputs = bundle.outputs(rows)
    labels = [bundle.label(decision) for decision in bundle.decide(outputs)]
    columns = output_rows(bundle.task.output_columns(outputs), len(rows))
    features = [policy.apply(record) for record in simulate.records_of(rows, bundle)]
    return decided_records(features, labels, columns, "m:1", [False] * len(rows))


def test_a_pseudonymised_column_is_compared_as_the_log_keeps_it(
    scored_workspace: Path, log_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test split served under two keys (rotated half way) against the reference it is:
    the pseudonymised column is the same category on both sides, so nothing drifts; labels from
    one outcome feed are judged."""
    key = scored_workspace / "log-key"
    shutil.copy(log_key, key)
    monkeypatch.setenv(KEY_ENV_VAR, str(key))
    bundle = load_bundle(Paths.model)
    [secret, *_] = [c.name for c in bundle.schema.columns if c.log == "pseudonymise"]
    rows = bundle.schema.read_csv(Paths.test_data)
    sink = DirectorySink(scored_workspace / "logs" / "predictions")
    half = len(rows) // 2
    first = _logged_as_served(rows.iloc[:half], LogPolicy.load(bundle.schema))
    rotate_key(key)
    second = _logged_as_served(rows.iloc[half:], LogPolicy.load(bundle.schema))
    sink.write("predictions", first + second)
    truth = rows[bundle.target].astype(str).tolist()
    sink.write(
        "feedback",
        [
            {"prediction_id": record["prediction_id"], "timestamp": record["timestamp"]}
            | {"label": label, "labeller": "outcomes"}
            for record, label in zip(first + second, truth, strict=True)
        ],
    )
    logged = {record["features"][secret] for record in first + second}
    assert len({value.split(":")[0] for value in logged}) == 2  # two keys in the window

    result = report.run(load_params())
    assert result["drift_scores"][secret] < 1e-9, result["drift_scores"]
    assert secret not in result["drifted_columns"]
    checks = {check["name"]: check for check in result["checks"]}
    assert checks["labels"]["passed"], checks["labels"]
    assert result["labels"]["labellers"][0]["labeller"] == "outcomes"
    assert result["performance"]["current"] is not None
    summary = (Paths.monitoring / "summary.md").read_text()
    assert "| outcomes | " in summary


def test_labels_past_the_limits_are_refused_naming_the_labeller(params, schema) -> None:
    """One labeller's share, and a label mix far from history, each refuse the labels; the
    labeller whose own labels depart is named, the honest one is not."""
    task = params.task(schema.target_values)
    bundle: Any = SimpleNamespace(task=task, target=schema.target, schema=schema)
    history = pd.Series(
        list(schema.target_values) * 50 if schema.target_values else [float(i) for i in range(100)]
    )
    honest = history.sample(frac=1, random_state=1).reset_index(drop=True)
    wrong = pd.Series([honest.iloc[0] if schema.target_values else 1e6] * len(honest))
    frame = pd.DataFrame(
        {
            schema.target: pd.concat([honest, wrong], ignore_index=True).astype(str),
            "prediction": pd.concat([honest, honest], ignore_index=True).astype(str),
            "labeller": ["outcomes"] * len(honest) + ["mallory"] * len(wrong),
        }
    )
    limits = params.monitor.labels
    seen = provenance(frame, history, bundle, limits)
    assert [each.labeller for each in seen.labellers] == ["mallory", "outcomes"]
    [refusal] = seen.refusals  # a single feed may supply every label by default
    assert "'mallory'" in refusal and "'outcomes'" not in refusal, refusal
    assert "monitor.labels.max_label_shift" in refusal

    honest_only = frame[frame["labeller"] == "outcomes"]
    assert provenance(honest_only, history, bundle, limits).judged
    strict = limits.model_copy(update={"max_labeller_share": 0.5})
    assert not provenance(honest_only, history, bundle, strict).judged  # 100% from one
    checks = report.gate(
        params,
        bundle,
        report.GateInputs(
            window=WindowInfo("log", 200, 200, 200, 0, 0, "all rows"),
            scores={},
            drifted={},
            missing={},
            labels=seen,
        ),
    )
    labels = {check.name: check for check in checks}["labels"]
    assert not labels.passed and "performance not judged" in labels.detail
    assert "performance" not in {check.name for check in checks}
