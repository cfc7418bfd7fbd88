"""Feedback that cannot be poisoned silently: the log takes a label only for a prediction it
recorded (in the sink, or waiting in a spool file here), once, with its labeller; and it checks
without reading the whole log for each label."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from {{ cookiecutter.package_name }}.serving.prediction_log import (
    ENV_VAR,
    AlreadyLabelled,
    DirectorySink,
    FeedbackRefused,
    LogUnavailable,
    PredictionLog,
    PredictionSink,
    Spool,
    SqlSink,
    UnknownPrediction,
    feedback_record,
    files,
    open_sink,
    prediction_record,
)
from tests.unit.test_prediction_log_retention import DATABASE, drop_log_tables

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture(params=["directory", "sqlite", "postgresql"])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PredictionSink]:
    """Each kind of sink; PostgreSQL with LOAD_TEST_SQL_URL (its log tables are dropped)."""
    if request.param == "directory":
        yield open_sink(str(tmp_path / "logs"))
    elif request.param == "sqlite":
        yield open_sink(f"sqlite:///{tmp_path}/logs/predictions.db")
    else:
        if not DATABASE:
            pytest.skip("set LOAD_TEST_SQL_URL to a database of your own for the PostgreSQL case")
        drop_log_tables(DATABASE)
        yield open_sink(DATABASE)
        drop_log_tables(DATABASE)


def prediction(**features: Any) -> dict[str, Any]:
    return prediction_record(features, 1, 0.75, "model:v1", caller="alice")


def test_a_label_for_a_recorded_prediction_is_kept_with_its_labeller_and_caller(
    sink: PredictionSink,
) -> None:
    log = PredictionLog(sink)
    record = prediction(age=30)
    log.log_predictions([record]).result(timeout=5)
    log.log_feedback(feedback_record(record["prediction_id"], 0, "bob")).result(timeout=5)
    log.close()
    [row] = sink.read_feedback().to_dict("records")
    assert (row["prediction_id"], row["label"], row["labeller"]) == (
        record["prediction_id"],
        "0",
        "bob",
    )
    [logged] = sink.read_predictions().to_dict("records")
    assert (logged["caller"], logged["explained"]) == ("alice", False)


def test_a_label_for_an_id_never_recorded_is_refused(sink: PredictionSink) -> None:
    log = PredictionLog(sink)
    log.log_predictions([prediction(age=30)]).result(timeout=5)
    with pytest.raises(UnknownPrediction) as refused:
        log.log_feedback(feedback_record("never-issued", 1, "mallory")).result(timeout=5)
    log.close()
    assert isinstance(refused.value, FeedbackRefused)
    assert "prediction_id" in str(refused.value)
    assert sink.read_feedback().empty


def test_a_second_label_is_refused_in_a_later_batch_and_in_the_same_one(
    sink: PredictionSink,
) -> None:
    first, second = prediction(age=1), prediction(age=2)
    log = PredictionLog(sink)
    log.log_predictions([first]).result(timeout=5)
    log.log_feedback(feedback_record(first["prediction_id"], 1, "alice")).result(timeout=5)
    with pytest.raises(AlreadyLabelled):
        log.log_feedback(feedback_record(first["prediction_id"], 0, "mallory")).result(timeout=5)

    release = threading.Event()
    write = sink.write

    def held(table: Any, records: list[dict[str, Any]]) -> None:
        release.wait(5)  # the writer busy: the two labels below queue up for one group commit
        write(table, records)

    sink.write = held  # type: ignore[method-assign]
    log.log_predictions([second])
    both = [
        log.log_feedback(feedback_record(second["prediction_id"], label, "x")) for label in (1, 0)
    ]
    release.set()
    both[0].result(timeout=5)
    with pytest.raises(AlreadyLabelled):
        both[1].result(timeout=5)
    log.close()
    labels = sink.read_feedback().set_index("prediction_id")["label"]
    assert labels.to_dict() == {first["prediction_id"]: "1", second["prediction_id"]: "1"}


class Away(DirectorySink):
    """A sink that is down: every write and every question fails."""

    def write(self, table: Any, records: list[dict[str, Any]]) -> None:
        raise OSError("connection refused")

    def recorded(self, prediction_ids: set[str]) -> Any:
        raise OSError("connection refused")


def test_while_the_sink_is_away_a_prediction_in_any_spool_file_here_is_known(
    tmp_path: Path,
) -> None:
    """Another worker's spool file (alive: it holds its lock) holds the prediction; this
    process's own spool then holds the label. An id no spool holds cannot be checked: refused
    as unavailable (retry), not taken unchecked nor called unknown."""
    spooled = prediction(age=1)
    other_worker = Spool(tmp_path / "spool")
    other_worker.append("predictions", [spooled])
    log = PredictionLog(Away(tmp_path / "log"), Spool(tmp_path / "spool"), retry_interval=60)
    log.log_feedback(feedback_record(spooled["prediction_id"], 1, "alice")).result(timeout=5)
    with pytest.raises(AlreadyLabelled):
        log.log_feedback(feedback_record(spooled["prediction_id"], 0, "bob")).result(timeout=5)
    with pytest.raises(LogUnavailable, match="cannot record this label now"):
        log.log_feedback(feedback_record("elsewhere", 1, "alice")).result(timeout=5)
    assert log.spooled == 1
    log.close()
    other_worker.close()


def test_the_directory_index_reads_other_workers_files_as_they_grow(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path)
    today = datetime.now(UTC).date().isoformat()
    other = tmp_path / f"predictions-{today}-999999.jsonl"  # another worker's file
    first, second = prediction(age=1), prediction(age=2)
    other.write_text(json.dumps(first) + "\n")
    ids = {first["prediction_id"], second["prediction_id"]}
    assert sink.recorded(ids) == ({first["prediction_id"]}, set())
    with open(other, "a") as handle:
        handle.write(json.dumps(second) + "\n" + '{"prediction_id": "half a li')
    labels = tmp_path / f"feedback-{today}-999999.jsonl"
    labels.write_text(json.dumps(feedback_record(second["prediction_id"], 1, "bob")) + "\n")
    assert sink.recorded(ids) == (ids, {second["prediction_id"]})


def test_an_old_feedback_table_with_second_labels_keeps_them_and_refuses_new_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A table from before the one-label rule that holds two labels for a prediction gets no
    unique index (a warning says so); the writer still refuses a new second label."""
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path}/log.db"
    record = prediction(age=1)
    older = sa.create_engine(url)
    with older.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE TABLE feedback (id INTEGER PRIMARY KEY, prediction_id VARCHAR(36) NOT"
                " NULL, timestamp VARCHAR(40) NOT NULL, label VARCHAR(200) NOT NULL)"
            )
        )
        for label in (0, 1):
            connection.execute(
                sa.text(
                    "INSERT INTO feedback (prediction_id, timestamp, label) VALUES (:i, :t, :l)"
                ),
                {
                    "i": record["prediction_id"],
                    "t": f"2026-01-0{label + 1}T00:00:00+00:00",
                    "l": label,
                },
            )
    older.dispose()
    sink = open_sink(url)
    log = PredictionLog(sink)
    log.log_predictions([record]).result(timeout=5)
    with pytest.raises(AlreadyLabelled):
        log.log_feedback(feedback_record(record["prediction_id"], 1, "x")).result(timeout=5)
    log.close()
    assert "gets no unique index" in caplog.text
    feedback = sink.read_feedback()
    assert len(feedback) == 2 and set(feedback["labeller"]) == {""}  # older rows: no labeller


def test_a_label_another_replica_stored_meanwhile_is_refused_not_failed(tmp_path: Path) -> None:
    """Two replicas check at once and both find no label: the unique index refuses the second
    insert, and the writer checks again: that label is refused, the others are stored."""
    sink = open_sink(f"sqlite:///{tmp_path}/log.db")
    assert isinstance(sink, SqlSink)
    first, second = prediction(age=1), prediction(age=2)
    sink.write("predictions", [first, second])
    sink.write("feedback", [feedback_record(first["prediction_id"], 1, "replica")])
    stale: list[tuple[set[str], set[str]]] = [
        ({first["prediction_id"], second["prediction_id"]}, set())
    ]
    recorded = sink.recorded

    def checked_before_the_other_replica_stored(
        prediction_ids: set[str],
    ) -> tuple[set[str], set[str]]:
        return stale.pop() if stale else recorded(prediction_ids)

    sink.recorded = checked_before_the_other_replica_stored  # type: ignore[method-assign]
    log = PredictionLog(sink)
    entries = [feedback_record(record["prediction_id"], 0, "x") for record in (first, second)]
    release = threading.Event()
    write = sink.write
    sink.write = lambda table, records: (release.wait(5), write(table, records))[1]  # type: ignore[method-assign]
    log.log_predictions([prediction(age=3)])  # holds the writer so both labels share a commit
    receipts = [log.log_feedback(entry) for entry in entries]
    release.set()
    with pytest.raises(AlreadyLabelled):
        receipts[0].result(timeout=5)
    receipts[1].result(timeout=5)
    log.close()
    labels = sink.read_feedback().set_index("prediction_id")["labeller"].to_dict()
    assert labels == {first["prediction_id"]: "replica", second["prediction_id"]: "x"}


@pytest.mark.parametrize("kind", ["directory", "sqlite"])
def test_checking_a_label_reads_only_what_is_new_and_costs_little(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """20,000 predictions over 40 daily files of 4 workers (directory), or in a table
    (SQLite); then 200 labels, one at a time: the directory's index reads each label's line
    once (not the log again), SQL asks two keyed queries per commit. The cost per label is
    printed (pytest -s shows it)."""
    sink = open_sink(
        str(tmp_path / "log") if kind == "directory" else f"sqlite:///{tmp_path}/log.db"
    )
    records = [prediction(age=i % 90) for i in range(20_000)]
    if isinstance(sink, DirectorySink):
        sink.directory.mkdir()
        for number, record in enumerate(records):
            day = f"2026-01-{number % 10 + 1:02d}"
            path = sink.directory / f"predictions-{day}-{number % 4}.jsonl"
            with open(path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
    else:
        sink.write("predictions", records)
    log = PredictionLog(sink)
    log.log_feedback(feedback_record(records[0]["prediction_id"], 1, "x")).result(timeout=30)
    parsed: list[int] = []  # lines parsed by the index
    parse = files.parse_lines

    def counted(data: bytes, origin: Path) -> Iterator[dict[str, Any]]:
        parsed.append(data.count(b"\n"))
        return parse(data, origin)

    monkeypatch.setattr(files, "parse_lines", counted)
    start = time.perf_counter()
    for record in records[1:201]:
        log.log_feedback(feedback_record(record["prediction_id"], 1, "x")).result(timeout=5)
    per_label = (time.perf_counter() - start) / 200
    log.close()
    read_back = sum(parsed)
    start = time.perf_counter()
    for record in records[201:401]:
        sink.recorded({record["prediction_id"]})
    per_check = (time.perf_counter() - start) / 200
    with capsys.disabled():
        print(
            f"\n{kind} sink, 20,000 predictions: {per_check * 1e6:.0f} µs to check a label,"
            f" {per_label * 1e3:.2f} ms to check and store it (fsync'd)"
        )
    assert read_back <= 200  # only the labels' own lines, read back once each
    assert len(sink.read_feedback()) == 201
