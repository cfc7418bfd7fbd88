"""Loopback helpers shared by the tests that serve on 127.0.0.1: talking to a generated
project's service (`make serve` in test_serve.py, the container image in test_container.py)
and serving files to it (a data source behind an http URL)."""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import Project

LOG_TAIL = 4000  # characters of the server's log shown when it does not become ready

# One record of the test split, the model bundle's probability and decided label for it offline.
OFFLINE_PREDICTION = """
import json
from {package}.bundle import load_bundle
from {package}.config import Paths
bundle = load_bundle(Paths.model)
row = bundle.schema.read_csv(Paths.test_data)[bundle.schema.feature_names].head(1)
probability = float(bundle.probabilities(row)[0])
record = json.loads(row.to_json(orient="records"))[0]
print(json.dumps({{
    "record": record,
    "probability": probability,
    "label": bundle.label(bundle.decide([probability])[0]),
}}))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http(url: str, body: Any = None, timeout: float = 30) -> tuple[int, str]:
    """(status, body) of a GET, or of a JSON POST when `body` is given; 4xx/5xx included."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_until_ready(
    url: str,
    timeout: float,
    log: Path,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll `<url>/readyz` until it answers 200; fail with the log's tail when `timeout`
    passes first, or at once when `process` (the server, if we started it) exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if http(f"{url}/readyz", timeout=5)[0] == 200:
                return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            pytest.fail(
                f"the server exited ({process.returncode}) before it was ready:\n"
                f"{log.read_text()[-LOG_TAIL:]}"
            )
        if time.monotonic() > deadline:
            pytest.fail(
                f"/readyz not 200 after {timeout:.0f} s:\n{log.read_text()[-LOG_TAIL:]}"
            )
        time.sleep(0.5)


def offline_prediction(project: Project) -> dict[str, Any]:
    """The model bundle's answer for one test-split record, computed in the project without
    serving: {"record", "probability", "label"}."""
    package = project.path.name.replace("-", "_")
    script = OFFLINE_PREDICTION.format(package=package)
    return json.loads(project.run("python", "-c", script).stdout)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve a directory on a loopback port from a thread; yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
