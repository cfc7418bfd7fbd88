"""The API contract: valid batches get one answer per record; every kind of bad request gets a
4xx that names what is wrong, never a 5xx. Cases are built from the schema, so they hold for
any dataset the project is pointed at."""

from __future__ import annotations

import json
import uuid
from types import ModuleType
from typing import Any

import pandas as pd
import pytest

from .conftest import a_true_label, as_records, assert_same_answers, expected_answers

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
    [expected] = expected_answers(bundle, test_split.head(1))  # valid_record's row
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
