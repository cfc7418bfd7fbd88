"""The API contract: valid batches get one answer per record; every kind of bad request gets a
4xx that names what is wrong, never a 5xx. Cases are built from the schema, so they hold for
any dataset the project is pointed at.

Who may ask: every API needs a token with its route's scope (401 without one, 403 without the
scope), the probes, /metrics and the API's description need none; a body over the limit is
refused (413) with or without Content-Length; every error body says what to do and carries an
error id; /explain logs the decision it answers and the log records who asked and who
labelled."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from types import ModuleType
from typing import Any

import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.serving import prediction_log
from {{ cookiecutter.package_name }}.serving.prediction_log import PredictionSink

from .conftest import (
    CALLER,
    a_true_label,
    as_records,
    assert_same_answers,
    authorized,
    keep_httpx_error,
)

pytestmark = pytest.mark.service


def predict(client: Any, body: Any) -> Any:
    return client.post("/predict", json=body)


def test_valid_batch_gets_one_prediction_per_record(
    client: Any, service: ModuleType, valid_record: dict, test_split: pd.DataFrame
) -> None:
    response = predict(client, {"records": [valid_record, valid_record]})

    assert response.status_code == 200, response.text
    answers = response.json()
    assert len(answers) == 2
    bundle = service.BUNDLE
    [expected] = bundle.answers(test_split.head(1))  # valid_record's row
    for answer in answers:
        assert set(answer) == {"prediction_id", "model_version", *expected}
        assert uuid.UUID(answer["prediction_id"]).version == 4
        assert answer["model_version"] == str(service.MODEL.stored.tag)
    assert_same_answers(answers, [expected, expected])
    assert answers[0]["prediction_id"] != answers[1]["prediction_id"]


def test_a_full_batch_is_accepted(client: Any, service: ModuleType, valid_record: dict) -> None:
    limit = service.SETTINGS.max_records
    response = predict(client, {"records": [valid_record] * limit})
    assert response.status_code == 200, response.text
    assert len(response.json()) == limit


def test_nullable_fields_may_be_null_or_left_out(
    client: Any, service: ModuleType, valid_record: dict
) -> None:
    nullable = [column.name for column in service.SCHEMA.columns if column.nullable]
    if not nullable:
        pytest.skip("the schema has no nullable column")
    as_null = {**valid_record, **dict.fromkeys(nullable)}
    left_out = {name: value for name, value in valid_record.items() if name not in nullable}
    response = predict(client, {"records": [as_null, left_out]})
    assert response.status_code == 200, response.text


def invalid_cases(
    service: ModuleType, record: dict[str, Any], limit: int
) -> dict[str, tuple[dict[str, Any], str]]:
    """name -> (request keyword arguments for client.post, text the error must contain), for a
    route that takes at most `limit` records."""
    schema = service.SCHEMA
    numeric = [column for column in schema.columns if column.type != "category"]
    categorical = [column for column in schema.columns if column.type == "category"]
    required = next(
        column.name
        for column in schema.columns
        if not column.nullable and column.name in service.BUNDLE.features
    )
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "missing field": (
            {"json": {"records": [{k: v for k, v in record.items() if k != required}]}},
            required,
        ),
        "extra unknown field": (
            {"json": {"records": [{**record, "not_a_feature": 1}]}},
            "not_a_feature",
        ),
        "extra top-level key": ({"json": {"records": [record], "threshold": 0.1}}, "threshold"),
        "empty list": ({"json": {"records": []}}, "records"),
        "too many rows": ({"json": {"records": [record] * (limit + 1)}}, "records"),
        "records not a list": ({"json": {"records": record}}, "records"),
        "no records key": ({"json": {}}, "records"),
        "body not an object": ({"json": [record]}, "object"),
        "malformed JSON": (
            {"content": b'{"records": [', "headers": {"content-type": "application/json"}},
            "JSON",
        ),
        "wrong content type": (
            {
                "content": json.dumps({"records": [record]}),
                "headers": {"content-type": "text/plain"},
            },
            "Content-Type",
        ),
        "form instead of JSON": ({"data": {"records": "x"}}, "Content-Type"),
    }
    if numeric:
        column = numeric[0]
        cases["wrong type"] = (
            {"json": {"records": [{**record, column.name: "not a number"}]}},
            column.name,
        )
        # JSON has booleans and strings of digits; neither is a number here
        cases["boolean as a number"] = (
            {"json": {"records": [{**record, column.name: False}]}},
            column.name,
        )
        cases["number in a string"] = (
            {"json": {"records": [{**record, column.name: "2"}]}},
            column.name,
        )
    if categorical:
        column = categorical[0]
        cases["unknown category"] = (
            {"json": {"records": [{**record, column.name: "surely-not-a-category"}]}},
            column.name,
        )
    bounded = next(
        (column for column in numeric if column.max is not None or column.min is not None), None
    )
    if bounded is not None:
        value = bounded.max + 1 if bounded.max is not None else bounded.min - 1
        cases["out of range"] = (
            {"json": {"records": [{**record, bounded.name: value}]}},
            bounded.name,
        )
    return cases


CASE_NAMES = [
    "missing field",
    "wrong type",
    "boolean as a number",
    "number in a string",
    "unknown category",
    "out of range",
    "empty list",
    "too many rows",
    "malformed JSON",
    "wrong content type",
    "extra unknown field",
    "extra top-level key",
    "records not a list",
    "no records key",
    "body not an object",
    "form instead of JSON",
]


@pytest.mark.parametrize("route", ["/predict", "/explain"])
@pytest.mark.parametrize("case", CASE_NAMES)
def test_invalid_request_is_refused_with_the_field_named(
    client: Any, service: ModuleType, valid_record: dict, case: str, route: str
) -> None:
    settings = service.SETTINGS
    limit = settings.max_records if route == "/predict" else settings.max_explain_records
    cases = invalid_cases(service, valid_record, limit)
    if case not in cases:
        pytest.skip(f"the schema has no column this case applies to ({case})")
    request, named = cases[case]

    response = client.post(route, **request)

    assert 400 <= response.status_code < 500, f"{case}: {response.status_code} {response.text}"
    assert named in response.text, f"{case}: {named!r} not in {response.text}"


def test_second_record_errors_point_at_that_record(
    client: Any, service: ModuleType, valid_record: dict
) -> None:
    name = next(
        column.name
        for column in service.SCHEMA.columns
        if not column.nullable and column.name in service.BUNDLE.features
    )
    broken = {k: v for k, v in valid_record.items() if k != name}
    response = predict(client, {"records": [valid_record, broken]})
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == ["records", 1, name]


def test_feedback_is_accepted_for_a_prediction(
    client: Any, service: ModuleType, valid_record: dict
) -> None:
    prediction_id = predict(client, {"records": [valid_record]}).json()[0]["prediction_id"]
    label = a_true_label(service.BUNDLE)
    response = client.post("/feedback", json={"prediction_id": prediction_id, "label": label})
    assert response.status_code == 200, response.text
    assert response.json() == {"prediction_id": prediction_id, "label": label, "recorded": True}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"prediction_id": "not-a-uuid", "label": None}, "prediction_id"),
        ({"prediction_id": str(uuid.uuid4()), "label": "surely-not-a-label"}, "label"),
        ({"prediction_id": str(uuid.uuid4()), "label": False}, "label"),
        ({"prediction_id": str(uuid.uuid4()), "label": True}, "label"),
        ({"label": None}, "prediction_id"),
        ({"prediction_id": str(uuid.uuid4()), "label": None, "extra": 1}, "extra"),
    ],
)
def test_invalid_feedback_is_refused(
    client: Any, service: ModuleType, body: dict, named: str
) -> None:
    if "label" in body and body["label"] is None:
        body = {**body, "label": a_true_label(service.BUNDLE)}
    response = client.post("/feedback", json=body)
    assert 400 <= response.status_code < 500, response.text
    assert named in response.text


def test_measured_only_attributes_may_be_sent_and_never_change_the_answer(
    client: Any, service: ModuleType, test_split: Any
) -> None:
    measured = service.BUNDLE.measured_only
    if not measured:
        pytest.skip("every attribute is a model input (data.not_model_inputs is empty)")
    records = as_records(test_split[service.SCHEMA.feature_names].head(20))
    variants = [records, [{k: v for k, v in r.items() if k not in measured} for r in records]]
    for name in measured:
        column = service.SCHEMA.column(name)
        if column.type == "category":
            for category in column.categories:
                variants.append([{**record, name: category} for record in records])
    answers = []
    for variant in variants:
        response = predict(client, {"records": variant})
        assert response.status_code == 200, response.text
        answered = response.json()
        answers.append([{k: v for k, v in a.items() if k != "prediction_id"} for a in answered])
    assert all(answer == answers[0] for answer in answers)


def test_health_and_readiness(client: Any) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


# ---------------------------------------------------------------------------------------------
# Callers, limits and error bodies

SCOPE_OF_ROUTE = {
    "/predict": "predict",
    "/predict_simulated": "simulate",
    "/explain": "explain",
    "/feedback": "feedback",
}
ERROR_ID = re.compile(r"[0-9a-f]{16}")


@pytest.fixture(scope="module")
def anonymous(client: Any) -> Any:
    """A client of the same running app that sends no token."""
    from starlette.testclient import TestClient

    bare = TestClient(client.app, raise_server_exceptions=False)
    bare.event_hooks = {"response": [keep_httpx_error]}
    return bare


def valid_body(route: str, record: dict[str, Any], client: Any, service: ModuleType) -> Any:
    if route != "/feedback":
        return {"records": [record]}
    prediction_id = predict(client, {"records": [record]}).json()[0]["prediction_id"]
    return {"prediction_id": prediction_id, "label": a_true_label(service.BUNDLE)}


def assert_error_body(response: Any, status: int) -> dict[str, Any]:
    """A JSON error answer with advice and an id; the body, for more checks."""
    assert response.status_code == status, response.text
    answer = response.json()
    assert isinstance(answer["error"], str) and answer["error"], answer
    assert ERROR_ID.fullmatch(answer["error_id"]), answer
    return answer


@pytest.mark.parametrize("route", SCOPE_OF_ROUTE)
def test_every_api_refuses_a_missing_or_unknown_token_with_401(
    anonymous: Any, client: Any, service: ModuleType, valid_record: dict, route: str
) -> None:
    body = valid_body(route, valid_record, client, service)

    missing = anonymous.post(route, json=body)
    unknown = anonymous.post(route, json=body, headers={"Authorization": "Bearer mls_forged"})

    assert_error_body(missing, 401)
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert_error_body(unknown, 401)
    assert unknown.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize("route", SCOPE_OF_ROUTE)
def test_every_api_needs_its_own_scope(
    client: Any, service: ModuleType, valid_record: dict, route: str
) -> None:
    needed = SCOPE_OF_ROUTE[route]
    body = valid_body(route, valid_record, client, service)
    for scope in SCOPE_OF_ROUTE.values():
        response = client.post(route, json=body, headers=authorized(f"only-{scope}"))
        if scope == needed:
            assert response.status_code == 200, response.text
        else:
            assert f"'{needed}'" in assert_error_body(response, 403)["error"]


def test_probes_and_the_api_description_need_no_token(anonymous: Any) -> None:
    """(/metrics answers on a real server only: test_real_server scrapes it with no token.)"""
    for path in ("/healthz", "/readyz", "/livez", "/docs.json", "/"):
        assert anonymous.get(path).status_code == 200, path


def oversized_records(service: ModuleType, record: dict[str, Any]) -> bytes:
    """A request body just over the service's limit (many records: a flood, not a typo)."""
    one = len(json.dumps(record)) + 2
    return json.dumps({"records": [record] * (service.MAX_BODY_BYTES // one + 1)}).encode()


def test_a_body_over_the_limit_is_refused_with_413_whether_or_not_its_size_is_declared(
    client: Any, service: ModuleType, valid_record: dict
) -> None:
    body = oversized_records(service, valid_record)

    def chunked() -> Iterator[bytes]:  # no Content-Length: the guard counts as it reads
        for start in range(0, len(body), 8_192):
            yield body[start : start + 8_192]

    declared = client.post("/predict", content=body)
    undeclared = client.post("/predict", content=chunked())

    assert "content-length" not in {name.lower() for name in undeclared.request.headers}
    for response in (declared, undeclared):
        assert str(service.MAX_BODY_BYTES) in assert_error_body(response, 413)["error"]


def test_every_error_body_says_what_to_do_and_carries_an_error_id(
    client: Any, anonymous: Any, service: ModuleType, valid_record: dict
) -> None:
    cases = invalid_cases(service, valid_record, service.SETTINGS.max_records)
    for name, (request, _) in cases.items():
        response = client.post("/predict", **request)
        assert_error_body(response, response.status_code)
        assert 400 <= response.status_code < 500, name
    assert_error_body(anonymous.post("/predict", json={}), 401)
    assert_error_body(client.post("/explain", json={}, headers=authorized("only-predict")), 403)
    assert_error_body(client.get("/no-such-route"), 404)
    assert_error_body(client.get("/predict"), 405)
    oversized = oversized_records(service, valid_record)
    assert_error_body(client.post("/predict", content=oversized), 413)
    wrong_field = next(iter(valid_record))
    invalid = client.post("/predict", json={"records": [{**valid_record, wrong_field: [1]}]})
    assert f"records[0].{wrong_field}" in assert_error_body(invalid, 400)["error"]


def failing(error: Exception) -> Any:
    """A log method whose receipt fails with `error`."""

    def log(self: Any, records: Any) -> Future[None]:
        receipt: Future[None] = Future()
        receipt.set_exception(error)
        return receipt

    return log


@pytest.mark.parametrize("route", ["/predict", "/explain", "/feedback"])
def test_a_request_the_log_cannot_take_gets_503_without_the_reason(
    client: Any,
    service: ModuleType,
    valid_record: dict,
    route: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = valid_body(route, valid_record, client, service)
    reason = prediction_log.LogUnavailable("db.internal:5432 refused; spool /var/spool full")
    for method in ("log_predictions", "log_feedback"):
        monkeypatch.setattr(prediction_log.PredictionLog, method, failing(reason))

    response = client.post(route, json=body)

    answer = assert_error_body(response, 503)
    assert "retry after" in answer["error"] and int(response.headers["Retry-After"]) >= 1
    assert "db.internal" not in response.text and "/var/spool" not in response.text


@pytest.mark.parametrize(
    ("refusal", "status"),
    [
        (prediction_log.UnknownPrediction("no prediction has this id"), 404),
        (prediction_log.AlreadyLabelled("this prediction has a label already"), 409),
    ],
)
def test_feedback_the_log_refuses_gets_404_or_409_saying_why(
    client: Any,
    service: ModuleType,
    valid_record: dict,
    refusal: Exception,
    status: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = valid_body("/feedback", valid_record, client, service)
    monkeypatch.setattr(prediction_log.PredictionLog, "log_feedback", failing(refusal))

    response = client.post("/feedback", json=body)

    assert assert_error_body(response, status)["error"] == str(refusal)


def test_the_log_records_who_asked_who_labelled_and_what_explain_answered(
    client: Any, service: ModuleType, log_sink: PredictionSink, valid_record: dict
) -> None:
    predicted = predict(client, {"records": [valid_record]}).json()[0]
    explained = client.post(
        "/explain", json={"records": [valid_record]}, headers=authorized("only-explain")
    ).json()[0]
    label = a_true_label(service.BUNDLE)
    labelled = client.post(
        "/feedback",
        json={"prediction_id": explained["prediction_id"], "label": label},
        headers=authorized("only-feedback"),
    )
    assert labelled.status_code == 200, labelled.text

    rows = log_sink.read_predictions().set_index("prediction_id")
    asked = rows.loc[predicted["prediction_id"]]
    assert (asked["caller"], bool(asked["explained"])) == (CALLER, False)
    answered = rows.loc[explained["prediction_id"]]
    assert (answered["caller"], bool(answered["explained"])) == ("only-explain", True)
    assert answered["label"] == str(explained["label"]) == str(predicted["label"])
    feedback = log_sink.read_feedback().set_index("prediction_id")
    assert feedback.loc[explained["prediction_id"], "labeller"] == "only-feedback"
