"""The prediction log sinks (directory and SQL) and the background writer in front of them."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.serving.prediction_log import (
    ENV_VAR,
    DirectorySink,
    PredictionLog,
    PredictionSink,
    SqlSink,
    join_feedback,
    open_sink,
    utc_now,
)

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """A PREDICTION_LOG set in the shell (or by another test) must not redirect these sinks."""
    monkeypatch.delenv(ENV_VAR, raising=False)


def prediction(**features: Any) -> dict[str, Any]:
    return {
        "prediction_id": str(uuid.uuid4()),
        "timestamp": utc_now(),
        "model_version": "model:v1",
        "features": features,
        "label": "1",
        "probability": 0.75,
    }


@pytest.fixture(params=["directory", "sqlite"])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> PredictionSink:
    if request.param == "directory":
        return open_sink(str(tmp_path / "logs"))
    return open_sink(f"sqlite:///{tmp_path}/logs/predictions.db")


def test_open_sink_picks_the_kind_from_the_target(tmp_path: Path) -> None:
    assert isinstance(open_sink(str(tmp_path / "dir")), DirectorySink)
    assert isinstance(open_sink(f"sqlite:///{tmp_path}/x.db"), SqlSink)


def test_relative_targets_are_anchored_at_the_project_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = open_sink("logs/predictions", base_dir=tmp_path)
    assert isinstance(directory, DirectorySink)
    assert directory.directory == tmp_path / "logs" / "predictions"
    database = open_sink("sqlite:///logs/predictions.db", base_dir=tmp_path)
    assert isinstance(database, SqlSink)
    assert (tmp_path / "logs" / "predictions.db").exists()


def test_environment_variable_overrides_the_configured_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from-env"))
    chosen = open_sink("logs/predictions", base_dir=tmp_path / "project")
    assert isinstance(chosen, DirectorySink)
    assert chosen.directory == tmp_path / "from-env"


def test_records_written_through_the_log_read_back_as_tables(sink: PredictionSink) -> None:
    log = PredictionLog(sink)
    first, second = (
        prediction(age=30, sex="male", savings=None),
        prediction(age=51, sex="female", savings="rich"),
    )
    log.log_predictions([first, second])
    log.log_feedback(
        {"prediction_id": first["prediction_id"], "timestamp": utc_now(), "label": "0"}
    )
    log.close()  # writes everything queued

    predictions = sink.read_predictions()
    assert predictions["prediction_id"].tolist() == [
        first["prediction_id"],
        second["prediction_id"],
    ]
    assert predictions["age"].tolist() == [30, 51]
    assert predictions["sex"].tolist() == ["male", "female"]
    assert pd.isna(predictions["savings"].iloc[0])
    assert predictions["label"].tolist() == ["1", "1"]
    assert predictions["probability"].tolist() == [0.75, 0.75]
    assert str(predictions["timestamp"].dt.tz) == "UTC"
    feedback = sink.read_feedback()
    assert feedback[["prediction_id", "label"]].to_dict("records") == [
        {"prediction_id": first["prediction_id"], "label": "0"}
    ]


def test_empty_logs_read_as_empty_tables(sink: PredictionSink) -> None:
    assert sink.read_predictions().empty
    assert list(sink.read_feedback().columns) == ["prediction_id", "timestamp", "label"]


def test_flush_waits_until_queued_records_are_written(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path)
    log = PredictionLog(sink)
    log.log_predictions([prediction(age=i) for i in range(250)])
    log.flush()
    assert len(sink.read_predictions()) == 250
    log.close()
    log.close()  # a second close is harmless


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path)
    sink.write("predictions", [prediction(age=1)])
    with open(next(tmp_path.glob("predictions-*.jsonl")), "a") as handle:
        handle.write('{"prediction_id": "cut sh')
    assert len(sink.read_predictions()) == 1


def test_a_failed_write_is_retried(tmp_path: Path) -> None:
    class Flaky(DirectorySink):
        calls = 0

        def write(self, table: Any, records: list[dict[str, Any]]) -> None:
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise OSError("disk full")
            super().write(table, records)

    sink = Flaky(tmp_path)
    log = PredictionLog(sink)
    assert log.log_predictions([prediction(age=1)])
    log.close()
    assert sink.read_predictions()["age"].tolist() == [1]
    assert (Flaky.calls, log.failed) == (2, 0)


def test_a_failing_sink_does_not_stop_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from {{ cookiecutter.package_name }}.serving import prediction_log

    monkeypatch.setattr(prediction_log, "WRITE_RETRIES", (0.0,))

    class Broken(DirectorySink):
        def write(self, table: Any, records: list[dict[str, Any]]) -> None:
            if records[0]["features"]["age"] == 1:
                raise OSError("disk full")
            super().write(table, records)

    sink = Broken(tmp_path)
    log = PredictionLog(sink)
    log.log_predictions([prediction(age=1)])
    log.flush()
    log.log_predictions([prediction(age=2)])
    log.close()
    assert sink.read_predictions()["age"].tolist() == [2]
    assert log.failed == 1


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path: Path) -> None:
    import threading

    release = threading.Event()

    class Stuck(DirectorySink):
        def write(self, table: Any, records: list[dict[str, Any]]) -> None:
            release.wait(10)

    log = PredictionLog(Stuck(tmp_path), max_pending=1, put_timeout=0.01)
    queued = [log.log_predictions([prediction(age=1)]) for _ in range(5)]
    assert log.dropped >= 3
    assert queued.count(False) == log.dropped  # each refusal is told to the caller
    release.set()
    log.close()


def test_join_gives_the_newest_label_and_counts_unmatched_feedback() -> None:
    predictions = pd.DataFrame({"prediction_id": ["a", "b"], "label": ["1", "0"]})
    feedback = pd.DataFrame(
        {
            "prediction_id": ["a", "a", "zzz"],
            "timestamp": pd.to_datetime(["2026-01-02", "2026-01-01", "2026-01-01"], utc=True),
            "label": ["0", "1", "1"],
        }
    )
    joined, unmatched = join_feedback(predictions, feedback)
    assert joined["true_label"].tolist()[0] == "0"  # the newest word on "a"
    assert pd.isna(joined["true_label"].tolist()[1])  # no feedback for "b"
    assert unmatched == 1  # "zzz" was never predicted


def test_a_log_location_may_name_an_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "from-env"))
    sink = open_sink("${LOG_DIR}/predictions", base_dir=tmp_path)
    assert isinstance(sink, DirectorySink)
    assert sink.directory == tmp_path / "from-env" / "predictions"
