"""Every prediction and every feedback label is in the prediction log (a scratch directory here,
through the PREDICTION_LOG override), in the layout monitoring reads, with the name of the token
that asked or labelled, by the time its request is answered: a 2xx means the record is durable,
so these tests read the log right after it. (A log written after the answer would usually win
that race too: what proves the guarantee is test_durability.py, against a real server, a
database outage and a crash.)"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.privacy import LogPolicy
from {{ cookiecutter.package_name }}.serving.prediction_log import PredictionSink, join_feedback

from .conftest import CALLER, a_true_label

pytestmark = pytest.mark.service


def logged(read: Callable[[], pd.DataFrame], ids: set[str]) -> pd.DataFrame:
    """The log's rows with these ids; all of them must be there already."""
    table = read()
    missing = ids - set(table["prediction_id"])
    assert not missing, f"{len(missing)} answered record(s) are not in the log"
    return table[table["prediction_id"].isin(ids)]


def test_predictions_are_logged(
    client: Any, service: ModuleType, log_sink: PredictionSink, valid_record: dict
) -> None:
    answers = client.post("/predict", json={"records": [valid_record, valid_record]}).json()
    ids = {answer["prediction_id"] for answer in answers}

    rows = logged(log_sink.read_predictions, ids)

    assert len(rows) == 2
    assert set(service.SCHEMA.feature_names) <= set(rows.columns)
    row = rows.iloc[0]
    policy = LogPolicy.load(service.SCHEMA)  # the service's key (LOG_KEY_FILE, as deployed)
    kept = policy.apply(valid_record)  # what schema.yaml's `log:` keeps of the request
    for name in service.SCHEMA.feature_names:
        if name in policy.dropped:
            assert name not in rows.columns or rows[name].isna().all(), name
            continue
        value = kept[name]
        assert (pd.isna(row[name]) and value is None) or row[name] == value, name
        if name in policy.pseudonymised and valid_record[name] is not None:
            assert row[name] != valid_record[name], name  # never the raw value
    by_id = {answer["prediction_id"]: answer for answer in answers}
    for _, entry in rows.iterrows():
        answer = by_id[entry["prediction_id"]]
        assert entry["label"] == str(answer["label"])
        outputs = {name: entry[name] for name in service.BUNDLE.task.output_names()}
        for field, value in service.BUNDLE.task.response_values(outputs).items():
            assert value == pytest.approx(answer[field]), field  # what was answered
        assert entry["model_version"] == answer["model_version"]
        assert entry["caller"] == CALLER  # the name of the token that asked, never the token
    assert str(rows["timestamp"].dt.tz) == "UTC"


def test_feedback_is_logged(
    client: Any, service: ModuleType, log_sink: PredictionSink, valid_record: dict
) -> None:
    prediction_id = client.post("/predict", json={"records": [valid_record]}).json()[0][
        "prediction_id"
    ]
    label = a_true_label(service.BUNDLE)
    assert (
        client.post("/feedback", json={"prediction_id": prediction_id, "label": label}).status_code
        == 200
    )

    feedback = logged(log_sink.read_feedback, {prediction_id})

    assert feedback["label"].tolist() == [str(label)]
    assert feedback["labeller"].tolist() == [CALLER]


def test_feedback_for_an_unknown_prediction_or_a_second_label_is_refused(
    client: Any, service: ModuleType, log_sink: PredictionSink, valid_record: dict
) -> None:
    """A label for an id the log never recorded: 404; a second label for a prediction: 409.
    Neither is recorded: a flood of made-up or repeated labels cannot reach monitoring."""
    known = client.post("/predict", json={"records": [valid_record]}).json()[0]["prediction_id"]
    unknown = str(uuid.uuid4())
    label = a_true_label(service.BUNDLE)
    first = client.post("/feedback", json={"prediction_id": known, "label": label})
    assert first.status_code == 200, first.text
    for prediction_id, status in ((unknown, 404), (known, 409)):
        response = client.post("/feedback", json={"prediction_id": prediction_id, "label": label})
        assert response.status_code == status, response.text

    feedback = log_sink.read_feedback()
    assert feedback["prediction_id"].tolist().count(known) == 1
    assert unknown not in set(feedback["prediction_id"])
    predictions = logged(log_sink.read_predictions, {known})
    joined, unmatched = join_feedback(predictions, feedback[feedback["prediction_id"] == known])
    assert unmatched == 0
    assert joined.set_index("prediction_id").loc[known, "true_label"] == str(label)
