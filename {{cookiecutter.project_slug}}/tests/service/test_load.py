"""Nothing lost under load: a real `bentoml serve` takes LOAD_REQUESTS single-record
predictions from LOAD_CONCURRENCY concurrent clients on loopback, answers every one with a 2xx,
and after a graceful stop (SIGTERM: the service flushes its log) every answered prediction is
in the prediction log exactly once, for the directory and the SQL sink (SQLite; and the database
at LOAD_TEST_SQL_URL, e.g. PostgreSQL, when set: a database of its own, its log tables absent or
empty). The service's metrics count every request's record in a batch, and fewer batches than
requests."""

from __future__ import annotations

import asyncio
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.serving.prediction_log import ENV_VAR, open_sink

from .conftest import as_records, serving

pytestmark = pytest.mark.service

LOAD_REQUESTS = int(os.environ.get("LOAD_REQUESTS", "10000"))
LOAD_CONCURRENCY = 32
# The server closes a connection idle for 5 s (uvicorn's keep-alive under bentoml serve). A pool
# must drop idle connections sooner: a request sent as the server closes it is reset (a
# ReadError), the race any HTTP/1.1 client pool has, seen once in CI on a 5 s client expiry.
CLIENT_KEEPALIVE_EXPIRY = 1.0
SINKS = ["directory", "sqlite"] + (["database"] if os.environ.get("LOAD_TEST_SQL_URL") else [])


async def send(url: str, records: list[dict[str, Any]]) -> tuple[list[str], Counter[int]]:
    """Every request once, from LOAD_CONCURRENCY clients; the ids answered, the status counts."""
    pending: asyncio.Queue[int] = asyncio.Queue()
    for number in range(LOAD_REQUESTS):
        pending.put_nowait(number)
    answered: list[str] = []
    statuses: Counter[int] = Counter()
    limits = httpx.Limits(
        max_connections=LOAD_CONCURRENCY, keepalive_expiry=CLIENT_KEEPALIVE_EXPIRY
    )
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def client_loop() -> None:
            while not pending.empty():
                record = records[pending.get_nowait() % len(records)]
                response = await client.post("/predict", json={"records": [record]})
                statuses[response.status_code] += 1
                if response.is_success:
                    answered.extend(answer["prediction_id"] for answer in response.json())

        await asyncio.gather(*(client_loop() for _ in range(LOAD_CONCURRENCY)))
    return answered, statuses


def batching_counts(url: str) -> tuple[float, float]:
    """(records, batches) the service's batcher scored, from the server's /metrics."""
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    counts = {}
    for kind in ("sum", "count"):
        counts[kind] = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if re.match("^batch_records_" + kind + r"[ \{]", line)
        )
    return counts["sum"], counts["count"]


@pytest.mark.parametrize("sink", SINKS)
def test_every_answered_prediction_is_logged_exactly_once(
    sink: str, service: Any, test_split: pd.DataFrame, tmp_path: Path
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
            answered, statuses = asyncio.run(send(url, records))
        except httpx.TransportError as error:
            pytest.fail(
                f"a request got no answer: {error!r}; the server's log ends:\n"
                f"{server_log.read_text()[-3000:]}"
            )
        batched, batches = batching_counts(url)
    # the server is stopped: whatever it answered must be written by now
    assert statuses == Counter({200: LOAD_REQUESTS}), statuses
    logged = Counter(open_sink(location).read_predictions()["prediction_id"])
    assert len(answered) == LOAD_REQUESTS == len(set(answered))
    missing = set(answered) - set(logged)
    assert not missing, f"{len(missing)} answered prediction(s) never reached the log"
    assert set(logged) == set(answered), "the log holds predictions nobody was answered"
    assert max(logged.values()) == 1, "a prediction was logged more than once"
    assert batched == LOAD_REQUESTS, "not every request went through the batcher"
    assert batches < batched, "no batch ever joined two requests under load"
