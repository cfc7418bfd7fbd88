"""/explain: each record's decision as /predict makes it, with every model input's contribution,
adding up to the output explained; and /predict never imports shap (the explanations' library
loads when /explain is first called). test_api_contract refuses bad requests to /explain as to
/predict, with its own limit on records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.serving.prediction_log import ENV_VAR

from .conftest import PROJECT_ROOT, as_records, authorized

pytestmark = pytest.mark.service


def test_each_record_is_explained_as_predict_decides_it(
    client: Any, service: ModuleType, test_split: pd.DataFrame
) -> None:
    rows = test_split.head(service.SETTINGS.max_explain_records)
    response = client.post(
        "/explain", json={"records": as_records(rows[service.SCHEMA.feature_names])}
    )

    assert response.status_code == 200, response.text
    bundle = service.BUNDLE
    for answer, offline in zip(response.json(), bundle.answers(rows), strict=True):
        assert answer["label"] == offline["label"]
        assert answer["model_version"] == str(service.MODEL.stored.tag)
        contributions = answer["contributions"]
        assert sorted(contributions) == sorted(bundle.features)  # one per input, one-hots summed
        sizes = [abs(value) for value in contributions.values()]
        assert sizes == sorted(sizes, reverse=True)  # the largest first
        total = answer["base"] + sum(contributions.values())
        assert total == pytest.approx(answer["output"], abs=1e-9)
        # what the output is, against what /predict answers for the record
        if answer["scale"] == "estimate":  # the decision adds its offset to the estimate
            assert answer["label"] - answer["output"] == pytest.approx(
                float(bundle.decision.value), abs=1e-6
            )
        elif "probability" in offline:  # binary: toward the positive class
            probability = offline["probability"]
            if answer["scale"] == "log_odds":
                probability = np.log(probability / (1 - probability))
            assert answer["output"] == pytest.approx(probability, abs=1e-6)
        else:  # multiclass: toward the class decided
            assert str(answer["label"]) in answer["explains"]
            if answer["scale"] == "probability":
                own = offline["probabilities"][str(answer["label"])]
                assert answer["output"] == pytest.approx(own, abs=1e-6)


def test_predict_never_imports_shap(
    service: ModuleType, test_split: pd.DataFrame, tmp_path: Path
) -> None:
    """In a fresh interpreter, as a worker starts: the service answers /predict with neither
    shap nor numba loaded; the first /explain loads them."""
    record = as_records(test_split.head(1)[service.SCHEMA.feature_names])
    script = textwrap.dedent(
        """
        import json, sys
        from starlette.testclient import TestClient
        import {{ cookiecutter.package_name }}.serving.service as service

        body = dict(records=json.loads(sys.argv[1]))
        loaded = lambda: sorted(set(m.split(".")[0] for m in sys.modules) & set(["shap", "numba"]))
        with TestClient(service.ModelService.to_asgi(), headers=json.loads(sys.argv[2])) as client:
            assert client.post("/predict", json=body).status_code == 200
            after_predict = loaded()
            assert client.post("/explain", json=body).status_code == 200
        print(json.dumps([after_predict, loaded()]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(record), json.dumps(authorized())],
        cwd=PROJECT_ROOT,
        env={**os.environ, ENV_VAR: str(tmp_path / "log")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    after_predict, after_explain = json.loads(done.stdout.strip().splitlines()[-1])
    assert after_predict == []
    assert after_explain == ["numba", "shap"]
