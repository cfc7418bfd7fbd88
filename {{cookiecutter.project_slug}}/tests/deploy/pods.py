"""Real `bentoml serve` processes standing for a cluster's pods: started together, warmed up as
a pod's first requests after its readiness probe, named as Kubernetes names pods."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from {{ cookiecutter.package_name }}.serving.prediction_log import ENV_VAR, SPOOL_ENV_VAR

from ..service.conftest import (
    TOKENS_ENV_VAR,
    Server,
    authorized,
    server_process,
    session_tokens,
)
from .gateway import Target

RECORDS_PER_REQUEST = 40  # records a request carries, drawn from the test split


def server_settings(work: Path, role: str, store: Path | None = None) -> dict[str, str]:
    """The environment of `role`'s server: its own prediction log (work/log-<role>) and spool,
    the session's tokens, and the model store `store` (BENTOML_HOME; None: the project's)."""
    settings = {
        ENV_VAR: str(work / f"log-{role}"),
        SPOOL_ENV_VAR: str(work / f"spool-{role}"),
        TOKENS_ENV_VAR: str(session_tokens().file),
    }
    if store is not None:
        settings["BENTOML_HOME"] = str(store)
    return settings


def started_together(
    stack: contextlib.ExitStack, servers: dict[str, tuple[Path, dict[str, str]]]
) -> dict[str, Server]:
    """`bentoml serve` for each (log, environment), started at once (each takes seconds to
    load its model); each stops with `stack`."""
    managers = {role: server_process(log, env) for role, (log, env) in servers.items()}
    with ThreadPoolExecutor(len(managers)) as pool:
        starting = {role: pool.submit(manager.__enter__) for role, manager in managers.items()}
    started = {}
    for role, future in starting.items():
        if future.exception() is None:
            started[role] = future.result()
            stack.push(managers[role].__exit__)
    for future in starting.values():
        future.result()  # raises the first failure, once every started one will be stopped
    return started


def warm_up(url: str, records: list[dict[str, Any]], requests: int = 5) -> set[str]:
    """A few requests straight to a server, as the first ones a pod gets after its readiness
    probe (the shortened interval makes a handful of requests a check's whole sample): the
    prediction ids it answered."""
    ids = set()
    with httpx.Client(base_url=url, headers=authorized(), timeout=30) as client:
        for start in range(requests):
            batch = records[start * RECORDS_PER_REQUEST : (start + 1) * RECORDS_PER_REQUEST]
            answer = client.post("/predict", json={"records": batch})
            answer.raise_for_status()
            ids |= {item["prediction_id"] for item in answer.json()}
    return ids


def pod(target: str, role: str, case: str) -> str:
    """A pod name as Kubernetes gives them: <deployment>-<replica set hash>-<pod id>."""
    deployment = f"{target}-primary" if role == "primary" else target
    return f"{deployment}-7d4b9c6f5-{case[:5]}"


def release_targets(
    target: str, namespace: str, primary_port: int, canary_port: int
) -> list[Target]:
    """Prometheus's scrape targets for one release in `namespace`: its primary's pod and its
    canary's, labelled with the namespace and pod names the checks' queries group by."""
    return [
        Target(primary_port, {"namespace": namespace, "pod": pod(target, "primary", namespace)}),
        Target(canary_port, {"namespace": namespace, "pod": pod(target, "canary", namespace)}),
    ]
