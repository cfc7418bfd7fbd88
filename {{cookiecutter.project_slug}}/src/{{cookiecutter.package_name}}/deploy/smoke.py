"""The `smoke URL` command: a deployed service, checked from outside as a client sees it:
`/readyz` answers 200, a request without a token is refused with 401, one record of the test
split gets the answer the model bundle gives offline (the image serves the model this commit
trained: the label, and the task's outputs: a probability, each class's probability, or the
number), and a malformed request is refused with a 4xx (not a 5xx, not an answer). Its token
(scope `predict`) comes from the `API_TOKEN` environment variable (the deploy workflow's
`SMOKE_API_TOKEN` secret). Every failure is reported, one line each."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Final

from {{ cookiecutter.package_name }}.bundle import load_bundle
from {{ cookiecutter.package_name }}.config import Paths
from {{ cookiecutter.package_name }}.errors import PipelineError
from {{ cookiecutter.package_name }}.serving.auth import TOKEN_ENV_VAR
from {{ cookiecutter.package_name }}.serving.client import client_token, refused_caller, request

READY_WAIT_SECONDS: Final = 120.0  # a route or load balancer may need a moment after rollout
TOLERANCE: Final = 1e-6  # served (fast path) against offline (pipeline), as in its parity test
MALFORMED: Final = {"records": "not a list of records"}


def offline_answer(model: Path = Paths.model, test_data: Path = Paths.test_data) -> dict[str, Any]:
    """The first test-split record, and the bundle's answer for it (`ModelBundle.answers`)."""
    bundle = load_bundle(model)
    row = bundle.schema.read_csv(test_data)[bundle.schema.feature_names].head(1)
    if row.empty:
        raise PipelineError(f"{test_data} has no rows to send")
    [answer] = bundle.answers(row)
    return {"record": json.loads(row.to_json(orient="records"))[0], "answer": answer}


def differences(served: Any, offline: dict[str, Any], tolerance: float = TOLERANCE) -> list[str]:
    """How a served answer departs from the offline one: each field the bundle answers, a
    number to `tolerance`, each class's probability to it, anything else exactly."""
    if not isinstance(served, dict):
        return [f"an answer that is not an object: {served!r:.200}"]
    found = []
    for field, expected in offline.items():
        if field not in served:
            found.append(f"no {field!r} in the answer")
        elif not same(served[field], expected, tolerance):
            got = f"{served[field]!r:.200}"  # what a service sends is bounded in the summary
            found.append(f"{field} {got} but the bundle gives {expected!r} offline")
    return found


def same(served: Any, expected: Any, tolerance: float) -> bool:
    if isinstance(expected, dict):
        return (
            isinstance(served, dict)
            and list(served) == list(expected)
            and all(same(served[key], value, tolerance) for key, value in expected.items())
        )
    if isinstance(expected, float):  # JSON's true is no number here
        number = isinstance(served, int | float) and not isinstance(served, bool)
        return number and abs(served - expected) <= tolerance
    return bool(served == expected)


def wait_ready(url: str, wait: float) -> tuple[int, str]:
    deadline = time.monotonic() + wait
    while True:
        status, body = request(f"{url}/readyz")
        if status == 200 or time.monotonic() >= deadline:
            return status, body
        time.sleep(2)


def failures(
    url: str, offline: dict[str, Any], token: str | None, wait: float = READY_WAIT_SECONDS
) -> list[str]:
    """What the service at `url` gets wrong, asked with `token` (empty: it passed)."""
    url = url.rstrip("/")
    status, body = wait_ready(url, wait)
    if status != 200:
        return [f"{url}/readyz answered {status or 'nothing'} after {wait:.0f} s: {body[:200]}"]
    found = []
    status, body = request(f"{url}/predict", {"records": [offline["record"]]})
    if status != 401:
        found.append(f"/predict without a token answered {status or 'nothing'}, not 401")
    status, body = request(f"{url}/predict", {"records": [offline["record"]]}, token=token)
    if refusal := refused_caller(status, token):
        return [*found, f"/predict of a test-split record {refusal}"]  # nothing more to ask
    if status != 200:
        found.append(f"/predict of a test-split record answered {status}: {body[:200]}")
    else:
        try:
            [answer] = json.loads(body)
        except (ValueError, TypeError) as error:
            found.append(f"/predict answered something else than one prediction: {error}")
        else:
            wrong = differences(answer, offline["answer"])
            found += [f"/predict: {difference}" for difference in wrong]
            if wrong:
                found.append("/predict: is the image of this commit's model?")
    status, body = request(f"{url}/predict", MALFORMED, token=token)
    if not 400 <= status < 500:
        found.append(f"/predict of a malformed request answered {status or 'nothing'}, not 4xx")
    return found


def run(url: str, wait: float = READY_WAIT_SECONDS) -> str:
    """Raise PipelineError naming every failure; a one-line verdict when all pass."""
    token = client_token()
    if token is None:
        raise PipelineError(
            f"smoke test of {url}: set {TOKEN_ENV_VAR} to a token of scope predict (the deploy"
            " workflow passes the SMOKE_API_TOKEN secret)"
        )
    found = failures(url, offline_answer(), token, wait)
    if found:
        listed = "\n".join(f"  - {failure}" for failure in found)
        raise PipelineError(f"smoke test of {url} failed:\n{listed}")
    return (
        f"{url}: ready, no token refused, a test-split prediction equal to the offline one,"
        " malformed refused"
    )
