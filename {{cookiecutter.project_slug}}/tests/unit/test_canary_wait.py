"""scripts/canary-wait, the deploy workflow's wait for Flagger to promote or roll back the
production canary, run as the workflow runs it, against a stand-in `kubectl` first on PATH that
answers the Canary's phase and lastAppliedSpec from sequences (one line per read, the last one
repeated) and prints canned conditions and events: promoted, initialised (a first deploy),
every phase Flagger passes through on the way, rolled back (the analysis's reason in the job
summary), deleted, never finished (the time limit), a previous revision's phase (not counted)
and kubectl failing (once: tried again; three reads in a row: the end, not a loop until the
time limit)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.unit

SCRIPT = PROJECT_ROOT / "scripts" / "canary-wait"
NAMESPACE = "prod"
NAME = "my-model"  # any Canary name: the stand-in answers for it
BEFORE = '{"revision":"old"}'  # status.lastAppliedSpec before the apply
APPLIED = '{"revision":"new"}'  # ... once Flagger has taken up the new revision
ROLLED_BACK = "Rolling back " + NAME + ".prod failed checks threshold reached 2"
CONDITIONS = "Canary analysis failed, Deployment scaled to zero."
EVENTS = "".join(  # as kubectl prints them: custom-columns TIME, REASON, MESSAGE
    f"{time:<23}{reason:<10}{message}\n"
    for time, reason, message in [
        ("TIME", "REASON", "MESSAGE"),
        ("2025-01-01T10:00:00Z", "Synced", "New revision detected! Scaling up " + NAME + ".prod"),
        ("2025-01-01T10:01:00Z", "Synced", "Starting canary analysis for " + NAME + ".prod"),
        ("2025-01-01T10:02:00Z", "Warning", "Halt advancement error-rate 0.5 > 0.01"),
        ("2025-01-01T10:03:00Z", "Warning", ROLLED_BACK),
    ]
)
NOT_FOUND = f'Error from server (NotFound): canaries.flagger.app "{NAME}" not found'

# Answers the reads canary-wait makes from files beside it; logs every call to calls.log. `error`
# (when present): printed to stderr, exit 1, as kubectl does for a missing Canary or cluster;
# for every call, or for as many as `errors_left` says.
FAKE_KUBECTL = r"""#!/usr/bin/env bash
set -euo pipefail
state=$(dirname "$0")
printf '%s\n' "$*" >> "$state/calls.log"
if [ -f "$state/error" ]; then
  left=$(cat "$state/errors_left" 2> /dev/null || echo always)
  if [ "$left" = always ] || [ "$left" -gt 0 ]; then
    [ "$left" = always ] || echo $((left - 1)) > "$state/errors_left"
    cat "$state/error" >&2
    exit 1
  fi
fi
next() {  # the first line of a sequence, consumed unless it is the last
  head -n 1 "$state/$1"
  if [ "$(wc -l < "$state/$1")" -gt 1 ]; then
    tail -n +2 "$state/$1" > "$state/$1.rest" && mv "$state/$1.rest" "$state/$1"
  fi
}
case "$*" in
  *" get canary "*" -o jsonpath={.status.phase}") next phases ;;
  *" get canary "*" -o jsonpath={.status.lastAppliedSpec}") next applied ;;
  *" get canary "*" -o jsonpath={.status.conditions[*].message}") cat "$state/conditions" ;;
  *" get events "*) cat "$state/events" ;;
  *)
    echo "fake kubectl: unexpected call: $*" >&2
    exit 3
    ;;
esac
"""


@pytest.fixture
def kubectl(tmp_path: Path) -> Path:
    """The fake kubectl's directory (its state beside it): a new revision taken up, canned
    conditions and events; each test writes the phases it goes through."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "kubectl"
    fake.write_text(FAKE_KUBECTL)
    fake.chmod(0o755)
    answer(bin_dir, "applied", [APPLIED])
    (bin_dir / "conditions").write_text(CONDITIONS)
    (bin_dir / "events").write_text(EVENTS)
    return bin_dir


def answer(bin_dir: Path, field: str, values: list[str]) -> None:
    (bin_dir / field).write_text("".join(f"{value}\n" for value in values))


def calls(bin_dir: Path) -> list[str]:
    log = bin_dir / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def phase_reads(bin_dir: Path) -> int:
    phase = "-o jsonpath={.status.phase}"  # (no f-string: its braces would be Jinja's)
    return calls(bin_dir).count(f"-n {NAMESPACE} get canary {NAME} " + phase)


def run(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """canary-wait, polling every 0.05 s, with the fake kubectl first on PATH and the job summary
    in summary.md beside bin/. A script that loops for ever fails the test by the subprocess's
    own time limit."""
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "CANARY_POLL_SECONDS": "0.05",
        "GITHUB_STEP_SUMMARY": str(bin_dir.parent / "summary.md"),
    }
    return subprocess.run(
        [str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=15, check=False
    )


def wait(
    bin_dir: Path, timeout: int = 60, before: str = BEFORE
) -> subprocess.CompletedProcess[str]:
    """canary-wait as deploy.yml calls it."""
    return run(bin_dir, NAMESPACE, NAME, str(timeout), before)


def summary(bin_dir: Path) -> str:
    path = bin_dir.parent / "summary.md"
    return path.read_text() if path.exists() else ""


def test_a_promoted_canary_ends_the_wait_with_success(kubectl: Path) -> None:
    answer(kubectl, "phases", ["Progressing", "Progressing", "Succeeded"])

    result = wait(kubectl)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Canary {NAMESPACE}/{NAME}: Succeeded (promoted)" in result.stdout
    assert result.stdout.count(f"Canary {NAMESPACE}/{NAME}: Progressing") == 2
    assert phase_reads(kubectl) == 3
    assert summary(kubectl) == ""  # nothing to explain


def test_a_first_deploy_ends_the_wait_once_flagger_has_initialised_the_primary(
    kubectl: Path,
) -> None:
    """Flagger runs no analysis on a Canary's first revision: no status yet, Initializing, then
    Initialized with the revision as its lastAppliedSpec. That is the end of a first deploy."""
    answer(kubectl, "phases", ["", "Initializing", "Initialized"])
    answer(kubectl, "applied", ["", "", APPLIED])

    result = wait(kubectl, before="")

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Canary {NAMESPACE}/{NAME}: no phase yet" in result.stdout
    assert f"Canary {NAMESPACE}/{NAME}: Initializing" in result.stdout
    assert "Initialized (a first deploy: the primary runs this revision" in result.stdout
    assert phase_reads(kubectl) == 3


def test_every_phase_on_the_way_keeps_the_wait_going(kubectl: Path) -> None:
    """The phases of an analysis with both confirmation gates, and of a promotion without one
    (skipAnalysis, as make rollback applies it): only Succeeded ends them."""
    on_the_way = ["Waiting", "Progressing", "WaitingPromotion", "Promoting", "Finalising"]
    answer(kubectl, "phases", [*on_the_way, "Succeeded"])

    result = wait(kubectl)

    assert result.returncode == 0, result.stdout + result.stderr
    assert phase_reads(kubectl) == len(on_the_way) + 1
    for phase in on_the_way:
        assert f"Canary {NAMESPACE}/{NAME}: {phase}" in result.stdout
    assert "Waiting (for the confirm-rollout webhook" in result.stdout
    assert "WaitingPromotion (for the confirm-promotion webhook)" in result.stdout
    assert "Succeeded (promoted)" in result.stdout


@pytest.mark.parametrize("phase", ["Terminating", "Terminated"])
def test_a_canary_being_deleted_fails_the_wait_at_once(kubectl: Path, phase: str) -> None:
    answer(kubectl, "phases", ["Progressing", phase])

    result = wait(kubectl, timeout=600)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"::error::canary {NAMESPACE}/{NAME} is {phase}: it is being deleted" in result.stdout
    assert f"### Canary {NAMESPACE}/{NAME}: {phase} (the Canary is being deleted)" in summary(
        kubectl
    )
    assert phase_reads(kubectl) == 2


def test_a_rolled_back_canary_fails_with_the_analysis_reason_in_the_summary(
    kubectl: Path,
) -> None:
    answer(kubectl, "phases", ["Progressing", "Failed"])

    result = wait(kubectl)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"::error::canary {NAMESPACE}/{NAME} failed its analysis" in result.stdout
    written = summary(kubectl)
    assert f"### Canary {NAMESPACE}/{NAME}: Failed (rolled back to the primary)" in written
    assert CONDITIONS in written
    assert "Halt advancement error-rate 0.5 > 0.01" in written
    assert ROLLED_BACK in written
    # The events asked for are the Canary's own, newest last.
    events_call = next(call for call in calls(kubectl) if " get events " in call)
    assert f"involvedObject.kind=Canary,involvedObject.name={NAME}" in events_call
    assert "--sort-by=.lastTimestamp" in events_call


def test_a_canary_that_never_ends_fails_after_the_time_limit(kubectl: Path) -> None:
    answer(kubectl, "phases", ["Progressing"])

    result = wait(kubectl, timeout=1)

    assert result.returncode == 1, result.stdout + result.stderr
    problem = "neither Succeeded, Initialized nor Failed after 1 s (phase Progressing)"
    assert f"::error::canary {NAMESPACE}/{NAME}: {problem}" in result.stdout
    written = summary(kubectl)
    assert f"### Canary {NAMESPACE}/{NAME}: {problem}" in written
    assert ROLLED_BACK in written  # the last events, whatever they say


def test_the_previous_revisions_phase_does_not_count(kubectl: Path) -> None:
    """Before Flagger takes up the new revision, the Canary still shows the last one's phase:
    Succeeded then ends nothing until lastAppliedSpec differs from what it was before the apply."""
    answer(kubectl, "phases", ["Succeeded", "Progressing", "Succeeded"])
    answer(kubectl, "applied", [BEFORE, APPLIED])

    result = wait(kubectl)

    assert result.returncode == 0, result.stdout + result.stderr
    assert phase_reads(kubectl) == 3


def test_no_new_revision_taken_up_fails_after_the_time_limit_saying_so(kubectl: Path) -> None:
    answer(kubectl, "phases", ["Succeeded"])  # the previous revision's
    answer(kubectl, "applied", [BEFORE])

    result = wait(kubectl, timeout=1)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Flagger took up no new revision in 1 s" in result.stdout
    assert "took up no new revision" in summary(kubectl)


def test_kubectl_failing_three_reads_in_a_row_ends_the_wait(kubectl: Path) -> None:
    (kubectl / "error").write_text(NOT_FOUND + "\n")

    result = wait(kubectl, timeout=600)  # the polls would go on for ten minutes

    assert result.returncode == 1
    assert NOT_FOUND in result.stderr
    assert f"could not read the Canary {NAMESPACE}/{NAME} 3 times in a row" in result.stdout
    assert len(calls(kubectl)) == 3


def test_a_read_kubectl_fails_once_is_tried_again(kubectl: Path) -> None:
    (kubectl / "error").write_text(NOT_FOUND + "\n")
    (kubectl / "errors_left").write_text("1\n")
    answer(kubectl, "phases", ["Progressing", "Succeeded"])

    result = wait(kubectl)

    assert result.returncode == 0, result.stdout + result.stderr
    assert NOT_FOUND in result.stderr
    assert "Succeeded (promoted)" in result.stdout


def test_the_wrong_number_of_arguments_is_a_usage_error(kubectl: Path) -> None:
    result = run(kubectl, NAMESPACE, NAME, "60")  # no BEFORE

    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert calls(kubectl) == []
