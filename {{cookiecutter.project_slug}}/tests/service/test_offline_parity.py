"""What the service answers is what the pipeline evaluated: the same model, the same features,
the same probabilities, record for record on the test split."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.bundle import load_bundle
from {{ cookiecutter.package_name }}.config import Paths
from {{ cookiecutter.package_name }}.io import file_sha256, read_json
from {{ cookiecutter.package_name }}.serving.store import BUNDLE_FILE

from .conftest import PROJECT_ROOT, as_records

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
    offline = bundle.outputs(features)
    size = service.SETTINGS.max_records
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
    expected = [bundle.label(decision) for decision in bundle.decide(offline)]
    assert [answer["label"] for answer in served] == expected
    # and the served labels make the mistakes evaluate reported for the test split
    decided = np.array([str(a["label"]) == str(bundle.positive_label) for a in served])
    actual = bundle.is_positive(test_split[bundle.target]).to_numpy().astype(bool)
    reported = read_json(PROJECT_ROOT / Paths.metrics)["model"]
    assert int((decided & ~actual).sum()) == reported["false_positives"]
    assert int((~decided & actual).sum()) == reported["false_negatives"]
