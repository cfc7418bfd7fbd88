"""The prediction log keeps personal data: only what is needed, readable by its owner only, and
for `monitor.retention_days` at most (the purge). The PostgreSQL case runs with
LOAD_TEST_SQL_URL (a database of your own: its log tables are dropped)."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from {{ cookiecutter.package_name }}.serving.prediction_log import (
    ENV_VAR,
    FILE_ENV_VAR,
    DirectorySink,
    PredictionLog,
    PredictionSink,
    Spool,
    Table,
    decided_records,
    feedback_record,
    open_sink,
    prediction_record,
    purge,
    retention_cutoff,
)
from {{ cookiecutter.package_name }}.serving.prediction_log.files import rewrite_atomically
from tests.conftest import spool_of_a_live_process

pytestmark = pytest.mark.unit

DATABASE = os.environ.get("LOAD_TEST_SQL_URL")
CUTOFF = datetime(2020, 6, 1, tzinfo=UTC)
# (id, timestamp): older than the cutoff, at it (kept), after it
STAMPS = {
    "old-a": "2020-01-01T08:00:00.000000+00:00",
    "old-b": "2020-05-31T23:59:59.999999+00:00",
    "at": "2020-06-01T00:00:00+00:00",
    "new-a": "2020-06-01T00:00:00.000001+00:00",
    "new-b": "2020-06-01T10:00:00.000000+00:00",
}
OLD = {"old-a", "old-b"}


@pytest.fixture(autouse=True)
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv(FILE_ENV_VAR, raising=False)


def dated(stamps: dict[str, str]) -> dict[Table, list[dict[str, Any]]]:
    predictions = [
        prediction_record({"age": 30}, 1, 0.5, "model:v1", prediction_id=key, timestamp=stamp)
        for key, stamp in stamps.items()
    ]
    labels = [
        {**feedback_record(key, 1, "alice"), "timestamp": stamp} for key, stamp in stamps.items()
    ]
    return {"predictions": predictions, "feedback": labels}


def store(sink: PredictionSink, records: dict[Table, list[dict[str, Any]]]) -> None:
    """The records as a sink holds them: a directory in the files of the days they were
    written (a replayed old record in a newer day's file too)."""
    if not isinstance(sink, DirectorySink):
        for table, rows in records.items():
            sink.write(table, rows)
        return
    sink.directory.mkdir(parents=True, exist_ok=True)
    for table, rows in records.items():
        for record in rows:
            day = record["timestamp"][:10]
            with open(sink.directory / f"{table}-{day}-1.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
        replayed = {**rows[0], "prediction_id": "old-replayed"}  # an old record, stored late
        with open(sink.directory / f"{table}-2020-06-01-2.jsonl", "a") as handle:
            handle.write(json.dumps(replayed) + "\n")


@pytest.fixture(params=["directory", "sqlite", "postgresql"])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PredictionSink]:
    if request.param == "directory":
        yield open_sink(str(tmp_path / "log"))
    elif request.param == "sqlite":
        yield open_sink(f"sqlite:///{tmp_path}/log.db")
    else:
        if not DATABASE:
            pytest.skip(
                "set LOAD_TEST_SQL_URL to a database of your own to run the PostgreSQL case"
            )
        drop_log_tables(DATABASE)
        yield open_sink(DATABASE)
        drop_log_tables(DATABASE)


def drop_log_tables(url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for table in ("predictions", "feedback"):
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


def test_a_purge_deletes_exactly_the_records_older_than_the_cutoff(
    sink: PredictionSink, tmp_path: Path
) -> None:
    store(sink, dated(STAMPS))
    replayed = isinstance(sink, DirectorySink)  # the late old record of `store`
    purged = purge(sink, Spool(tmp_path / "spool"), CUTOFF)
    old = len(OLD) + replayed
    assert purged.sink == {"predictions": old, "feedback": old}
    assert set(sink.read_predictions()["prediction_id"]) == set(STAMPS) - OLD
    assert set(sink.read_feedback()["prediction_id"]) == set(STAMPS) - OLD
    assert "log predictions: " in purged.describe()
    if isinstance(sink, DirectorySink):  # the old day's files went whole
        names = sorted(path.name for path in sink.directory.glob("*.jsonl"))
        assert not [name for name in names if "2020-01-01" in name or "2020-05-31" in name]
    again = purge(sink, Spool(tmp_path / "spool"), CUTOFF)
    assert again.sink == {"predictions": 0, "feedback": 0}


def test_a_purge_deletes_old_spooled_records_and_leaves_a_live_process_file(
    tmp_path: Path,
) -> None:
    records = dated(STAMPS)
    ended = Spool(tmp_path / "spool")
    for table, rows in records.items():
        ended.append(table, rows)
    assert ended._fd is not None
    os.close(ended._fd)  # its process ended: the file is an orphan
    ended._fd = None
    old_one = records["predictions"][:1]  # old, but its owner holds it
    with spool_of_a_live_process(tmp_path / "spool", "predictions", old_one) as live:
        purged = purge(DirectorySink(tmp_path / "log"), Spool(tmp_path / "spool"), CUTOFF)
        assert len(live.read_text().splitlines()) == 1

    assert purged.spool == {"predictions": len(OLD), "feedback": len(OLD)}
    assert purged.live_spool_files == 1
    assert "running services" in purged.describe()
    orphan = next(path for path in (tmp_path / "spool").glob("spool-*") if path != live)
    kept = [json.loads(line)["record"]["prediction_id"] for line in orphan.read_text().splitlines()]
    assert sorted(kept) == sorted([*(set(STAMPS) - OLD)] * 2)


def test_an_append_that_waited_for_a_purge_lands_in_the_rewritten_file(tmp_path: Path) -> None:
    """A purge rewrites a file under the lock appends take; an append that waited for it must
    go to the new file, not to the old one the rename left behind (and lost with it)."""
    sink = DirectorySink(tmp_path)
    sink.write("predictions", [prediction_record({}, 1, 0.5, "v", prediction_id="kept")])
    path = next(tmp_path.glob("predictions-*.jsonl"))
    purging = os.open(path, os.O_RDONLY)
    fcntl.flock(purging, fcntl.LOCK_EX)
    after = [prediction_record({}, 1, 0.5, "v", prediction_id="after")]
    writer = threading.Thread(target=sink.write, args=("predictions", after))
    writer.start()
    time.sleep(0.2)  # the append waits for the lock
    rewrite_atomically(path, path.read_bytes())
    os.close(purging)
    writer.join(timeout=5)
    assert sorted(sink.read_predictions()["prediction_id"]) == ["after", "kept"]


def test_the_retention_cutoff_is_whole_days_before_now() -> None:
    now = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    assert retention_cutoff(762, now) == datetime(2024, 1, 29, 12, 30, 15, tzinfo=UTC)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_the_log_and_spool_are_readable_by_their_owner_only(umask: int, tmp_path: Path) -> None:
    previous = os.umask(umask)
    try:
        directory = open_sink(str(tmp_path / "log"))
        database = open_sink(f"sqlite:///{tmp_path}/db/log.db")
        spool = Spool(tmp_path / "spool")
        for sink in (directory, database):
            log = PredictionLog(sink, spool)
            record = prediction_record({"age": 30}, 1, 0.5, "model:v1")
            log.log_predictions([record]).result(timeout=5)
            log.log_feedback(feedback_record(record["prediction_id"], 1)).result(timeout=5)
            log.close()
        spool.append("predictions", [prediction_record({"age": 1}, 1, 0.5, "model:v1")])
    finally:
        os.umask(previous)
    for folder in (tmp_path / "log", tmp_path / "db", tmp_path / "spool"):
        assert mode(folder) == 0o700, folder
        for path in folder.iterdir():
            assert mode(path) == 0o600, path
    spool.close()


def test_redact_applies_before_the_record_exists_and_records_name_their_caller() -> None:
    rows = [{"name": "Ada", "age": 36}, {"name": "Alan", "age": 41}]
    records = decided_records(
        rows,
        ["1", "0"],
        [{"probability": 0.9}, {"probability": 0.2}],
        "model:v1",
        [False, False],
        callers=["alice", "bob"],
        explained=True,
        redact=lambda row: {key: value for key, value in row.items() if key != "name"},
    )
    assert [record["features"] for record in records] == [{"age": 36}, {"age": 41}]
    assert [record["caller"] for record in records] == ["alice", "bob"]
    assert all(record["explained"] for record in records)
    assert "Ada" not in json.dumps(records)
