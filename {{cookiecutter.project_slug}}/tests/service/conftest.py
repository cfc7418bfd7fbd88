"""Fixtures of the service tests: the registered model's service, served in-process (BentoML's
ASGI app in starlette's TestClient), with its prediction log in a scratch directory;
`serving()`, a real `bentoml serve` on loopback whose whole process tree is always stopped; and
`send()`, bounded concurrent traffic to it.

Every client here calls as any client must, with a bearer token: the session makes a tokens
file (`session_tokens()`: one token with every scope, the clients' default, and one per scope
alone) and points API_TOKENS_FILE at it before any service starts. Every 4xx/5xx answer a
client of the session receives is kept (ERROR_BODIES) for test_error_bodies to read for
internals."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pandas as pd
import psutil  # installed with bentoml
import pytest

from {{ cookiecutter.package_name }}.bundle import ModelBundle
from {{ cookiecutter.package_name }}.config import Paths
from {{ cookiecutter.package_name }}.deploy import smoke
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.serving.auth import ENV_VAR as TOKENS_ENV_VAR
from {{ cookiecutter.package_name }}.serving.auth import SCOPES, create_token
from {{ cookiecutter.package_name }}.serving.prediction_log import ENV_VAR, PredictionSink, open_sink
from {{ cookiecutter.package_name }}.serving.store import use_project_store

PROJECT_ROOT = Path(__file__).resolve().parents[2]
use_project_store(PROJECT_ROOT)  # before anything imports bentoml: the project's own store


# ---------------------------------------------------------------------------------------------
# Callers

CALLER = "service-tests"  # the token every client of these tests sends unless told otherwise


@dataclass(frozen=True)
class Tokens:
    file: Path  # digests, names and scopes, as `make token` keeps them
    secrets: dict[str, str]  # name -> token

    def headers(self, name: str = CALLER) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[name]}"}


def make_tokens(directory: Path) -> Tokens:
    """A tokens file in `directory`: CALLER with every scope, and `only-<scope>` for each
    scope alone."""
    path = directory / "tokens.json"
    made = {CALLER: create_token(path, CALLER, SCOPES)}
    made |= {f"only-{scope}": create_token(path, f"only-{scope}", [scope]) for scope in SCOPES}
    return Tokens(path, made)


@functools.cache
def session_tokens() -> Tokens:
    """The session's tokens, made once in a scratch directory removed at exit: the service
    tests' clients and tests/deploy's send them."""
    directory = Path(tempfile.mkdtemp(prefix="api-tokens-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return make_tokens(directory)


def authorized(name: str = CALLER) -> dict[str, str]:
    """The Authorization header of one of the session's tokens (default: every scope)."""
    return session_tokens().headers(name)


@pytest.fixture(scope="session", autouse=True)
def tokens_file() -> Iterator[Path]:
    """The session's tokens file, named by API_TOKENS_FILE for the whole session: before any
    service starts, in-process or `bentoml serve` (each inherits the environment)."""
    path = session_tokens().file
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TOKENS_ENV_VAR, str(path))
        yield path


# ---------------------------------------------------------------------------------------------
# Every error answer of the session, for test_error_bodies


@dataclass(frozen=True)
class ErrorBody:
    request: str  # method and URL
    sent: str  # the request's body: what the client itself sent may come back
    status: int
    body: str


ERROR_BODIES: list[ErrorBody] = []


def keep_error_body(
    method: str, url: str, sent: bytes | str | None, status: int, body: str
) -> None:
    """Keep an answer if it is an error (4xx/5xx), with what its request sent."""
    if status >= 400:
        if isinstance(sent, bytes):
            sent = sent.decode(errors="replace")
        ERROR_BODIES.append(ErrorBody(f"{method} {url}", sent or "", status, body))


def _sent(request: httpx.Request) -> bytes:
    try:
        return request.content
    except httpx.RequestNotRead:  # a streamed body
        return b""


def keep_httpx_error(response: httpx.Response) -> None:
    """httpx's response hook (a Client's event_hooks): keep a 4xx/5xx answer."""
    if response.status_code >= 400:
        response.read()
        request = response.request
        keep_error_body(
            request.method, str(request.url), _sent(request), response.status_code, response.text
        )


async def keep_httpx_error_async(response: httpx.Response) -> None:
    """The same, for an AsyncClient."""
    if response.status_code >= 400:
        await response.aread()
        request = response.request
        keep_error_body(
            request.method, str(request.url), _sent(request), response.status_code, response.text
        )


def http_client(headers: Mapping[str, str] | None = None, **settings: Any) -> httpx.Client:
    """An httpx client that calls as the tests' clients do: with `headers` (default: the
    token with every scope), every error answer kept."""
    return httpx.Client(
        headers=authorized() if headers is None else dict(headers),
        event_hooks={"response": [keep_httpx_error]},
        **settings,
    )


def async_http_client(
    headers: Mapping[str, str] | None = None, **settings: Any
) -> httpx.AsyncClient:
    """The same, asynchronous."""
    return httpx.AsyncClient(
        headers=authorized() if headers is None else dict(headers),
        event_hooks={"response": [keep_httpx_error_async]},
        **settings,
    )


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    """The session's client of real servers (full URLs), with the default token."""
    with http_client(timeout=30) as client:
        yield client


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """test_error_bodies' session check runs last, once every other test has been answered."""
    items.sort(key=lambda item: item.nodeid.endswith(READS_EVERY_ERROR_BODY))


READS_EVERY_ERROR_BODY = "test_error_bodies.py::test_no_error_body_names_internals"


def run_make_pipeline(problem: str) -> None:
    pytest.fail(
        f"{problem}: run `make pipeline` first (it trains and registers the model)", pytrace=False
    )


@pytest.fixture(scope="session")
def service() -> ModuleType:
    """The service module, imported from the project root (it reads params.yaml from there)."""
    if not (PROJECT_ROOT / Paths.registry).is_file():
        run_make_pipeline(f"{Paths.registry} is missing")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(PROJECT_ROOT)
        try:
            return importlib.import_module("{{ cookiecutter.package_name }}.serving.service")
        except ConfigError as error:
            run_make_pipeline(f"{error} (BENTOML_HOME={os.environ['BENTOML_HOME']})")
            raise


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prediction-log")


@pytest.fixture(scope="session")
def client(service: ModuleType, log_dir: Path) -> Iterator[Any]:
    """One running app for the session (starting it loads the model: seconds, not milliseconds)."""
    from starlette.testclient import TestClient

    test_client = TestClient(
        service.ModelService.to_asgi(), raise_server_exceptions=False, headers=authorized()
    )
    test_client.event_hooks = {"response": [keep_httpx_error]}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VAR, str(log_dir))  # read once, when the service starts and opens its sink
        patch.chdir(PROJECT_ROOT)
        started = test_client.__enter__()  # runs the app's startup: loads the model, opens the log
    try:
        yield started
    finally:
        test_client.__exit__(None, None, None)  # runs its shutdown: flushes the log


@pytest.fixture(scope="session")
def log_sink(client: Any, log_dir: Path) -> PredictionSink:
    return open_sink(str(log_dir))


@pytest.fixture(scope="session")
def test_split(service: ModuleType) -> pd.DataFrame:
    path = PROJECT_ROOT / Paths.test_data
    if not path.is_file():
        run_make_pipeline(f"{Paths.test_data} is missing")
    return service.SCHEMA.read_csv(path)


def as_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready records: missing values become null, numbers stay numbers."""
    return json.loads(frame.to_json(orient="records"))


def assert_same_answers(
    served: list[dict[str, Any]], expected: list[dict[str, Any]], atol: float = 1e-12
) -> None:
    """Served answers equal the offline ones (the deploy's smoke test's comparison): labels
    exactly (a number to `atol`), outputs to `atol`."""
    assert len(served) == len(expected)
    for i, (answer, offline) in enumerate(zip(served, expected, strict=True)):
        assert smoke.differences(answer, offline, atol) == [], i


def output_histograms(bundle: ModelBundle) -> list[str]:
    """The histograms the service keeps of its answers besides `predictions_total` by label:
    binary the positive probability, a number the decided value (a canary's mean)."""
    binary = ["prediction_probability"] if "probability" in bundle.task.output_names() else []
    return binary + ([] if bundle.schema.target_values else ["predicted_value"])


def counted_label(bundle: ModelBundle, label: Any) -> str:
    """`predictions_total`'s label for an answer: the class, or `number`."""
    return str(label) if bundle.schema.target_values else "number"


def a_true_label(bundle: ModelBundle) -> Any:
    """A label feedback may carry: a class, or a number."""
    return bundle.label(0)


@pytest.fixture(scope="session")
def valid_record(service: ModuleType, test_split: pd.DataFrame) -> dict[str, Any]:
    return as_records(test_split[service.SCHEMA.feature_names].head(1))[0]


# ---------------------------------------------------------------------------------------------
# A real server

READY_TIMEOUT = 120.0  # seconds; about 3 s on a quiet machine, far more on a busy CI runner


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server and every worker at once, as a crash or an OOM kill would: nothing
    gets to flush. Its workers live in sessions of their own, so each is killed by pid."""
    tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    for member in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()
    _, alive = psutil.wait_procs(tree, timeout=10)
    assert not alive, f"still running after SIGKILL: {alive}"
    process.wait(timeout=10)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (a graceful stop: the service flushes its log), then
    SIGKILL whatever is left of its tree (BentoML may start workers in sessions of their own,
    out of reach of the group signal)."""
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


# BentoML reserves free ports for its process manager's own sockets, then binds them: another
# process starting at once (a second server, Envoy) can take one in between. Seen once in CI:
# "Address already in use" from circus' control socket. Such a start is retried.
STARTS = 3
PORT_TAKEN = "Address already in use"


def wait_until_ready(
    url: str,
    process: subprocess.Popen[bytes],
    log: Path,
    *,
    since: int = 0,
    last_start: bool = True,
) -> bool:
    """Whether the server answers /readyz (False: it exited because a port it reserved was
    taken meanwhile, as its output from byte `since` of `log` says, and this is not
    `last_start`); fails the test otherwise."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_bytes()[since:].decode(errors="replace")
            if PORT_TAKEN in output and not last_start:
                return False
            pytest.fail(f"bentoml serve exited with {process.returncode}:\n{output[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"not ready after {READY_TIMEOUT:.0f} s:\n{log.read_text()[-3000:]}")


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def __str__(self) -> str:
        return self.url


@contextlib.contextmanager
def serving(log: Path, env: Mapping[str, str]) -> Iterator[str]:
    """`bentoml serve` of the project on a free loopback port, its output in `log`; the URL."""
    with server_process(log, env) as server:
        yield server.url


@contextlib.contextmanager
def server_process(log: Path, env: Mapping[str, str]) -> Iterator[Server]:
    """As `serving()`, with the process, for tests that stop it their own way (`kill`)."""
    log.write_bytes(b"")
    for start in range(1, STARTS + 1):
        port, since = free_port(), log.stat().st_size
        with open(log, "ab") as output:  # each start's output, one after the other
            process = subprocess.Popen(
                [sys.executable, "-m", "bentoml", "serve", "--host", "127.0.0.1",
                 "--port", str(port)],
                cwd=PROJECT_ROOT,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            if wait_until_ready(url, process, log, since=since, last_start=start == STARTS):
                break
        except BaseException:
            if process.poll() is None:
                stop(process)
            raise
        stop(process)  # exited: its workers, if any started, go too
    try:
        yield Server(url, process, log)
    finally:
        if process.poll() is None:
            stop(process)


# ---------------------------------------------------------------------------------------------
# Traffic

# The server closes a connection idle for 5 s (uvicorn's keep-alive under bentoml serve). A pool
# must drop idle connections sooner: a request sent as the server closes it is reset (a
# ReadError), the race any HTTP/1.1 client pool has, seen once in CI on a 5 s client expiry.
CLIENT_KEEPALIVE_EXPIRY = 1.0
NO_ANSWER = 0  # the status counted for a request that got no response (connection lost)


@dataclass
class Traffic:
    """What a load run got back: the ids answered with a 2xx, every status, the refusals."""

    answered: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    refusals: list[httpx.Response] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def send(
    url: str,
    records: list[dict[str, Any]],
    *,
    clients: int,
    requests: int | None = None,
    seconds: float | None = None,
    records_per_request: int = 1,
    tolerate_no_answer: bool = False,
    path: str = "/predict",
    headers: Mapping[str, str] | None = None,
) -> Traffic:
    """`requests` requests (or as many as fit in `seconds`) from `clients` concurrent clients,
    each with `records_per_request` of `records` in turn, with `headers` (the default token).
    A request without an answer fails the run unless `tolerate_no_answer` (a test that kills the
    server): then it is counted as NO_ANSWER and its client stops."""
    if (requests is None) == (seconds is None):
        raise ValueError("give requests or seconds")
    load = (clients, requests, seconds, records_per_request, tolerate_no_answer, path, headers)
    return asyncio.run(_send(url, records, *load))


async def _send(
    url: str,
    records: list[dict[str, Any]],
    clients: int,
    requests: int | None,
    seconds: float | None,
    size: int,
    tolerate_no_answer: bool,
    path: str,
    headers: Mapping[str, str] | None,
) -> Traffic:
    traffic = Traffic()
    deadline = time.monotonic() + seconds if seconds is not None else None
    issued = 0
    limits = httpx.Limits(max_connections=clients, keepalive_expiry=CLIENT_KEEPALIVE_EXPIRY)
    async with async_http_client(headers, base_url=url, timeout=60, limits=limits) as client:

        async def client_loop() -> None:
            nonlocal issued
            while (requests is None or issued < requests) and (
                deadline is None or time.monotonic() < deadline
            ):
                first = issued * size
                issued += 1
                body = {"records": [records[(first + i) % len(records)] for i in range(size)]}
                try:
                    response = await client.post(path, json=body)
                except httpx.TransportError as error:
                    if not tolerate_no_answer:
                        raise
                    traffic.statuses[NO_ANSWER] += 1
                    traffic.errors.append(repr(error))
                    return  # the server is gone: this client stops
                traffic.statuses[response.status_code] += 1
                if response.is_success:
                    traffic.answered.extend(answer["prediction_id"] for answer in response.json())
                else:
                    traffic.refusals.append(response)

        await asyncio.gather(*(client_loop() for _ in range(clients)))
    return traffic
