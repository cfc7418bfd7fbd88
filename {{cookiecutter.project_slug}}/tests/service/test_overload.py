"""A bounded queue: under more load than it can serve within `serving.max_queue_wait`, a real
`bentoml serve` on loopback refuses the excess at once with a 503 and `Retry-After`, instead of
letting it wait out the timeout, and still answers (and logs) the rest. The registered model is
served from a scratch copy of the project's model store whose serving settings allow a queue of
a few milliseconds, so a modest load on loopback overloads it."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.serving.prediction_log import ENV_VAR, SPOOL_ENV_VAR, open_sink
from {{ cookiecutter.package_name }}.serving.store import MODEL_NAME, SERVING_FILE

from .conftest import PROJECT_ROOT, as_records, send, server_process

pytestmark = pytest.mark.service

MAX_QUEUE_WAIT = 0.005  # seconds of queued scoring allowed: a few batches of 100 records


def store_with(home: Path, **serving: Any) -> Path:
    """A copy of the project's model store whose newest model has these serving settings."""
    source = Path(PROJECT_ROOT / ".bentoml" / "models")
    shutil.copytree(source, home / "models")
    version = (home / "models" / MODEL_NAME / "latest").read_text().strip()
    settings_file = home / "models" / MODEL_NAME / version / SERVING_FILE
    settings = json.loads(settings_file.read_text())
    settings_file.write_text(json.dumps({**settings, **serving}))
    return home


def test_an_overloaded_service_refuses_at_once_with_retry_after(
    service: Any, test_split: pd.DataFrame, tmp_path: Path
) -> None:
    timeout = 30.0
    home = store_with(tmp_path / "bentoml", max_queue_wait=MAX_QUEUE_WAIT, timeout=timeout)
    log = str(tmp_path / "predictions")
    env = {"BENTOML_HOME": str(home), ENV_VAR: log, SPOOL_ENV_VAR: str(tmp_path / "spool")}
    records = as_records(test_split[service.SCHEMA.feature_names])
    with server_process(tmp_path / "serve.log", env) as server:
        traffic = send(server.url, records, clients=64, requests=1_000, records_per_request=100)

    assert set(traffic.statuses) == {200, 503}, traffic.statuses
    for refusal in traffic.refusals:
        assert refusal.status_code == 503
        assert "the service is busy: retry after" in refusal.json()["error"], refusal.text
        assert int(refusal.headers["Retry-After"]) >= 1
        # refused on arrival, not after waiting in the queue for the timeout
        assert refusal.elapsed.total_seconds() < timeout / 2
    logged = Counter(open_sink(log).read_predictions()["prediction_id"])
    assert set(logged) == set(traffic.answered), "a refused request was scored and logged"
    assert max(logged.values()) == 1
