"""Loopback helpers shared by the tests that serve on 127.0.0.1: running a generated project's
server targets (`make serve`, `make monitor-ui`) and stopping every process they start, talking
to them or to the container image, and serving files (a data source behind an http URL)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import Project

LOG_TAIL = 4000  # characters of the server's log shown when it does not become ready
READY_TIMEOUT = 120.0  # seconds: about 10 s here (uv run, imports, model load)
STOP_TIMEOUT = 20.0  # seconds for a graceful stop before SIGKILL
MARKER = (
    "TEMPLATE_TESTS_SERVE_RUN"  # environment variable naming the processes of one run
)


# One record of the test split, the model bundle's probability and decided label for it offline.
OFFLINE_PREDICTION = """
import json
from {package}.bundle import load_bundle
from {package}.config import Paths
bundle = load_bundle(Paths.model)
row = bundle.schema.read_csv(Paths.test_data)[bundle.schema.feature_names].head(1)
probability = float(bundle.outputs(row)[0])
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


def http(
    url: str, body: Any = None, timeout: float = 30, token: str | None = None
) -> tuple[int, str]:
    """(status, body) of a GET, or of a JSON POST when `body` is given, with `token` as a
    bearer token when given; 4xx/5xx included."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers)
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
    path: str = "/readyz",
) -> None:
    """Poll `<url><path>` until it answers 200; fail with the log's tail when `timeout`
    passes first, or at once when `process` (the server, if we started it) exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if http(f"{url}{path}", timeout=5)[0] == 200:
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


def run_processes(marker: str, project: Path) -> list[int]:
    """Pids of the processes of one serve run, wherever their session: those whose environment
    carries the marker or whose working directory is in the project (a worker's command line
    names neither the project nor the port)."""
    found = []
    needle = f"{MARKER}={marker}".encode()
    for proc in Path("/proc").glob("[0-9]*"):
        pid = int(proc.name)
        if pid == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if needle in environ or cwd == project or project in cwd.parents:
            found.append(pid)
    return found


def wait_until_gone(
    marker: str, project: Path, seconds: float, interval: float
) -> list[int]:
    """Wait up to `seconds` for the run's processes to end; return those still there."""
    deadline = time.monotonic() + seconds
    while (left := run_processes(marker, project)) and time.monotonic() < deadline:
        time.sleep(interval)
    return left


def stop(process: subprocess.Popen[bytes], marker: str, project: Path) -> list[int]:
    """End the process group of `make serve`, then any process of the run that outlived it;
    return the pids that had to be ended that way."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=STOP_TIMEOUT)
    # BentoML stops its workers on SIGTERM, but not at once: give them a moment.
    stragglers = wait_until_gone(marker, project, STOP_TIMEOUT, interval=0.5)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in run_processes(marker, project):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        wait_until_gone(marker, project, 5, interval=0.2)
    return stragglers


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net shows them) of the sockets listening on `port`."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                addresses.add(address)
    return addresses


@dataclass
class RunningMake:
    """A `make` target serving on loopback, and what stopping it had to do."""

    url: str
    port: int
    log: Path
    process: subprocess.Popen[bytes]
    stragglers: list[int] = field(default_factory=list)  # outlived SIGTERM to the group
    survivors: list[int] = field(default_factory=list)  # outlived even SIGKILL


@contextlib.contextmanager
def running_make(
    project: Project,
    target: list[str],
    log: Path,
    port_variable: str = "PORT",
    ready_path: str = "/readyz",
    env: dict[str, str] | None = None,
) -> Iterator[RunningMake]:
    """`make <target> <PORT>=<free port>` in the project with a user's PATH, until ready (GET
    `ready_path` answers 200); stopped afterwards with every process it started."""
    port = free_port()
    marker = uuid.uuid4().hex
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["make", *target, f"{port_variable}={port}"],
            cwd=project.path,
            env=project.env({**(env or {}), MARKER: marker}, activated=False),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RunningMake(f"http://127.0.0.1:{port}", port, log, process)
    try:
        wait_until_ready(server.url, READY_TIMEOUT, log, process, path=ready_path)
        yield server
    finally:
        server.stragglers = stop(process, marker, project.path)
        server.survivors = run_processes(marker, project.path)
