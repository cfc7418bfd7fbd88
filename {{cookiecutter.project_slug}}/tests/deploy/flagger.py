"""Flagger's part in a canary release, played from the project's own rendered Canary and
MetricTemplates (deploy/overlays/production): the steps, the interval, the failed-checks
threshold, `skipAnalysis` and each check's limit are read from there, and each check's query is
evaluated through Prometheus as Flagger would, with its variables filled in. Only time is
shortened: `seconds_per_minute` stands for a minute of the Canary's durations.

One tick per interval, as Flagger's scheduler (pkg/controller/scheduler.go) takes a Canary:
- the tick that sees a new revision makes it Progressing (the canary scaled up); the next one
  starts the analysis and gives the canary the first step's weight, unchecked;
- each later tick first rolls the canary back (0 %, scaled to zero, Failed) if the failed checks
  have reached the threshold; else it runs the checks in order and stops at the first that fails
  (out of range, or no value), which counts one failed check and holds the weight; when all
  pass, it calls the confirm-traffic-increase webhooks in order (also on the tick that starts
  the analysis, at 0 %): the first that fails holds the weight, counting no failed check
  (scheduler_hooks.go); when all confirm, the canary gets the next step's weight, or after the
  last step it is promoted: its spec copied to the primary, whose rollout starts (Promoting);
- Promoting: once the primary's rollout is ready, all traffic goes to the primary (Finalising);
- Finalising: the canary is scaled to zero (Succeeded).
A Canary's first release has no primary to compare with: the primary is made from it and takes
the traffic without analysis (Initialized). With `skipAnalysis` (a rollback) the next tick sends
all traffic to the primary, copies the spec to it and scales the canary to zero (Succeeded)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PRODUCTION = Path("deploy") / "overlays" / "production"
DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
VARIABLE = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def seconds(duration: str) -> float:
    """A Kubernetes/Prometheus duration ("30s", "1m", "5m") in seconds."""
    match = DURATION.match(duration)
    if match is None:
        raise ValueError(f"not a duration: {duration!r}")
    return float(match.group(1)) * SECONDS[match.group(2)]


@dataclass(frozen=True)
class Check:
    name: str
    query: str  # as the MetricTemplate has it: Flagger's variables unfilled
    interval: float  # seconds, shortened
    low: float | None
    high: float | None

    def failure(self, value: float | None) -> str | None:
        """Why `value` fails the check, as Flagger reports it; None when it passes."""
        if value is None:
            return f"{self.name}: no values found"
        if self.low is not None and value < self.low:
            return f"{self.name} {value:.4g} < {self.low:g}"
        if self.high is not None and value > self.high:
            return f"{self.name} {value:.4g} > {self.high:g}"
        return None


@dataclass(frozen=True)
class Webhook:
    name: str
    url: str
    metadata: dict[str, str]


@dataclass(frozen=True)
class Analysis:
    step_weights: tuple[int, ...]
    interval: float  # seconds, shortened
    threshold: int
    checks: tuple[Check, ...]
    skip: bool = False  # the Canary's spec.skipAnalysis
    confirm_traffic_increase: tuple[Webhook, ...] = ()  # the Canary's webhooks of that type


def analysis_of(
    project: Path, seconds_per_minute: float, canary: dict[str, Any] | None = None
) -> Analysis:
    """The Canary's analysis, with its checks' queries from the MetricTemplates it names; the
    production overlay's Canary unless another rendering of it is given."""
    scale = seconds_per_minute / 60.0
    overlay = project / PRODUCTION
    if canary is None:
        (canary,) = yaml.safe_load_all((overlay / "canary.yaml").read_text())
    templates = {
        document["metadata"]["name"]: document["spec"]["query"]
        for document in yaml.safe_load_all((overlay / "metric-templates.yaml").read_text())
    }
    spec = canary["spec"]["analysis"]
    checks = []
    for metric in spec["metrics"]:
        limits = metric["thresholdRange"]
        checks.append(
            Check(
                name=metric["name"],
                query=templates[metric["templateRef"]["name"]],
                interval=seconds(metric["interval"]) * scale,
                low=limits.get("min"),
                high=limits.get("max"),
            )
        )
    return Analysis(
        step_weights=tuple(spec["stepWeights"]),
        interval=seconds(spec["interval"]) * scale,
        threshold=int(spec["threshold"]),
        checks=tuple(checks),
        skip=bool(canary["spec"].get("skipAnalysis", False)),
        confirm_traffic_increase=tuple(
            Webhook(hook["name"], hook["url"], dict(hook.get("metadata", {})))
            for hook in spec.get("webhooks", [])
            if hook["type"] == "confirm-traffic-increase"
        ),
    )


def fill(query: str, variables: dict[str, str]) -> str:
    """The query with Flagger's variables (`namespace`, `target`, `interval`, ...) filled in."""

    def value(match: re.Match[str]) -> str:
        if match.group(1) not in variables:
            raise KeyError(f"the query uses a variable this harness does not set: {match.group(0)}")
        return variables[match.group(1)]

    return VARIABLE.sub(value, query)


@dataclass
class Workloads:
    """What Flagger does to the cluster, done by the test: the traffic split, the primary's
    rollout to the canary's spec (started by `promote`, done once `primary_ready`), and the
    canary's scale-down."""

    set_weight: Callable[[int], None]  # the canary's percent; the primary gets the rest
    promote: Callable[[], None] = lambda: None
    primary_ready: Callable[[], bool] = lambda: True
    scale_canary_to_zero: Callable[[], None] = lambda: None


@dataclass
class Outcome:
    """How a release ended: "Succeeded" (promoted), "Failed" (rolled back) or "Initialized"."""

    phase: str = "Progressing"
    phases: list[str] = field(default_factory=list)  # each phase it entered, in order
    weights: list[int] = field(default_factory=list)  # each weight the canary was given
    failed_checks: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # each failed check's first
    # failing metric (Flagger runs no further), and why
    holds: list[tuple[int, str]] = field(default_factory=list)  # (weight, webhook) per tick a
    # confirm-traffic-increase webhook held the weight
    checks_passed: int = 0  # analyses that ran every check and passed
    rolled_back_at: int | None = None  # the weight it had when rolled back
    rolled_back_when: float | None = None  # time.monotonic() once the rollback was applied
    promoted_when: float | None = None  # time.monotonic() once the promoted primary had it all

    def enter(self, phase: str) -> None:
        self.phase = phase
        self.phases.append(phase)


def _first_failure(
    analysis: Analysis, namespace: str, target: str, query: Callable[[str], float | None]
) -> tuple[str, str] | None:
    for check in analysis.checks:
        variables = {
            "namespace": namespace,
            "target": target,
            "name": target,
            "service": target,
            "interval": f"{check.interval:g}s",
        }
        failure = check.failure(query(fill(check.query, variables)))
        if failure is not None:
            return check.name, failure
    return None


def run(
    analysis: Analysis,
    *,
    namespace: str,
    target: str,
    workloads: Workloads,
    query: Callable[[str], float | None],
    confirm: Callable[[Webhook], bool] = lambda webhook: True,
    first_release: bool = False,
    sleep: Callable[[float], Any] = time.sleep,
) -> Outcome:
    """Take a new revision of the Canary's target through Flagger's phases; `confirm` calls a
    confirm-traffic-increase webhook (True: it answered 2xx)."""
    outcome = Outcome()
    if first_release:  # the primary made from the target, all traffic to it, the target at zero
        outcome.enter("Initializing")
        workloads.promote()
        workloads.set_weight(0)
        workloads.scale_canary_to_zero()
        outcome.enter("Initialized")
        return outcome

    def give(weight: int) -> None:
        workloads.set_weight(weight)
        outcome.weights.append(weight)

    outcome.enter("Progressing")  # a new revision seen: the canary scaled up
    weight = 0
    while True:
        sleep(analysis.interval)
        if analysis.skip:
            give(0)
            workloads.promote()
            workloads.scale_canary_to_zero()
            outcome.enter("Succeeded")
            return outcome
        if outcome.phase == "Promoting":
            if workloads.primary_ready():
                give(0)
                outcome.promoted_when = time.monotonic()
                outcome.enter("Finalising")
            continue  # else the primary's rollout is still under way: the next tick again
        if outcome.phase == "Finalising":
            workloads.scale_canary_to_zero()
            outcome.enter("Succeeded")
            return outcome
        if outcome.failed_checks >= analysis.threshold:
            give(0)
            workloads.scale_canary_to_zero()
            outcome.rolled_back_at = weight
            outcome.rolled_back_when = time.monotonic()
            outcome.enter("Failed")
            return outcome
        if weight > 0:  # the first tick of the analysis only starts it: nothing to check yet
            failure = _first_failure(analysis, namespace, target, query)
            if failure is not None:
                outcome.failed_checks += 1
                outcome.failures.append(failure)
                continue  # the weight held until the next tick
            outcome.checks_passed += 1
        held = next((hook for hook in analysis.confirm_traffic_increase if not confirm(hook)), None)
        if held is not None:
            outcome.holds.append((weight, held.name))
            continue  # the weight held, no failed check counted
        later = [step for step in analysis.step_weights if step > weight]
        if later:
            weight = later[0]
            give(weight)
        else:  # the last step passed: the canary's spec to the primary
            workloads.promote()
            outcome.enter("Promoting")
