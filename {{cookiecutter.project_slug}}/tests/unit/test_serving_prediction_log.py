"""The prediction log sinks (directory and SQL) and the background writer in front of them."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.serving.prediction_log import (
    ENV_VAR,
    FILE_ENV_VAR,
    SPOOL_MAX_BYTES_ENV_VAR,
    DirectorySink,
    LogUnavailable,
    PredictionLog,
    PredictionSink,
    Spool,
    SpoolFull,
    SqlSink,
    feedback_record,
    join_feedback,
    open_sink,
    open_spool,
    prediction_record,
)
from {{ cookiecutter.package_name }}.serving.prediction_log.records import Table
from tests.conftest import spool_of_a_live_process

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """A PREDICTION_LOG set in the shell (or by another test) must not redirect these sinks."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv(FILE_ENV_VAR, raising=False)
    monkeypatch.delenv(SPOOL_MAX_BYTES_ENV_VAR, raising=False)


def prediction(**features: Any) -> dict[str, Any]:
    return prediction_record(features, 1, 0.75, "model:v1")


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
    assert database.url == f"sqlite:///{tmp_path / 'logs' / 'predictions.db'}"


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
    log.log_feedback(feedback_record(first["prediction_id"], 0))
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


def test_each_tasks_outputs_read_back_as_columns(sink: PredictionSink) -> None:
    """Several classes: each one's probability in `outputs`, no single probability; a number:
    the decision is the label, with neither."""
    shares = {"probability[a]": 0.7, "probability[b]": 0.2, "probability[c]": 0.1}
    classes = prediction_record({"age": 30}, "a", None, "model:v1", outputs=shares)
    number = prediction_record({"age": 40}, 123.5, None, "model:v1")
    log = PredictionLog(sink)
    log.log_predictions([classes, number])
    log.close()
    predictions = sink.read_predictions().set_index("prediction_id")
    first, second = classes["prediction_id"], number["prediction_id"]
    assert predictions.loc[first, list(shares)].tolist() == list(shares.values())
    assert predictions[list(shares)].loc[second].isna().all()
    assert predictions["probability"].isna().all()
    assert predictions["label"].tolist() == ["a", "123.5"]
    assert predictions["age"].tolist() == [30, 40]


def test_a_predictions_table_from_before_outputs_gets_the_column(tmp_path: Path) -> None:
    """A database an older service wrote: its rows stay, and new ones carry their outputs."""
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path}/log.db"
    older = sa.create_engine(url)
    with older.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE TABLE predictions (prediction_id VARCHAR(36) PRIMARY KEY,"
                " timestamp VARCHAR(40) NOT NULL, model_version VARCHAR(200) NOT NULL,"
                " features TEXT NOT NULL, label VARCHAR(200) NOT NULL,"
                " probability FLOAT NOT NULL, simulated BOOLEAN NOT NULL)"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO predictions VALUES ('old', '2026-01-01T00:00:00+00:00', 'model:v0',"
                " '{\"age\": 20}', '1', 0.9, 0)"
            )
        )
    older.dispose()
    sink = open_sink(url)
    outputs = {"probability[a]": 0.6, "probability[b]": 0.4}
    sink.write("predictions", [prediction_record({"age": 30}, 1, 0.8, "model:v1", outputs=outputs)])
    predictions = sink.read_predictions().sort_values("timestamp")
    assert predictions["prediction_id"].iloc[0] == "old"
    assert predictions["probability"].tolist() == [0.9, 0.8]
    assert predictions["probability[a]"].isna().tolist() == [True, False]
    assert predictions["caller"].tolist() == ["", ""]  # older rows, and a record without one
    assert predictions["explained"].tolist() == [False, False]


def test_older_json_lines_records_read_with_empty_caller_and_labeller(tmp_path: Path) -> None:
    (tmp_path / "predictions-2026-01-01-1.jsonl").write_text(
        '{"prediction_id": "old", "timestamp": "2026-01-01T00:00:00+00:00", "model_version":'
        ' "m:v0", "features": {"age": 20}, "label": "1", "probability": 0.9, "simulated": false}\n'
    )
    (tmp_path / "feedback-2026-01-01-1.jsonl").write_text(
        '{"prediction_id": "old", "timestamp": "2026-01-02T00:00:00+00:00", "label": "0"}\n'
    )
    sink = DirectorySink(tmp_path)
    predictions = sink.read_predictions()
    assert predictions[["caller", "explained", "batch"]].to_dict("records") == [
        {"caller": "", "explained": False, "batch": False}
    ]
    assert sink.read_feedback()["labeller"].tolist() == [""]


def test_empty_logs_read_as_empty_tables(sink: PredictionSink) -> None:
    assert sink.read_predictions().empty
    assert list(sink.read_feedback().columns) == ["prediction_id", "timestamp", "label", "labeller"]


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


def crashed_process(spool: Spool) -> None:
    """As if the spool's process died: its lock is gone, its file stays."""
    assert spool._fd is not None
    os.close(spool._fd)
    spool._fd = None


class Outage(DirectorySink):
    """A directory sink that fails while `down` is set, like a database that went away."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.down = True
        self.attempts = 0

    def write(self, table: Any, records: list[dict[str, Any]]) -> None:
        self.attempts += 1
        if self.down:
            raise OSError("connection refused")
        super().write(table, records)


def test_a_failing_sink_spools_and_the_spool_is_replayed_once_it_answers(tmp_path: Path) -> None:
    sink = Outage(tmp_path / "log")
    log = PredictionLog(sink, Spool(tmp_path / "spool"), retry_interval=0.05)
    during = [prediction(age=i) for i in range(3)]
    log.log_predictions(during[:2]).result(timeout=5)  # durable: spooled, not lost
    log.log_feedback(feedback_record(during[0]["prediction_id"], 0)).result(timeout=5)
    log.log_predictions(during[2:]).result(timeout=5)
    assert (log.spooled, sink.read_predictions().empty) == (4, True)
    sink.down = False
    time.sleep(0.3)  # a few retry intervals: the writer replays without new traffic
    after = prediction(age=99)
    log.log_predictions([after]).result(timeout=5)
    log.close()
    ids = sink.read_predictions()["prediction_id"].tolist()
    assert sorted(ids) == sorted(record["prediction_id"] for record in [*during, after])
    assert sink.read_feedback()["prediction_id"].tolist() == [during[0]["prediction_id"]]
    assert (log.replayed, log.refused) == (4, 0)
    assert not list((tmp_path / "spool").glob("spool-*.jsonl")), "a replayed spool file stayed"


def test_a_failed_sink_is_tried_again_once_per_interval_not_on_every_batch(
    tmp_path: Path,
) -> None:
    sink = Outage(tmp_path / "log")
    log = PredictionLog(sink, Spool(tmp_path / "spool"), retry_interval=60)
    for age in range(3):
        log.log_predictions([prediction(age=age)]).result(timeout=5)
    assert sink.attempts == 1  # the batches after the first failure went to the spool at once
    sink.down = False
    log.close()  # the last replay, at stop
    assert sorted(sink.read_predictions()["age"]) == [0, 1, 2]


def test_a_request_that_stops_waiting_cancels_nothing(tmp_path: Path) -> None:
    """A waiter giving up (a timed-out request) must neither cancel the receipt it shares with
    the other requests of its batch nor stop the writer."""
    import threading

    release = threading.Event()

    class Slow(DirectorySink):
        def write(self, table: Any, records: list[dict[str, Any]]) -> None:
            release.wait(10)
            super().write(table, records)

    sink = Slow(tmp_path)
    log = PredictionLog(sink)
    shared = log.log_predictions([prediction(age=1), prediction(age=2)])
    assert not shared.cancel()
    release.set()
    shared.result(timeout=5)
    log.log_predictions([prediction(age=3)]).result(timeout=5)
    log.close()
    assert sorted(sink.read_predictions()["age"]) == [1, 2, 3]


def test_the_writer_survives_its_own_failure_and_refuses_that_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = DirectorySink(tmp_path)
    log = PredictionLog(sink)
    store = log._store
    monkeypatch.setattr(log, "_store", lambda *args: 1 / 0)
    with pytest.raises(LogUnavailable, match="the prediction log failed: retry"):
        log.log_predictions([prediction(age=1)]).result(timeout=5)
    monkeypatch.setattr(log, "_store", store)
    log.log_predictions([prediction(age=2)]).result(timeout=5)
    log.close()
    assert sink.read_predictions()["age"].tolist() == [2]


def test_a_crashed_process_spool_is_replayed_once_the_sink_is_back_without_a_restart(
    tmp_path: Path,
) -> None:
    """Started while the sink is away, the service cannot replay what a crashed run spooled;
    it tries again every interval, with or without traffic."""
    crashed = Spool(tmp_path / "spool")
    lost = [prediction(age=i) for i in range(3)]
    crashed.append("predictions", lost)
    crashed_process(crashed)
    sink = Outage(tmp_path / "log")
    log = PredictionLog(sink, Spool(tmp_path / "spool"), retry_interval=0.05)
    deadline = time.monotonic() + 5
    while sink.attempts == 0:  # the replay at start, failing
        assert time.monotonic() < deadline
        time.sleep(0.01)
    sink.down = False
    while len(sink.read_predictions()) < 3:
        assert time.monotonic() < deadline, "the orphaned spool was never replayed"
        time.sleep(0.05)
    log.close()


# Runs in a process of its own: RLIMIT_FSIZE caps the size of any file it writes, as a full disk
# would; SIGXFSZ ignored, a write past the cap fails (EFBIG) instead of killing the process.
REFUSED_APPEND = r"""
import json, resource, signal, sys
from pathlib import Path
from {{ cookiecutter.package_name }}.serving.prediction_log import (
    DirectorySink, LogUnavailable, PredictionLog, Spool, prediction_record,
)

class Away(DirectorySink):
    down = True
    def write(self, table, records):
        if self.down:
            raise OSError("connection refused")
        super().write(table, records)

root, where = Path(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
sink = Away(root / "log")
sink.down = where == "spool"
log = PredictionLog(sink, Spool(root / "spool") if where == "spool" else None, retry_interval=3600)
def record(tag):
    return prediction_record({"tag": tag}, 1, 0.5, "model:v1", prediction_id=tag)
log.log_predictions([record("before")]).result(timeout=5)
[file] = (root / where).glob("*.jsonl")
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (file.stat().st_size + 100, hard))  # part of a record
try:
    log.log_predictions([record("refused")]).result(timeout=5)
    answer = 200
except LogUnavailable:
    answer = 503
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
log.log_predictions([record("after")]).result(timeout=5)
on_disk = file.read_text()
sink.down = False
log.close()  # replays the spool into the log
logged = sorted(sink.read_predictions()["prediction_id"])
print(json.dumps({"answer": answer, "on_disk": on_disk, "logged": logged}))
"""


@pytest.mark.parametrize("where", ["spool", "log"])
def test_an_append_refused_by_a_full_disk_never_reaches_the_spool_or_the_log(
    where: str, tmp_path: Path
) -> None:
    """A real refusal, not a mocked one: the record refused (its request answered 503) must
    not reach the file with the next good append, nor the log after a replay."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", REFUSED_APPEND, str(tmp_path), where],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    outcome = json.loads(done.stdout.splitlines()[-1])
    assert outcome["answer"] == 503
    assert "refused" not in outcome["on_disk"]
    assert len(outcome["on_disk"].splitlines()) == 2  # before, after: whole lines only
    assert outcome["logged"] == ["after", "before"]


def test_what_a_crashed_process_spooled_is_replayed_at_the_next_start(tmp_path: Path) -> None:
    crashed = Spool(tmp_path / "spool")
    lost = [prediction(age=i) for i in range(5)]
    crashed.append("predictions", lost)
    crashed_process(crashed)
    sink = DirectorySink(tmp_path / "log")
    log = PredictionLog(sink, Spool(tmp_path / "spool"))
    log.flush()
    log.close()
    assert sorted(sink.read_predictions()["prediction_id"]) == sorted(
        record["prediction_id"] for record in lost
    )
    assert not list((tmp_path / "spool").glob("spool-*.jsonl"))


def test_a_live_process_spool_is_left_to_its_owner(tmp_path: Path) -> None:
    """A live process's file is passed over, whatever its owner read meanwhile (a POSIX lock
    goes with any descriptor its process closes); once the process is gone, it is taken over."""
    sink = DirectorySink(tmp_path / "log")
    other = Spool(tmp_path / "spool")
    with spool_of_a_live_process(tmp_path / "spool", "predictions", [prediction(age=1)]) as own:
        assert other.replay(sink) == 0
        assert sink.read_predictions().empty and own.is_file()
        with open(own, "r+b") as handle, pytest.raises(OSError):
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # still its owner's
    assert other.replay(sink) == 1
    assert list(sink.read_predictions()["age"]) == [1] and not own.exists()


def test_a_full_spool_refuses_and_writes_nothing(tmp_path: Path) -> None:
    """Past max_bytes (every process's files counted) an append is refused, the files as they
    were; the writer answers such a request LogUnavailable (the service's 503)."""
    spool = Spool(tmp_path / "spool", max_bytes=2_000)
    record = prediction(age=1)
    appended = 0
    with pytest.raises(SpoolFull, match="PREDICTION_SPOOL_MAX_BYTES"):
        while True:
            spool.append("predictions", [record])
            appended += 1
    held = spool.size()
    assert 0 < held <= 2_000 and appended == spool.pending > 0
    with pytest.raises(SpoolFull):
        spool.append("predictions", [record])
    assert spool.size() == held

    class Away(DirectorySink):
        def write(self, table: Table, records: list[dict[str, Any]]) -> None:
            raise ConnectionError("the database is away")

    log = PredictionLog(Away(tmp_path / "log"), spool)
    try:
        with pytest.raises(LogUnavailable, match="its local spool is full"):
            log.log_predictions([record]).result(timeout=10)
    finally:
        log.close()


def test_the_spool_limit_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert open_spool(str(tmp_path / "spool")).max_bytes is None
    monkeypatch.setenv(SPOOL_MAX_BYTES_ENV_VAR, "966367641")
    assert open_spool(str(tmp_path / "spool")).max_bytes == 966_367_641
    monkeypatch.setenv(SPOOL_MAX_BYTES_ENV_VAR, "1Gi")
    with pytest.raises(ConfigError, match=SPOOL_MAX_BYTES_ENV_VAR):
        open_spool(str(tmp_path / "spool"))


@pytest.mark.parametrize("kind", ["directory", "sqlite"])
def test_a_replay_that_repeats_itself_stores_each_record_once(kind: str, tmp_path: Path) -> None:
    sink = (
        open_sink(str(tmp_path / "log"))
        if kind == "directory"
        else open_sink(f"sqlite:///{tmp_path}/log.db")
    )
    first, second = prediction(age=1), prediction(age=2)
    told = feedback_record(first["prediction_id"], 1)
    sink.write("predictions", [first])  # stored, but the writer heard an error: spooled too
    sink.write("feedback", [told])
    for _ in range(2):  # a replay cut short, then the whole replay again
        sink.write_missing("predictions", [first, second])
        sink.write_missing("feedback", [told])
    assert sorted(sink.read_predictions()["age"]) == [1, 2]
    assert len(sink.read_feedback()) == 1


def test_without_a_spool_a_failing_write_is_refused_and_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    sink = Outage(tmp_path)
    log = PredictionLog(sink)
    with pytest.raises(LogUnavailable, match="store is unavailable") as refused:
        log.log_predictions([prediction(age=1)]).result(timeout=5)
    assert "connection refused" in refused.value.detail
    sink.down = False
    log.log_predictions([prediction(age=2)]).result(timeout=5)
    log.close()
    assert sink.read_predictions()["age"].tolist() == [2]
    assert log.refused == 1


def test_when_neither_sink_nor_spool_takes_a_record_the_client_is_told_no_internals(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The refusal's text reaches the client: it says what failed and what to do, never the
    error's text or a path; those go to the server's log and the exception's `detail`."""
    (tmp_path / "spool").write_text("a file where the spool directory should be")
    log = PredictionLog(Outage(tmp_path / "log"), Spool(tmp_path / "spool"))
    with pytest.raises(LogUnavailable) as refused:
        log.log_predictions([prediction(age=1)]).result(timeout=5)
    log.close()
    told = str(refused.value)
    assert "cannot record" in told and "spool" in told and "retry" in told
    assert "connection refused" not in told and str(tmp_path) not in told
    assert "connection refused" in refused.value.detail
    assert "connection refused" in caplog.text and str(tmp_path) in caplog.text


def test_a_full_queue_refuses_at_once_instead_of_blocking(tmp_path: Path) -> None:
    import threading

    release = threading.Event()

    class Stuck(DirectorySink):
        def write(self, table: Any, records: list[dict[str, Any]]) -> None:
            release.wait(10)

    log = PredictionLog(Stuck(tmp_path), max_pending=1, put_timeout=0.01)
    receipts = [log.log_predictions([prediction(age=1)]) for _ in range(10)]
    refused = [receipt for receipt in receipts if receipt.done()]
    assert len(refused) >= 8 and log.refused == len(refused)
    for receipt in refused:
        with pytest.raises(LogUnavailable, match="not keeping up"):
            receipt.result()
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


def test_the_location_may_come_from_a_file_and_the_variable_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kubernetes mounts a Secret as a file: PREDICTION_LOG_FILE names it."""
    secret = tmp_path / "secret" / "prediction-log"
    secret.parent.mkdir()
    secret.write_text(f"sqlite:///{tmp_path}/from-file.db\n")
    monkeypatch.setenv(FILE_ENV_VAR, str(secret))
    chosen = open_sink("logs/predictions", base_dir=tmp_path)
    assert isinstance(chosen, SqlSink) and chosen.url == f"sqlite:///{tmp_path}/from-file.db"
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from-env"))
    assert isinstance(open_sink("logs/predictions", base_dir=tmp_path), DirectorySink)
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setenv(FILE_ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=FILE_ENV_VAR) as refused:
        open_sink("logs/predictions", base_dir=tmp_path)
    assert str(tmp_path) not in str(refused.value)


def test_a_log_location_may_name_an_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "from-env"))
    sink = open_sink("${LOG_DIR}/predictions", base_dir=tmp_path)
    assert isinstance(sink, DirectorySink)
    assert sink.directory == tmp_path / "from-env" / "predictions"
