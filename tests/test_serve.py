"""The generated project's `make serve`, run for real: the service starts on loopback at the
port given, becomes ready, answers a prediction like the model offline does, publishes its
metrics, and is stopped afterwards with every process it started.

BentoML's arbiter puts each worker in a session of its own, so ending the process group of
`make serve` may leave a worker behind: the test finds what is left by a marker in the
environment every process of the run inherits (or a working directory in the project), ends it,
and fails if a graceful stop of the group had left any.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Project
from loopback import free_port, http, offline_prediction, wait_until_ready

pytestmark = pytest.mark.e2e

READY_TIMEOUT = 120.0  # seconds: about 10 s here (uv run, imports, model load)
STOP_TIMEOUT = 20.0  # seconds for a graceful stop before SIGKILL
MARKER = (
    "TEMPLATE_TESTS_SERVE_RUN"  # environment variable naming the processes of one run
)


@pytest.fixture(scope="module")
def project(
    default_project: Project, tmp_path_factory: pytest.TempPathFactory
) -> Project:
    """A copy of the default project: serving writes its prediction log into the project."""
    directory = tmp_path_factory.mktemp("serve") / default_project.path.name
    return default_project.copy(directory)


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


@pytest.fixture
def served(project: Project, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`make serve PORT=<free port>` running in the project: (its URL, its log file)."""
    port = free_port()
    marker = uuid.uuid4().hex
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["make", "serve", f"PORT={port}"],
            cwd=project.path,
            env=project.env({MARKER: marker}, activated=False),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, READY_TIMEOUT, log, process)
        listening = listening_addresses(port)
        assert listening <= {"0100007F"}, (
            f"port {port} is listened on beyond 127.0.0.1: {listening}"
        )
        yield url, log
    finally:
        stragglers = stop(process, marker, project.path)
    left = run_processes(marker, project.path)
    assert not left, f"processes of make serve survived SIGKILL: {left}"
    # Stopping `make serve` (SIGTERM to its process group) must end BentoML's workers too.
    assert not stragglers, (
        f"make serve left workers running after SIGTERM: {stragglers}"
    )


def test_make_serve_answers_on_loopback(
    served: tuple[str, Path], project: Project
) -> None:
    url, log = served
    offline = offline_prediction(project)
    registered = json.loads((project.path / "reports" / "registry.json").read_text())

    status, body = http(f"{url}/predict", {"records": [offline["record"]]})
    assert status == 200, f"{body}\n{log.read_text()[-3000:]}"
    [answer] = json.loads(body)
    assert set(answer) == {"prediction_id", "label", "probability", "model_version"}
    assert 0.0 <= answer["probability"] <= 1.0
    assert answer["probability"] == pytest.approx(offline["probability"], abs=1e-9)
    assert answer["label"] == offline["label"], (
        answer
    )  # decided at the bundle's threshold
    assert uuid.UUID(answer["prediction_id"]).version == 4
    assert answer["model_version"] == registered["tag"]

    status, metrics = http(f"{url}/metrics")
    assert status == 200 and "# TYPE" in metrics, metrics[:500]
