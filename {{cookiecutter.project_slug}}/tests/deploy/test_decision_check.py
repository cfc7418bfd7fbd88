"""The canary's decision check, measured exactly on live series: the primary and two candidates,
one retrained alike and one deciding otherwise (candidates.py), answer the same requests as real
`bentoml serve` processes; Prometheus scrapes their /metrics labelled as a cluster's pods; the
check's query, from the rendered MetricTemplate and filled in as Flagger fills it, must give
each candidate the shift its decisions have offline on those records, and the check's limit
must pass the one and fail the other.

A third candidate decides otherwise too but makes fewer than deploy.canary.min_decisions
decisions in the window: the check must be neutral on it (0, a pass), and the Canary's
enough-decisions webhook, run as Flagger's load tester runs it, must hold its weight, while it
lets a canary with enough decisions, or with none yet, go on.

This is the part of a canary release that depends on the task, in seconds. The release itself
(Envoy's split, the steps, the other checks, the promotion) is test_canary.py's. Prometheus is
the `prometheus` on PATH, as there.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from {{ cookiecutter.package_name }}.bundle import load_bundle
from {{ cookiecutter.package_name }}.config import Paths, load_params

from ..service.conftest import PROJECT_ROOT, authorized, run_make_pipeline
from . import flagger, loadtester
from .candidates import deciding_otherwise, decision_shift, retrained, store_with
from .gateway import Prometheus, tools_or_skip
from .pods import RECORDS_PER_REQUEST, release_targets, server_settings, started_together

CANDIDATES = ("healthy", "decisions")
FEW = "few"  # deciding otherwise too, on fewer decisions than deploy.canary.min_decisions
SCRAPE_WAIT = 2.5  # seconds: Prometheus scrapes every second; two scrapes and a margin


@dataclass
class Measured:
    check: flagger.Check
    live: dict[str, float | None]  # by candidate: the check's query through Prometheus
    offline: dict[str, float]  # by candidate: decision_shift() on the same records
    confirmed: dict[str, bool]  # by namespace: the enough-decisions webhook let it go on


def send_all(url: str, records: list[dict[str, Any]]) -> None:
    """Every record once, in order, RECORDS_PER_REQUEST a request."""
    with httpx.Client(base_url=url, headers=authorized(), timeout=60) as client:
        for start in range(0, len(records), RECORDS_PER_REQUEST):
            batch = records[start : start + RECORDS_PER_REQUEST]
            client.post("/predict", json={"records": batch}).raise_for_status()


def passes_for(records: list[dict[str, Any]], minimum: int) -> list[dict[str, Any]]:
    """The records repeated until they are well over `minimum` decisions (Prometheus's
    increase() extrapolates a window's count; repeats leave each side's shares as they are)."""
    return records * math.ceil(1.5 * minimum / len(records))


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Measured:
    tools_or_skip(envoy=False)
    params = load_params(PROJECT_ROOT / "params.yaml")
    if not (PROJECT_ROOT / Paths.model).is_file():
        run_make_pipeline(f"{Paths.model} is missing")
    work = tmp_path_factory.mktemp("decision-check")
    primary = load_bundle(PROJECT_ROOT / Paths.model)
    features = primary.schema.read_csv(PROJECT_ROOT / Paths.test_data)[
        list(primary.schema.feature_names)
    ]
    train = primary.schema.read_csv(PROJECT_ROOT / Paths.train_data)
    limit = params.deploy.canary.max_decision_shift
    bundles = {
        "healthy": retrained(primary, train, features, alike=limit / 4),
        "decisions": deciding_otherwise(primary, features, shift=3 * limit),
    }
    offline = {name: decision_shift(bundles[name], primary, features) for name in CANDIDATES}
    stores = {
        name: store_with(work / f"store-{name}", f"check{name}", bundle)
        for name, bundle in bundles.items()
    }
    # a store of its own: servers sharing BENTOML_HOME share their metrics' multiprocess files
    stores[FEW] = store_with(work / f"store-{FEW}", f"check{FEW}", bundles["decisions"])
    analysis = flagger.analysis_of(PROJECT_ROOT, 60.0)
    (check,) = [each for each in analysis.checks if each.name == "decision-shift"]
    target = params.deploy.name
    records = json.loads(features.to_json(orient="records"))
    minimum = params.deploy.canary.min_decisions
    few = records[: max(1, minimum // 4)]
    measured_pass = {role: passes_for(records, minimum) for role in ("primary", *CANDIDATES)}
    measured_pass[FEW] = few
    roles = {"primary": None, **stores}
    with contextlib.ExitStack() as stack:
        servers = started_together(
            stack,
            {
                role: (work / f"serve-{role}.log", server_settings(work, role, store))
                for role, store in roles.items()
            },
        )
        # A first pass creates every series a pass adds to, before Prometheus's first scrape:
        # the measured pass then adds to series whose every sample it has.
        for role, server in servers.items():
            send_all(server.url, few if role == FEW else records)
        ports = {role: int(server.url.rsplit(":", 1)[1]) for role, server in servers.items()}
        scrapes = []
        for name in (*CANDIDATES, FEW):  # a namespace each, the primary's pods in all of them
            scrapes += release_targets(target, name, ports["primary"], ports[name])
        prometheus = stack.enter_context(
            Prometheus(work / "prometheus", scrapes).running(work / "prometheus.log")
        )
        time.sleep(SCRAPE_WAIT)
        started = time.monotonic()
        for role, server in servers.items():
            send_all(server.url, measured_pass[role])
        time.sleep(SCRAPE_WAIT)
        # The window holds the samples just before the measured pass and every one after it,
        # not the first pass (Prometheus started after it)
        window = math.ceil(time.monotonic() - started + SCRAPE_WAIT)
        live = {
            name: prometheus.query(
                flagger.fill(
                    check.query,
                    {"namespace": name, "target": target, "interval": f"{window}s"},
                )
            )
            for name in (*CANDIDATES, FEW)
        }
        (hook,) = analysis.confirm_traffic_increase
        confirmed = {
            namespace: loadtester.confirmer(params, prometheus.url, namespace, f"{window}s")(hook)
            for namespace in (*CANDIDATES, FEW, "none-yet")  # none-yet: no canary series at all
        }
    return Measured(check, live, offline, confirmed)


@pytest.mark.parametrize("candidate", CANDIDATES)
def test_the_check_measures_the_shift_the_decisions_have_offline(
    measured: Measured, candidate: str
) -> None:
    live, offline = measured.live[candidate], measured.offline[candidate]
    assert live is not None, f"{measured.check.name}: no values found"
    assert live == pytest.approx(offline, rel=1e-6, abs=1e-9), (live, offline)


def test_the_limit_passes_the_alike_candidate_and_fails_the_other(measured: Measured) -> None:
    check = measured.check
    assert check.high == load_params(PROJECT_ROOT / "params.yaml").deploy.canary.max_decision_shift
    assert check.failure(measured.live["healthy"]) is None, measured
    failure = check.failure(measured.live["decisions"])
    assert failure is not None and failure.startswith(f"{check.name} "), measured


def test_on_too_few_decisions_the_check_is_neutral_and_the_weight_holds(
    measured: Measured,
) -> None:
    """The candidate deciding otherwise on fewer than min_decisions decisions: the check reads
    0 and passes (it neither passes nor fails it on its merits), and the webhook holds its
    weight, so no step is passed on so small a sample; with enough decisions the webhook lets
    the check judge (above: it fails the same model), and before any it lets the first step
    be taken."""
    assert measured.live[FEW] == 0, measured
    assert measured.check.failure(measured.live[FEW]) is None, measured
    assert measured.confirmed == {
        "healthy": True,
        "decisions": True,
        FEW: False,
        "none-yet": True,
    }, measured
