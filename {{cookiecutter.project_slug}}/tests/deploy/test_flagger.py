"""The Flagger stand-in (flagger.py) on the project's rendered Canary, tick by tick, without a
cluster: the phases and weights Flagger's scheduler gives a healthy, a failing and a slow
revision, a first release and a rollback (`skipAnalysis`, as `make rollback` renders it)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from {{ cookiecutter.package_name }}.deploy import rollout

from ..conftest import PROJECT_ROOT
from . import flagger

DIGEST = "sha256:" + "d" * 64


@dataclass
class Cluster:
    """Records what the harness does, in order; the primary's rollout takes `rollout_ticks`."""

    rollout_ticks: int = 0
    actions: list[str] = field(default_factory=list)

    def workloads(self) -> flagger.Workloads:
        def ready() -> bool:
            self.rollout_ticks -= 1
            return self.rollout_ticks < 0

        return flagger.Workloads(
            set_weight=lambda weight: self.actions.append(f"weight {weight}"),
            promote=lambda: self.actions.append("promote"),
            primary_ready=ready,
            scale_canary_to_zero=lambda: self.actions.append("canary to zero"),
        )


Answer = Callable[[str], float | None]


def release(
    cluster: Cluster,
    answer: float | Answer | None,
    analysis: flagger.Analysis | None = None,
    **options: Any,
) -> flagger.Outcome:
    """A release where every query gets `answer` (a value, None, or a callable of the query)."""
    analysis = analysis or flagger.analysis_of(PROJECT_ROOT, 60.0)
    ask: Answer = answer if callable(answer) else (lambda _query: answer)
    return flagger.run(
        analysis,
        namespace="production",
        target="model",
        workloads=cluster.workloads(),
        query=ask,
        sleep=lambda _seconds: cluster.actions.append("tick"),
        **options,
    )


def in_range(check: flagger.Check) -> float:
    return check.low if check.low is not None else 0.0


def passing(analysis: flagger.Analysis) -> Answer:
    """Each check's query answered with a value inside its range."""
    values = {flagger.fill(c.query, variables(c)): in_range(c) for c in analysis.checks}
    return lambda query: values[query]


def variables(check: flagger.Check) -> dict[str, str]:
    return {
        "namespace": "production",
        "target": "model",
        "name": "model",
        "service": "model",
        "interval": f"{check.interval:g}s",
    }


def test_a_healthy_revision_is_promoted_as_flagger_promotes() -> None:
    analysis = flagger.analysis_of(PROJECT_ROOT, 60.0)
    cluster = Cluster(rollout_ticks=1)
    outcome = release(cluster, passing(analysis), analysis)
    steps = list(analysis.step_weights)
    assert outcome.phase == "Succeeded" and outcome.failed_checks == 0
    assert outcome.phases == ["Progressing", "Promoting", "Finalising", "Succeeded"]
    assert outcome.weights == [*steps, 0]  # after the promotion, all to the primary
    assert outcome.checks_passed == len(steps)  # the first step's tick checks nothing
    # the first weight one tick after the revision was seen; the spec copied at the last step;
    # all traffic to the primary only once its rollout is ready; then the canary scaled down
    expected = ["tick", f"weight {steps[0]}"]
    for step in steps[1:]:
        expected += ["tick", f"weight {step}"]
    expected += ["tick", "promote", "tick", "tick", "weight 0", "tick", "canary to zero"]
    assert cluster.actions == expected


@pytest.mark.parametrize("answer", [None, 1e9], ids=["no values", "out of range"])
def test_a_failing_revision_is_rolled_back_on_the_tick_after_the_threshold(
    answer: float | None,
) -> None:
    analysis = flagger.analysis_of(PROJECT_ROOT, 60.0)
    cluster = Cluster()
    outcome = release(cluster, answer, analysis)
    first = analysis.step_weights[0]
    assert outcome.phase == "Failed" and outcome.failed_checks == analysis.threshold
    assert outcome.weights == [first, 0] and outcome.rolled_back_at == first
    # Flagger runs no check after the first that fails
    assert [name for name, _ in outcome.failures] == [analysis.checks[0].name] * analysis.threshold
    ticks_failing = ["tick"] * analysis.threshold
    assert cluster.actions == [
        "tick", f"weight {first}", *ticks_failing, "tick", "weight 0", "canary to zero"
    ]  # fmt: skip


def test_a_check_failing_once_holds_the_weight_then_the_release_goes_on() -> None:
    analysis = flagger.analysis_of(PROJECT_ROOT, 60.0)
    good = passing(analysis)
    calls = {"count": 0}

    def once_bad(query: str) -> float | None:
        calls["count"] += 1
        return None if calls["count"] == 1 else good(query)

    outcome = release(Cluster(), once_bad, analysis)
    assert outcome.phase == "Succeeded" and outcome.failed_checks == 1
    first, second = analysis.step_weights[:2]
    assert outcome.weights[:2] == [first, second]


def test_a_failing_confirm_traffic_increase_webhook_holds_the_weight_without_a_failed_check() -> (
    None
):
    """The Canary's webhook (the enough-decisions hold) is called on the tick that starts the
    analysis, at 0 %, then after each tick's checks pass, the promotion's included; while it
    fails the weight holds and no failed check is counted."""
    analysis = flagger.analysis_of(PROJECT_ROOT, 60.0)
    assert [hook.name for hook in analysis.confirm_traffic_increase] == ["enough-decisions"]
    cluster = Cluster()
    answers = iter([True, False, False, True] + [True] * 10)  # held twice at the first step

    def confirm(hook: flagger.Webhook) -> bool:
        cluster.actions.append(f"confirm {hook.name}")
        return next(answers)

    outcome = release(cluster, passing(analysis), analysis, confirm=confirm)
    steps = list(analysis.step_weights)
    assert outcome.phase == "Succeeded" and outcome.failed_checks == 0, outcome
    assert outcome.holds == [(steps[0], "enough-decisions")] * 2, outcome
    assert outcome.weights == [*steps, 0]
    hook = "confirm enough-decisions"
    expected = ["tick", hook, f"weight {steps[0]}"] + ["tick", hook] * 2
    for step in steps[1:]:
        expected += ["tick", hook, f"weight {step}"]
    expected += ["tick", hook, "promote", "tick", "weight 0", "tick", "canary to zero"]
    assert cluster.actions == expected


def test_a_first_release_is_initialized_without_analysis() -> None:
    cluster = Cluster()
    outcome = release(cluster, None, first_release=True)
    assert outcome.phases == ["Initializing", "Initialized"]
    assert cluster.actions == ["promote", "weight 0", "canary to zero"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl renders the overlays")
def test_a_rollback_skips_the_analysis_and_promotes_at_once() -> None:
    rendered = rollout.render("production", DIGEST, skip_analysis=True, root=PROJECT_ROOT)
    [canary] = [doc for doc in yaml.safe_load_all(rendered) if doc["kind"] == "Canary"]
    analysis = flagger.analysis_of(PROJECT_ROOT, 60.0, canary)
    assert analysis.skip
    cluster = Cluster()

    def no_query(query: str) -> float | None:
        raise AssertionError(f"a skipped analysis queried {query}")

    outcome = release(cluster, no_query, analysis)
    assert outcome.phases == ["Progressing", "Succeeded"]
    assert cluster.actions == ["tick", "weight 0", "promote", "canary to zero"]
