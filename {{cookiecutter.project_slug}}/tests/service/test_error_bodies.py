"""No error body tells a client about the service's insides. Every 4xx/5xx answer a client of
this session received (the conftest keeps them: the in-process client, the real servers'
clients and load generators, the fuzzer) is read for a host, a port, a filesystem path, or an
exception's name or traceback: those go to the server's log under the error's id, never to the
client. Text the request itself sent may come back (a refused value, named). The check runs
last (the conftest orders it) and first asks for a few errors of its own, so it reads
something when run alone."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    ERROR_BODIES,
    PROJECT_ROOT,
    ErrorBody,
    a_true_label,
    authorized,
)

pytestmark = pytest.mark.service

DATABASE_SCHEMES = r"(?:postgres(?:ql)?|mysql|mariadb|sqlite|mssql|oracle|redis)(?:\+\w+)?://"
IP_ADDRESS = r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b|\[::1?\]"
INTERNALS = {
    "a host": re.compile(rf"\blocalhost\b|{IP_ADDRESS}|\b{DATABASE_SCHEMES}", re.IGNORECASE),
    "a port": re.compile(r"\bport \d{2,5}\b|[\w\]]:\d{2,5}\b", re.IGNORECASE),
    "a path": re.compile(
        r"/(?:tmp|work|home|root|var|usr|opt|proc|dev|etc|srv|mnt|app)/|site-packages"
        r"|\.(?:jsonl|py|db|sqlite3?|parquet|joblib)\b"
    ),
    "an exception": re.compile(
        r"Traceback \(most recent call last\)|\bFile \"|\[Errno \d+\]"
        r"|\b[A-Z][A-Za-z]*(?:Error|Exception|Refused|Unavailable)\b"
        r"|\b(?:sqlalchemy|psycopg\d?|asyncpg|pydantic_core)\b"
    ),
}
CLOCK_TIME = re.compile(r"\b\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\b")  # not a port


def internals(error: ErrorBody, project: Path = PROJECT_ROOT) -> list[str]:
    """What `error`'s body names of the server's insides, each as `kind: "text"`; what the
    request itself sent is left out."""
    body = error.body.replace(str(project), " <project> ")
    found = [f'a path: "{project}"'] if "<project>" in body else []
    for kind, pattern in INTERNALS.items():
        text = CLOCK_TIME.sub(" ", body) if kind == "a port" else body
        for match in pattern.finditer(text):
            if match.group() not in error.sent:
                found.append(f'{kind}: "{match.group()}"')
    return found


def test_the_reader_finds_each_kind_of_internal() -> None:
    """It can fail: a 503 that names the database's address, the spool's path and the
    exception (what the log's refusal said before issue 28) is caught on each count."""
    leaky = ErrorBody(
        "POST http://127.0.0.1:3000/predict",
        '{"records": []}',
        503,
        '{"error": "cannot record: OperationalError: connection to server at \\"db.internal\\"'
        " (10.0.0.5), port 5432 failed; postgresql://app@db.internal:5432/log; the spool"
        f' {PROJECT_ROOT}/logs/spool/spool-1.jsonl: [Errno 28] No space left on device"}}',
    )
    kinds = {finding.split(":")[0] for finding in internals(leaky)}
    assert kinds == set(INTERNALS), internals(leaky)
    assert 'a host: "10.0.0.5"' in internals(leaky)
    assert f'a path: "{PROJECT_ROOT}"' in internals(leaky)
    echoed = ErrorBody(
        "POST http://127.0.0.1:3000/predict",
        '{"records": [{"purpose": "localhost:8080/tmp/x.py"}]}',
        400,
        '{"error": "purpose: \'localhost:8080/tmp/x.py\' is not a category; retry after 10:30"'
        ', "error_id": "5f0c"}',
    )
    assert internals(echoed) == []


def test_no_error_body_names_internals(client: Any, service: Any, valid_record: dict) -> None:
    body = {"records": [valid_record]}
    # errors of its own: no token, an unknown token, a token without the scope, a bad field,
    # too many records, feedback for a prediction never made
    anonymous = client.build_request("POST", "/predict", json=body)
    del anonymous.headers["Authorization"]
    client.send(anonymous)
    client.post("/predict", json=body, headers={"Authorization": "Bearer not-a-known-token"})
    client.post("/predict", json=body, headers=authorized("only-feedback"))
    client.post("/predict", json={"records": [{**valid_record, "not_a_feature": 1}]})
    client.post("/predict", json={"records": [valid_record] * (service.SETTINGS.max_records + 1)})
    unknown = {"prediction_id": str(uuid.uuid4()), "label": a_true_label(service.BUNDLE)}
    client.post("/feedback", json=unknown)
    assert ERROR_BODIES, "no client of the session received an error"

    found = [
        f"{error.status} {error.request}: {finding}\n  {error.body[:300]}"
        for error in ERROR_BODIES
        for finding in internals(error)
    ]

    assert not found, "\n".join(found[:20])
