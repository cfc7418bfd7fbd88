"""The project's own clients of the service (serving/client.py, used by `make simulate URL=...`
and the deploy's smoke test): which token they send, that they send it, and what they say when
the service refuses it. Against a stand-in service on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from {{ cookiecutter.package_name }}.errors import PipelineError
from {{ cookiecutter.package_name }}.monitoring import simulate
from {{ cookiecutter.package_name }}.serving.client import client_token, request

pytestmark = pytest.mark.unit

KNOWN = "mls_known"


class _Service(BaseHTTPRequestHandler):
    """Answers 200 with the Authorization header it got to the known token, 401 otherwise."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        sent = self.headers.get("Authorization")
        status = 200 if sent == f"Bearer {KNOWN}" else 401
        data = json.dumps([{"authorization": sent}]).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Service)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_token_is_api_token_else_the_local_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = tmp_path / "local-token"
    monkeypatch.delenv("API_TOKEN", raising=False)
    assert client_token(local) is None
    local.write_text("mls_local\n")
    assert client_token(local) == "mls_local"
    assert client_token() is None  # the deploy's smoke test reads no local file
    monkeypatch.setenv("API_TOKEN", "mls_from_env")
    assert client_token(local) == "mls_from_env"


def test_the_token_is_sent_as_a_bearer_token(url: str) -> None:
    status, body = request(f"{url}/predict", {"records": []}, token=KNOWN)
    assert status == 200
    assert json.loads(body) == [{"authorization": f"Bearer {KNOWN}"}]


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        (None, "no token was sent (API_TOKEN is not set)"),
        ("mls_other", "the service does not know the token"),
    ],
)
def test_simulate_says_what_to_do_when_refused(url: str, token: str | None, problem: str) -> None:
    with pytest.raises(PipelineError) as refused:
        simulate._to_service(url, [{"x": 1}], token)
    message = str(refused.value)
    assert f"/predict_simulated answered 401: {problem}" in message
    assert "Set API_TOKEN" in message and "make token" in message
