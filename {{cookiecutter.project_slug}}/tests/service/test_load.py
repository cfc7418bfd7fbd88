"""Nothing lost under load: a real `bentoml serve` takes LOAD_REQUESTS single-record
predictions from LOAD_CONCURRENCY concurrent clients on loopback, answers every one with a 2xx,
and after a graceful stop (SIGTERM: the service flushes its log) every answered prediction is
in the prediction log exactly once, for the directory and the SQL sink (SQLite; and the database
at LOAD_TEST_SQL_URL, e.g. PostgreSQL, when set: a database of its own, its log tables absent or
empty). The service's metrics count every request's record in a batch, and fewer batches than
requests."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.serving.prediction_log import ENV_VAR, open_sink

from .conftest import as_records, output_histograms, send, serving

pytestmark = pytest.mark.service

LOAD_REQUESTS = int(os.environ.get("LOAD_REQUESTS", "10000"))
LOAD_CONCURRENCY = 32
SINKS = ["directory", "sqlite"] + (["database"] if os.environ.get("LOAD_TEST_SQL_URL") else [])


def metric_total(metrics: str, name: str) -> float:
    """The sum of every sample of one metric (all its labels) in a /metrics page."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if re.match(re.escape(name) + r"[ \{]", line)
    )


@pytest.mark.parametrize("sink", SINKS)
def test_every_answered_prediction_is_logged_exactly_once(
    sink: str, service: Any, test_split: pd.DataFrame, tmp_path: Path, http: httpx.Client
) -> None:
    location = str(tmp_path / "predictions")
    if sink == "sqlite":
        location = f"sqlite:///{tmp_path / 'predictions.db'}"
    elif sink == "database":
        location = os.environ["LOAD_TEST_SQL_URL"]
    records = as_records(test_split[service.SCHEMA.feature_names])
    server_log = tmp_path / "bentoml-serve.log"
    with serving(server_log, {ENV_VAR: location}) as url:
        try:
            traffic = send(url, records, clients=LOAD_CONCURRENCY, requests=LOAD_REQUESTS)
        except httpx.TransportError as error:
            pytest.fail(
                f"a request got no answer: {error!r}; the server's log ends:\n"
                f"{server_log.read_text()[-3000:]}"
            )
        metrics = http.get(f"{url}/metrics").text
    # the server is stopped: whatever it answered must be written by now
    answered = traffic.answered
    assert traffic.statuses == Counter({200: LOAD_REQUESTS}), traffic.statuses
    logged = Counter(open_sink(location).read_predictions()["prediction_id"])
    assert len(answered) == LOAD_REQUESTS == len(set(answered))
    missing = set(answered) - set(logged)
    assert not missing, f"{len(missing)} answered prediction(s) never reached the log"
    assert set(logged) == set(answered), "the log holds predictions nobody was answered"
    assert max(logged.values()) == 1, "a prediction was logged more than once"
    batched, batches = (metric_total(metrics, f"batch_records_{kind}") for kind in ("sum", "count"))
    assert batched == LOAD_REQUESTS, "not every request went through the batcher"
    assert batches < batched, "no batch ever joined two requests under load"
    # the decisions, per model version, for the canary to compare: one per answer
    assert metric_total(metrics, "predictions_total") == LOAD_REQUESTS
    for histogram in output_histograms(service.BUNDLE):
        assert metric_total(metrics, f"{histogram}_count") == LOAD_REQUESTS, histogram
