"""What the service answers is what the pipeline evaluated: the same model, the same features,
the same probabilities, record for record on the test split."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.config import Paths
from {{ cookiecutter.package_name }}.io import file_sha256
from {{ cookiecutter.package_name }}.serving.store import MODEL_FILE

from .conftest import PROJECT_ROOT, as_records

pytestmark = pytest.mark.service


def test_served_model_is_the_trained_model(service: ModuleType) -> None:
    served = file_sha256(service.MODEL.stored.path_of(MODEL_FILE))
    assert served == file_sha256(PROJECT_ROOT / Paths.model), (
        "the registered model differs from models/model.joblib: run `make pipeline`"
    )


def test_served_predictions_equal_offline_predictions(
    client: Any, service: ModuleType, test_split: pd.DataFrame
) -> None:
    features = test_split[service.SCHEMA.feature_names]
    offline = joblib.load(PROJECT_ROOT / Paths.model).predict_proba(features)[:, 1]
    size = service.PARAMS.serving.max_records
    served: list[dict[str, Any]] = []
    for start in range(0, len(features), size):
        response = client.post(
            "/predict", json={"records": as_records(features.iloc[start : start + size])}
        )
        assert response.status_code == 200, response.text
        served += response.json()

    assert len(served) == len(offline)
    np.testing.assert_allclose(
        [answer["probability"] for answer in served], offline, rtol=0, atol=1e-12
    )
    target = service.TARGET
    expected = [target["positive_label"] if p >= 0.5 else target["negative_label"] for p in offline]
    assert [answer["label"] for answer in served] == expected
