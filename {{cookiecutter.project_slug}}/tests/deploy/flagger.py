"""Flagger's part in a canary release, played from the project's own rendered Canary and
MetricTemplates (deploy/overlays/production): the steps, the interval, the failed-checks
threshold and each check's limit are read from there, and each check's query is evaluated
through Prometheus as Flagger would, with its variables filled in. Only time is shortened:
`seconds_per_minute` stands for a minute of the Canary's durations.

As Flagger does: the canary gets the first step's weight; after each interval every check is
run; one failing (out of its range, or no value) counts a failed check and holds the weight;
at the threshold the canary is rolled back to 0 %; when every check passes the weight advances,
and after the last step the canary gets all the traffic (promotion)."""

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
class Analysis:
    step_weights: tuple[int, ...]
    interval: float  # seconds, shortened
    threshold: int
    checks: tuple[Check, ...]


def analysis_of(project: Path, seconds_per_minute: float) -> Analysis:
    """The Canary's analysis, with its checks' queries from the MetricTemplates it names."""
    scale = seconds_per_minute / 60.0
    overlay = project / PRODUCTION
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
    )


def fill(query: str, variables: dict[str, str]) -> str:
    """The query with Flagger's variables (`namespace`, `target`, `interval`, ...) filled in."""

    def value(match: re.Match[str]) -> str:
        if match.group(1) not in variables:
            raise KeyError(f"the query uses a variable this harness does not set: {match.group(0)}")
        return variables[match.group(1)]

    return VARIABLE.sub(value, query)


@dataclass
class Outcome:
    """How a canary's analysis ended: "Succeeded" (promoted) or "Failed" (rolled back)."""

    phase: str = "Progressing"
    weights: list[int] = field(default_factory=list)  # each weight it was given, in order
    failed_checks: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)  # each failed check: why,
    # by the name of each metric that failed it
    rolled_back_at: int | None = None  # the weight it had when rolled back
    rolled_back_when: float | None = None  # time.monotonic() once the rollback was applied


def run(
    analysis: Analysis,
    *,
    namespace: str,
    target: str,
    set_weight: Callable[[int], None],
    query: Callable[[str], float | None],
    sleep: Callable[[float], Any] = time.sleep,
) -> Outcome:
    """Take a canary through `analysis`, shifting traffic with `set_weight`."""
    outcome = Outcome()
    steps = list(analysis.step_weights)
    weight = steps.pop(0)
    set_weight(weight)
    outcome.weights.append(weight)
    while True:
        sleep(analysis.interval)
        failures = {}
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
                failures[check.name] = failure
        if failures:
            outcome.failed_checks += 1
            outcome.failures.append(failures)
            if outcome.failed_checks >= analysis.threshold:
                set_weight(0)
                outcome.rolled_back_at = weight
                outcome.rolled_back_when = time.monotonic()
                outcome.weights.append(0)
                outcome.phase = "Failed"
                return outcome
            continue  # Flagger holds the weight and checks again after the next interval
        if not steps:
            set_weight(100)
            outcome.weights.append(100)
            outcome.phase = "Succeeded"
            return outcome
        weight = steps.pop(0)
        set_weight(weight)
        outcome.weights.append(weight)
