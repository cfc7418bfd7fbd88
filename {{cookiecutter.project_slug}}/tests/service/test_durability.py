"""Nothing answered is lost: a 2xx means the prediction is on record, through a database outage
and a crash. A real `bentoml serve` logs into the database at LOAD_TEST_SQL_URL (e.g.
PostgreSQL: a database of its own, its log tables absent or empty) through a loopback TCP proxy
that the test cuts, as if the server stopped: every connection closed, new ones refused. While
it is cut the service spools on local disk; the spool is replayed when the database answers
again, or at the next start after a SIGKILL. Without a database the service refuses with a 503
that says when to retry (the reason goes to its log). The database cases skip without
LOAD_TEST_SQL_URL."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from {{ cookiecutter.package_name }}.serving.prediction_log import (
    ENV_VAR,
    SPOOL_ENV_VAR,
    SPOOL_MAX_BYTES_ENV_VAR,
    open_sink,
)

from .conftest import (
    NO_ANSWER,
    Traffic,
    a_true_label,
    as_records,
    free_port,
    kill,
    send,
    server_process,
)

pytestmark = pytest.mark.service

DATABASE = os.environ.get("LOAD_TEST_SQL_URL")
needs_database = pytest.mark.skipif(
    not DATABASE,
    reason="set LOAD_TEST_SQL_URL to a database of your own (e.g. postgresql://user:pw@host/db)"
    " to run the outage and crash cases against it",
)
CLIENTS = 16
OUTAGE_SECONDS = 8.0  # longer than any retry: the records must go somewhere durable meanwhile


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 in front of a server. `cut()` closes every connection, and
    until `restore()` each new one is closed as soon as it is accepted: to a client, the server
    went away. (The listener stays open, so its port cannot be taken meanwhile.)"""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._cut = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self._connections.clear()

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self.cut()
        with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            with self._lock:
                if self._cut:
                    client.close()
                    continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._cut:  # cut while connecting
                    client.close()
                    upstream.close()
                    continue
                self._connections.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@dataclass
class Outage:
    """The log's database behind a cuttable proxy, and the service's environment to use it."""

    location: str  # the database URL through the proxy
    proxy: CuttableProxy
    env: dict[str, str]


@pytest.fixture
def outage(tmp_path: Path) -> Iterator[Outage]:
    """LOAD_TEST_SQL_URL's log tables emptied, reached through a cuttable proxy, with a spool."""
    assert DATABASE
    url = sa.engine.make_url(DATABASE)
    proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    drop_log_tables(url)
    location = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    env = {ENV_VAR: location, SPOOL_ENV_VAR: str(tmp_path / "spool")}
    try:
        yield Outage(location, proxy, env)
    finally:
        proxy.close()
        drop_log_tables(url)


def drop_log_tables(url: sa.URL) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for table in ("predictions", "feedback"):
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    engine.dispose()


@pytest.fixture
def records(service: Any, test_split: pd.DataFrame) -> list[dict[str, Any]]:
    return as_records(test_split[service.SCHEMA.feature_names])


@contextlib.contextmanager
def background_load(
    url: str, records: list[dict[str, Any]], **load: Any
) -> Iterator[list[Traffic]]:
    """Load `url` from a thread while the block acts; the traffic is in the list afterwards."""
    result: list[Traffic] = []
    thread = threading.Thread(
        target=lambda: result.append(send(url, records, clients=CLIENTS, **load)), daemon=True
    )
    thread.start()
    yield result
    thread.join(timeout=120)
    assert result, "the load never finished"


def logged_ids(location: str) -> set[str]:
    return set(open_sink(location).read_predictions()["prediction_id"])


def assert_logged_once(location: str, traffic: Traffic, *, only_answered: bool = True) -> None:
    logged = Counter(open_sink(location).read_predictions()["prediction_id"])
    answered = set(traffic.answered)
    assert len(answered) == len(traffic.answered), "a prediction id was answered twice"
    missing = answered - set(logged)
    assert not missing, f"{len(missing)} of {len(answered)} answered predictions are not logged"
    assert max(logged.values()) == 1, "a prediction was logged more than once"
    if only_answered:
        assert set(logged) == answered, "the log holds predictions nobody was answered"


@needs_database
def test_a_database_outage_loses_no_answered_prediction(
    outage: Outage, records: list[dict[str, Any]], tmp_path: Path
) -> None:
    with (
        server_process(tmp_path / "serve.log", outage.env) as server,
        background_load(server.url, records, seconds=3 * OUTAGE_SECONDS) as result,
    ):
        time.sleep(OUTAGE_SECONDS)
        outage.proxy.cut()
        time.sleep(OUTAGE_SECONDS)
        outage.proxy.restore()
    # stopped gracefully: whatever was answered is written by now
    [traffic] = result
    assert traffic.statuses.keys() == {200}, (
        f"{traffic.statuses}; {traffic.refusals[:1] and traffic.refusals[0].text}"
    )
    assert_logged_once(outage.location, traffic)
    server_log = (tmp_path / "serve.log").read_text()
    assert "spooling until it answers again" in server_log, "the outage never reached the log"
    assert "the prediction log's sink answers again" in server_log
    assert not list((tmp_path / "spool").glob("spool-*.jsonl")), "records stayed in the spool"


@needs_database
def test_what_was_spooled_before_a_crash_is_logged_at_the_next_start(
    outage: Outage, records: list[dict[str, Any]], tmp_path: Path
) -> None:
    with (
        server_process(tmp_path / "first.log", outage.env) as server,
        background_load(server.url, records, seconds=60, tolerate_no_answer=True) as result,
    ):
        time.sleep(OUTAGE_SECONDS / 2)
        outage.proxy.cut()
        time.sleep(OUTAGE_SECONDS / 2)
        kill(server.process)  # mid-load, the database still away: answers are in the spool only
    [traffic] = result
    assert traffic.statuses[200] > 0 and traffic.statuses[NO_ANSWER] > 0, traffic.statuses
    assert set(traffic.statuses) <= {200, NO_ANSWER}, traffic.statuses
    assert list((tmp_path / "spool").glob("spool-*.jsonl")), "nothing was spooled"

    outage.proxy.restore()
    with server_process(tmp_path / "second.log", outage.env):
        # replayed at start, not only when it stops: the answers reach the database meanwhile
        deadline = time.monotonic() + 60
        while not set(traffic.answered) <= logged_ids(outage.location):
            assert time.monotonic() < deadline, "the spool was not replayed at start"
            time.sleep(0.5)
    # Requests cut off by the kill may have been logged without an answer reaching the client.
    assert_logged_once(outage.location, traffic, only_answered=False)
    assert not list((tmp_path / "spool").glob("spool-*.jsonl")), "records stayed in the spool"


def test_a_prediction_that_cannot_be_recorded_is_refused_naming_why(
    service: Any, valid_record: dict[str, Any], tmp_path: Path, http: httpx.Client
) -> None:
    """Neither the log's database (nothing listens on its port) nor the spool (a file stands
    where its directory should be) can take the record: 503, what to do and when to retry,
    the reason in the server's log only."""
    (tmp_path / "spool").write_text("not a directory")
    env = {
        ENV_VAR: f"postgresql://nobody:secret@127.0.0.1:{free_port()}/none",
        SPOOL_ENV_VAR: str(tmp_path / "spool"),
    }
    with server_process(tmp_path / "serve.log", env) as server:
        predicted = http.post(f"{server.url}/predict", json={"records": [valid_record]})
        told = http.post(
            f"{server.url}/feedback",
            json={"prediction_id": str(uuid.uuid4()), "label": a_true_label(service.BUNDLE)},
        )
    server_log = (tmp_path / "serve.log").read_text()
    for response in (predicted, told):
        assert response.status_code == 503, response.text
        answer = response.json()
        assert "cannot record" in answer["error"], answer
        assert "secret" not in response.text
        assert int(response.headers["Retry-After"]) >= 1
        # what failed (the database's address, the spool's path) is in the server's log under
        # the answer's error id; test_error_bodies reads the answer for internals
        assert f"error {answer['error_id']}" in server_log, server_log[-3000:]


def test_a_full_spool_refuses_before_its_volume_fills_and_the_metrics_show_it(
    valid_record: dict[str, Any], tmp_path: Path, http: httpx.Client
) -> None:
    """The log's database away (nothing listens on its port) and PREDICTION_SPOOL_MAX_BYTES
    small, as the Deployment sets it below its volume's size: the first answers are spooled
    (the gauge counts them; each failed replay is counted), then the spool refuses with a 503
    before passing its limit."""
    limit = 4096
    env = {
        ENV_VAR: f"postgresql://nobody:secret@127.0.0.1:{free_port()}/none",
        SPOOL_ENV_VAR: str(tmp_path / "spool"),
        SPOOL_MAX_BYTES_ENV_VAR: str(limit),
    }
    with server_process(tmp_path / "serve.log", env) as server:
        statuses: list[int] = []
        while len(statuses) < 100 and 503 not in statuses:
            answer = http.post(f"{server.url}/predict", json={"records": [valid_record]})
            statuses.append(answer.status_code)
        time.sleep(3)  # the writer tries a replay every second
        metrics = http.get(f"{server.url}/metrics").text
    assert statuses[-1] == 503 and set(statuses[:-1]) == {200}, statuses
    assert int(answer.headers["Retry-After"]) >= 1
    held = sum(path.stat().st_size for path in (tmp_path / "spool").glob("spool-*.jsonl"))
    assert 0 < held <= limit
    assert "PREDICTION_SPOOL_MAX_BYTES" in (tmp_path / "serve.log").read_text()
    gauge = re.search(r"^prediction_spool_records (\S+)$", metrics, re.M)
    failures = re.search(r"^prediction_spool_replay_failures_total (\S+)$", metrics, re.M)
    assert gauge and float(gauge[1]) == len(statuses) - 1, metrics[-3000:]
    assert failures and float(failures[1]) >= 1, metrics[-3000:]
