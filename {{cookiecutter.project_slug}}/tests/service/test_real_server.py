"""The service under a real `bentoml serve` on loopback: readiness, a prediction, Prometheus
metrics (which only a real server exposes), and schemathesis fuzzing /predict and /feedback from
the service's own OpenAPI document. The server's whole process tree is always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import psutil  # installed with bentoml
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
)

from {{ cookiecutter.package_name }}.serving.prediction_log import ENV_VAR

from .conftest import PROJECT_ROOT

pytestmark = pytest.mark.service

READY_TIMEOUT = 120.0  # seconds; about 3 s on a quiet machine, far more on a busy CI runner


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left of its tree (BentoML
    may start workers in sessions of their own, out of reach of the group signal)."""
    tree: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        tree = psutil.Process(process.pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=20)
    for member in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(service: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "bentoml-serve.log"
    env = {**os.environ, ENV_VAR: str(log.parent / "predictions")}
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process, log)
        yield url
    finally:
        stop(process)


def wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"bentoml serve exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"not ready after {READY_TIMEOUT:.0f} s:\n{log.read_text()[-3000:]}")


def test_ready_predicts_and_exposes_metrics(server: str, valid_record: dict) -> None:
    assert httpx.get(f"{server}/readyz", timeout=10).status_code == 200
    response = httpx.post(f"{server}/predict", json={"records": [valid_record]}, timeout=30)
    assert response.status_code == 200, response.text

    metrics = httpx.get(f"{server}/metrics", timeout=10)

    assert metrics.status_code == 200
    assert "bentoml_service_request_total" in metrics.text


# ---------------------------------------------------------------------------------------------
# Fuzzing: no 5xx, schema-violating bodies refused (4xx), schema-valid ones accepted, responses
# as documented. schemathesis's examples, coverage (boundaries, wrong types such as a JSON
# `false` for an integer) and fuzzing phases run for each operation.

FUZZED_ROUTES = ("/predict", "/feedback")
FUZZ_CHECKS = [
    not_a_server_error,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
]


def served_openapi(url: str) -> dict[str, Any]:
    """The service's /docs.json with two inaccuracies of BentoML 1.4's generator corrected: it
    omits `requestBody.required` (so an empty body would count as valid), and documents a
    400's `detail` as a string where pydantic's error list arrives."""
    document = httpx.get(f"{url}/docs.json", timeout=10).json()
    for route in FUZZED_ROUTES:
        document["paths"][route]["post"]["requestBody"]["required"] = True
    document["components"]["schemas"]["InvalidArgument"]["properties"]["detail"] = {}
    return document


@pytest.fixture(scope="module")
def api_schema(server: str) -> Any:
    schema = schemathesis.openapi.from_dict(served_openapi(server))
    schema.config.update(base_url=server)
    return schema.include(path_regex=f"^({'|'.join(FUZZED_ROUTES)})$")


@pytest.fixture(autouse=True)
def _schemathesis_node_id(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32 reads Node._nodeid, which pytest 9.2 no longer sets
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


fuzzed = schemathesis.pytest.from_fixture("api_schema")


@fuzzed.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_get_no_server_error_and_bad_data_is_refused(case: Any) -> None:
    case.call_and_validate(checks=FUZZ_CHECKS, timeout=30)
