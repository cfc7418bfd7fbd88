"""Every prediction and every feedback label reaches the prediction log (a scratch directory
here, through the PREDICTION_LOG override), in the layout monitoring reads."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.serving.prediction_log import PredictionSink

pytestmark = pytest.mark.service


def eventually(
    read: Callable[[], pd.DataFrame], ids: set[str], timeout: float = 15.0
) -> pd.DataFrame:
    """The log is written by a background thread: poll until the ids show up, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        table = read()
        if ids <= set(table["prediction_id"]):
            return table[table["prediction_id"].isin(ids)]
        if time.monotonic() > deadline:
            pytest.fail(f"{len(ids - set(table['prediction_id']))} record(s) never reached the log")
        time.sleep(0.1)


def test_predictions_are_logged(
    client: Any, service: ModuleType, log_sink: PredictionSink, valid_record: dict
) -> None:
    answers = client.post("/predict", json={"records": [valid_record, valid_record]}).json()
    ids = {answer["prediction_id"] for answer in answers}

    logged = eventually(log_sink.read_predictions, ids)

    assert len(logged) == 2
    assert set(service.SCHEMA.feature_names) <= set(logged.columns)
    row = logged.iloc[0]
    for name in service.SCHEMA.feature_names:
        value = valid_record[name]
        assert (pd.isna(row[name]) and value is None) or row[name] == value, name
    by_id = {answer["prediction_id"]: answer for answer in answers}
    for _, entry in logged.iterrows():
        answer = by_id[entry["prediction_id"]]
        assert entry["label"] == str(answer["label"])
        assert entry["probability"] == pytest.approx(answer["probability"])
        assert entry["model_version"] == answer["model_version"]
    assert str(logged["timestamp"].dt.tz) == "UTC"


def test_feedback_is_logged(
    client: Any, service: ModuleType, log_sink: PredictionSink, valid_record: dict
) -> None:
    prediction_id = client.post("/predict", json={"records": [valid_record]}).json()[0][
        "prediction_id"
    ]
    label = service.TARGET["positive_label"]
    assert (
        client.post("/feedback", json={"prediction_id": prediction_id, "label": label}).status_code
        == 200
    )

    feedback = eventually(log_sink.read_feedback, {prediction_id})

    assert feedback["label"].tolist() == [str(label)]
