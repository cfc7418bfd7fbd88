"""The service's front door (serving/guard.py) around a stand-in app: what it lets through, what
it refuses before the app reads anything, and the error bodies it leaves the client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from {{ cookiecutter.package_name }}.config import Params
from {{ cookiecutter.package_name }}.schema import Schema
from {{ cookiecutter.package_name }}.serving.auth import SCOPES, TokenVerifier, create_token
from {{ cookiecutter.package_name }}.serving.guard import CALLER, Guard, derived_body_limit

pytestmark = pytest.mark.unit

LIMIT = 10_000


class StandIn:
    """An ASGI app that answers what it read and who asked, or fails as told."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls += 1
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        answer = json.dumps({"caller": CALLER.get(None), "read": len(body)})
        status, kind = 200, b"json"
        if scope["path"] == "/docs.json":
            answer = json.dumps({"paths": {"/predict": {"post": {}}, "/healthz": {"get": {}}}})
        if scope["path"] == "/explain":  # as Starlette's own error pages: plain text
            status, answer, kind = 500, "Internal Server Error at db.internal:5432", b"plain"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/" + kind), (b"x-kept", b"yes")],
            }
        )
        await send({"type": "http.response.body", "body": answer.encode()})


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "tokens.json"
    return {
        "all": create_token(path, "everything", SCOPES),
        "predict": create_token(path, "predictor", ["predict"]),
        "_file": str(path),
    }


@pytest.fixture
def app(tokens: dict[str, str]) -> StandIn:
    return StandIn()


@pytest.fixture
def client(app: StandIn, tokens: dict[str, str]) -> Iterator[TestClient]:
    verifier = TokenVerifier()
    verifier.load(Path(tokens["_file"]))
    yield TestClient(Guard(app, verifier, LIMIT), raise_server_exceptions=False)  # no lifespan


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_known_token_reaches_the_app_with_its_name_and_the_whole_body(
    client: TestClient, tokens: dict[str, str]
) -> None:
    body = b'{"records": [' + b" " * 5_000 + b"]}"
    response = client.post("/predict", content=body, headers=bearer(tokens["predict"]))
    assert response.status_code == 200
    assert response.json() == {"caller": "predictor", "read": len(body)}


def test_probes_metrics_and_the_api_description_are_open(client: TestClient, app: StandIn) -> None:
    for path in ("/healthz", "/readyz", "/livez", "/metrics", "/", "/docs.json"):
        assert client.get(path).status_code == 200, path
    assert app.calls == 6


def test_the_api_description_says_which_routes_need_a_token(client: TestClient) -> None:
    document = client.get("/docs.json").json()
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    predict = document["paths"]["/predict"]["post"]
    assert predict["security"] == [{"bearerAuth": []}] and "`predict`" in predict["description"]
    assert "security" not in document["paths"]["/healthz"]["get"]


@pytest.mark.parametrize(
    ("headers", "challenge"),
    [
        ({}, "Bearer"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "Bearer"),
        ({"Authorization": "Bearer mls_not-a-token"}, 'Bearer error="invalid_token"'),
    ],
)
def test_no_or_an_unknown_token_gets_401_before_the_app_runs(
    client: TestClient, app: StandIn, headers: dict[str, str], challenge: str
) -> None:
    for path in ("/predict", "/feedback", "/no-such-path"):
        response = client.post(path, json={}, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == challenge
        assert set(response.json()) == {"error", "error_id"}
    assert app.calls == 0


def test_a_token_without_the_scope_gets_403_naming_it(
    client: TestClient, app: StandIn, tokens: dict[str, str]
) -> None:
    for path, scope in (("/explain", "explain"), ("/feedback", "feedback"),
                        ("/predict_simulated", "simulate")):  # fmt: skip
        response = client.post(path, json={}, headers=bearer(tokens["predict"]))
        assert response.status_code == 403, path
        assert f"'{scope}'" in response.json()["error"]
    assert app.calls == 0


def test_a_body_over_the_limit_gets_413_with_or_without_content_length(
    client: TestClient, app: StandIn, tokens: dict[str, str]
) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding chunked
        for _ in range(20):
            yield b" " * 1_000

    declared = client.post("/predict", content=b" " * (LIMIT + 1), headers=bearer(tokens["all"]))
    chunked = client.post("/predict", content=chunks(), headers=bearer(tokens["all"]))

    assert "content-length" not in {name.lower() for name in chunked.request.headers}
    for response in (declared, chunked):
        assert response.status_code == 413
        assert str(LIMIT) in response.json()["error"] and response.json()["error_id"]
    assert app.calls == 0


def test_an_endless_body_is_read_only_up_to_the_limit(app: StandIn, tokens: dict[str, str]) -> None:
    verifier = TokenVerifier()
    verifier.load(Path(tokens["_file"]))
    received, sent = 0, list[MutableMapping[str, Any]]()

    async def receive() -> dict[str, Any]:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": b" " * 1_000, "more_body": True}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    authorization = f"Bearer {tokens['all']}".encode()
    scope = {"type": "http", "method": "POST", "path": "/predict",
             "headers": [(b"authorization", authorization)]}  # fmt: skip
    asyncio.run(Guard(app, verifier, LIMIT)(scope, receive, send))

    assert sent[0]["status"] == 413
    assert received == LIMIT // 1_000 + 1
    assert app.calls == 0


def test_a_body_that_is_not_json_gets_415(
    client: TestClient, app: StandIn, tokens: dict[str, str]
) -> None:
    response = client.post(
        "/predict", content=b"a=1", headers={**bearer(tokens["all"]), "Content-Type": "text/csv"}
    )
    assert response.status_code == 415 and "application/json" in response.json()["error"]
    assert app.calls == 0


def test_an_error_from_the_app_gets_advice_and_an_id_not_its_text(
    client: TestClient, tokens: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="bentoml"):
        response = client.post("/explain", json={}, headers=bearer(tokens["all"]))

    assert response.status_code == 500
    answer = response.json()
    assert set(answer) == {"error", "error_id"} and "retry" in answer["error"]
    assert "db.internal" not in response.text
    assert response.headers["x-kept"] == "yes"
    assert int(response.headers["content-length"]) == len(response.content)
    logged = [r.getMessage() for r in caplog.records if answer["error_id"] in r.getMessage()]
    assert logged and "db.internal:5432" in logged[0]  # the detail stays on the server


def test_the_derived_limit_takes_a_full_request_of_the_longest_values(
    schema: Schema, params: Params
) -> None:
    """max_records records, every category at its longest and every number at its widest,
    indented: under the limit. Ten times that: over it."""
    record: dict[str, Any] = {}
    for column in schema.columns:
        if column.type == "category":
            record[column.name] = max(column.categories, key=len)
        else:
            record[column.name] = -1.2345678901234567e-300
    records = params.serving.max_records
    full = json.dumps({"records": [record] * records}, indent=4).encode()
    limit = derived_body_limit(schema, records)
    assert len(full) < limit < 10 * len(full)
