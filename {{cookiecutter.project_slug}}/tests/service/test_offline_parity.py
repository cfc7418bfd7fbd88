"""What the service answers is what the pipeline evaluated: the same model, the same features,
the same outputs and decisions, record for record on the test split."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.bundle import load_bundle
from {{ cookiecutter.package_name }}.config import Paths
from {{ cookiecutter.package_name }}.io import file_sha256, read_json
from {{ cookiecutter.package_name }}.serving.store import BUNDLE_FILE

from .conftest import PROJECT_ROOT, as_records, assert_same_answers

pytestmark = pytest.mark.service


def test_served_model_is_the_trained_model(service: ModuleType) -> None:
    served = file_sha256(service.MODEL.stored.path_of(BUNDLE_FILE))
    assert served == file_sha256(PROJECT_ROOT / Paths.model), (
        "the registered model differs from models/model.joblib: run `make pipeline`"
    )


def test_served_predictions_equal_offline_predictions(
    client: Any, service: ModuleType, test_split: pd.DataFrame
) -> None:
    features = test_split[service.SCHEMA.feature_names]
    bundle = load_bundle(PROJECT_ROOT / Paths.model)
    size = service.SETTINGS.max_records
    served: list[dict[str, Any]] = []
    for start in range(0, len(features), size):
        response = client.post(
            "/predict", json={"records": as_records(features.iloc[start : start + size])}
        )
        assert response.status_code == 200, response.text
        served += response.json()

    assert_same_answers(served, bundle.answers(features))
    # and the served labels make the mistakes evaluate reported for the test split
    decided = bundle.encode(pd.Series([answer["label"] for answer in served]))
    cost = bundle.task.cost_of(bundle.encode(test_split[bundle.target]), decided)
    assert cost == pytest.approx(read_json(PROJECT_ROOT / Paths.metrics)["model"]["cost"])
