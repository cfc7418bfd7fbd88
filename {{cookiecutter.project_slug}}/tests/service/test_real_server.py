"""The service under a real `bentoml serve` on loopback: readiness, a prediction, Prometheus
metrics (which only a real server exposes), the deploy's smoke test (as the deploy workflow
runs it against staging, for this project's task), and schemathesis fuzzing /predict,
/feedback and /explain from the service's own OpenAPI document, each request with the tests'
token. The server's whole process tree is always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
)

from {{ cookiecutter.package_name }}.deploy import smoke
from {{ cookiecutter.package_name }}.serving.prediction_log import ENV_VAR

from .conftest import (
    CALLER,
    authorized,
    counted_label,
    keep_error_body,
    output_histograms,
    serving,
    session_tokens,
)

pytestmark = pytest.mark.service

SERVER_LOG = "bentoml-serve.log"


@pytest.fixture(scope="module")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="module")
def server(service: ModuleType, server_dir: Path) -> Iterator[str]:
    env = {ENV_VAR: str(server_dir / "predictions")}
    with serving(server_dir / SERVER_LOG, env) as url:
        yield url


def test_ready_predicts_and_exposes_metrics(
    server: str, valid_record: dict, service: ModuleType, http: httpx.Client
) -> None:
    assert http.get(f"{server}/readyz").status_code == 200
    response = http.post(f"{server}/predict", json={"records": [valid_record]})
    assert response.status_code == 200, response.text

    metrics = http.get(f"{server}/metrics")

    assert metrics.status_code == 200
    assert "bentoml_service_request_total" in metrics.text
    # the model's decisions, by version and label: what a canary's analysis compares
    [answer] = response.json()
    version = f'model_version="{answer["model_version"]}"'
    label = counted_label(service.BUNDLE, answer["label"])
    decided = "predictions_total{" + f'label="{label}",{version}' + "}"
    assert decided in metrics.text, metrics.text[-2000:]
    for histogram in output_histograms(service.BUNDLE):
        assert histogram + "_count{" + version + "}" in metrics.text, histogram


def test_the_deploy_smoke_test_passes_the_served_project(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m <package> smoke URL`'s check, with this project's task and model: the offline
    answer it expects is the bundle's for the first test-split record."""
    monkeypatch.setenv("API_TOKEN", session_tokens().secrets[CALLER])
    offline = smoke.offline_answer()
    assert offline["answer"]["label"] is not None and offline["record"]

    assert smoke.run(server, wait=30).startswith(f"{server}: ready, no token refused")
    wrong = {**offline, "answer": {**offline["answer"], "label": "no such label"}}
    [found, hint] = smoke.failures(server, wrong, session_tokens().secrets[CALLER], wait=0)
    assert "label" in found and "'no such label' offline" in found, found
    assert "is the image of this commit's model?" in hint


def test_the_service_says_which_inference_path_it_uses(server: str, server_dir: Path) -> None:
    log = (server_dir / SERVER_LOG).read_text()
    assert "scoring with the fast path" in log, log[-3000:]


# ---------------------------------------------------------------------------------------------
# Fuzzing: no 5xx, schema-violating bodies refused (4xx), schema-valid ones accepted, responses
# as documented. schemathesis's examples, coverage (boundaries, wrong types such as a JSON
# `false` for an integer) and fuzzing phases run for each operation.

FUZZED_ROUTES = ("/predict", "/predict_simulated", "/feedback", "/explain")
FUZZ_CHECKS = [
    not_a_server_error,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
]


def served_openapi(url: str, http: httpx.Client) -> dict[str, Any]:
    """The service's /docs.json with two inaccuracies of BentoML 1.4's generator corrected: it
    omits `requestBody.required` (so an empty body would count as valid), and documents a
    400's `detail` as a string where pydantic's error list arrives."""
    document = http.get(f"{url}/docs.json").json()
    for route in FUZZED_ROUTES:
        document["paths"][route]["post"]["requestBody"]["required"] = True
    document["components"]["schemas"]["InvalidArgument"]["properties"]["detail"] = {}
    return document


@pytest.fixture(scope="module")
def api_schema(server: str, http: httpx.Client) -> Any:
    schema = schemathesis.openapi.from_dict(served_openapi(server, http))
    schema.config.update(base_url=server)
    return schema.include(path_regex=f"^({'|'.join(FUZZED_ROUTES)})$")


@pytest.fixture(autouse=True)
def _schemathesis_node_id(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32 reads Node._nodeid, which pytest 9.2 no longer sets
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


def keep_error(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """requests' response hook: keep a 4xx/5xx answer, as the conftest's clients do."""
    request = response.request
    sent = request.body if isinstance(request.body, bytes | str) else None
    keep_error_body(
        str(request.method), str(request.url), sent, response.status_code, response.text
    )


@pytest.fixture(scope="module")
def fuzzing_session() -> Iterator[requests.Session]:
    """schemathesis' HTTP session: the tests' token on every request, every error kept."""
    with requests.Session() as session:
        session.headers.update(authorized())
        session.hooks["response"].append(keep_error)
        yield session


fuzzed = schemathesis.pytest.from_fixture("api_schema")


@fuzzed.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_get_no_server_error_and_bad_data_is_refused(
    case: Any, fuzzing_session: requests.Session
) -> None:
    case.call_and_validate(checks=FUZZ_CHECKS, session=fuzzing_session, timeout=30)
