"""The local workflow runner itself (tests/workflow_runner.py), on small workflows: the tests of
the generated workflows are only as good as the runner's reading of GitHub's semantics."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import TEMPLATE, bake, run_command
from workflow_runner import (
    Event,
    Expression,
    RunnerError,
    WorkflowRunner,
    action_specs,
    condition,
    parse_key_values,
)

STATUS = {"success": True, "failure": False, "always": True, "cancelled": False}


def runner_for(tmp_path: Path, workflow: dict, **options: object) -> WorkflowRunner:
    repository = tmp_path / "repository"
    repository.mkdir(parents=True)
    identity = ["-c", "user.name=Tests", "-c", "user.email=tests@example.com"]
    for args in (
        ["init", "-q", "-b", "main"],
        [*identity, "commit", "-q", "--allow-empty", "-m", "x"],
    ):
        subprocess.run(["git", *args], cwd=repository, check=True)
    path = repository / "workflow.yml"
    path.write_text(yaml.safe_dump(workflow, sort_keys=False))
    return WorkflowRunner(
        path,
        repository,
        tmp_path / "work",
        environment={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        uv=TEMPLATE / ".venv" / "bin" / "uv",
        github_repository="owner/project",
        run_command=run_command,
        **options,  # type: ignore[arg-type]
    )


def test_steps_share_outputs_env_and_path_and_follow_status_functions(
    tmp_path: Path,
) -> None:
    workflow = {
        "name": "w",
        "on": "push",
        "env": {"GREETING": "hello"},
        "jobs": {
            "job": {
                "runs-on": "ubuntu-latest",
                "env": {"FROM_SECRET": "${{ secrets.TOKEN }}"},
                "steps": [
                    {
                        "id": "one",
                        "run": 'echo "answer=42" >> "$GITHUB_OUTPUT"\n'
                        'printf "NOTE<<EOF\\nline 1\\nline 2\\nEOF\\n" >> "$GITHUB_ENV"\n'
                        'echo "## $GREETING $FROM_SECRET" >> "$GITHUB_STEP_SUMMARY"',
                    },
                    {
                        "name": "reads",
                        "env": {"ANSWER": "${{ steps.one.outputs.answer }}"},
                        "run": 'test "$ANSWER" = 42\ntest "$NOTE" = "line 1\nline 2"',
                    },
                    {"name": "tolerated", "run": "exit 3", "continue-on-error": True},
                    {"name": "breaks", "run": "false\necho never"},
                    {"name": "after a failure", "run": "true"},
                    {"name": "on failure", "if": "failure()", "run": "echo cleanup"},
                    {"name": "always", "if": "${{ always() }}", "run": "echo done"},
                ],
            }
        },
    }
    job = runner_for(tmp_path, workflow, secrets={"TOKEN": "s3cret"}).run_job(
        "job", Event("push")
    )
    outcomes = {step.name: step.outcome for step in job.steps}
    assert outcomes == {
        'echo "answer=42" >> "$GITHUB_OUTPUT"': "success",
        "reads": "success",
        "tolerated": "failure",  # its conclusion is success: the job goes on
        "breaks": "failure",
        "after a failure": "skipped",
        "on failure": "success",
        "always": "success",
    }, job.report()
    assert job.result == "failure"
    assert (
        "never" not in job.step("breaks").output
    )  # bash -e stops at the failing command
    assert job.summary == "## hello s3cret\n"


def test_refuses_expressions_in_run_and_unlisted_github_steps(tmp_path: Path) -> None:
    injected = {"jobs": {"job": {"steps": [{"run": "echo ${{ github.head_ref }}"}]}}}
    with pytest.raises(RunnerError, match="expression inside run"):
        runner_for(tmp_path / "a", injected).run_job("job", Event("push"))
    pushing = {
        "jobs": {"job": {"steps": [{"name": "ship", "run": "git push origin main"}]}}
    }
    with pytest.raises(RunnerError, match="needs GitHub"):
        runner_for(tmp_path / "b", pushing).run_job("job", Event("push"))
    listed = runner_for(tmp_path / "c", pushing, github_only={"ship": "pushes"})
    [step] = listed.run_job("job", Event("push")).steps
    assert step.outcome == "not run" and "pushes" in step.reason


def test_actions_are_checked_against_their_fixture(tmp_path: Path) -> None:
    checkout = action_specs()["actions/checkout"]
    step = {"uses": f"actions/checkout@{checkout.ref}", "with": {"fetch-dept": 0}}
    workflow = {"jobs": {"job": {"steps": [step]}}}
    with pytest.raises(RunnerError, match="`fetch-dept` is not an input"):
        runner_for(tmp_path, workflow).run_job("job", Event("push"))


def test_expressions_follow_github_semantics() -> None:
    context = {
        "github": {"ref": "refs/tags/v1.0.0", "event_name": "push"},
        "env": {"SET": "true"},
        "vars": {},
    }

    def value(text: str) -> object:
        return Expression(text, context, STATUS).evaluate()

    assert value("'ABC' == 'abc'") is True  # strings compare case-insensitively
    assert value("env.MISSING == ''") is True  # null and '' are equal
    assert value("startsWith(github.ref, 'refs/tags/v')") is True
    assert value("vars.X == 'true' || 'fallback'") == "fallback"
    assert value("format('{0}-{1}', github.event_name, 'x')") == "push-x"
    # an `if:` without a status function means success() && it
    assert condition("env.SET == 'true'", context, STATUS) is True
    failed = {**STATUS, "success": False, "failure": True}
    assert condition("env.SET == 'true'", context, failed) is False
    assert condition("always() && env.SET == 'true'", context, failed) is True


def test_output_files_parse_like_github() -> None:
    assert parse_key_values("a=1\nb<<END\nx\ny=z\nEND\n\nc=\n") == {
        "a": "1",
        "b": "x\ny=z",
        "c": "",
    }


# A pipe between commands in a step's script: one `|`, not `||` or a YAML block marker.
PIPE = re.compile(r"[^|]\|[^|]")


def test_a_command_failing_before_a_pipe_fails_its_step_in_every_generated_workflow(
    tmp_path: Path,
) -> None:
    """GitHub runs a step without `shell:` as `bash -e {0}`: no pipefail, so `make x | tee log`
    passes when make fails. Each generated job whose steps pipe is run here with its workflow's
    and its own `defaults` and that step's `shell`, its script replaced by a failing command
    piped into tee: the step, and the job, must fail."""
    project = bake(tmp_path / "bake", {})
    checked = []
    for path in sorted((project / ".github" / "workflows").glob("*.yml")):
        workflow = yaml.safe_load(path.read_text())
        for job_name, job in workflow["jobs"].items():
            for step in job.get("steps", []):
                lines = str(step.get("run", "")).splitlines()
                if not any(PIPE.search(line.split(" #")[0]) for line in lines):
                    continue
                piped = {
                    "name": "piped",
                    "run": 'false | tee -a "$GITHUB_STEP_SUMMARY"',
                }
                if "shell" in step:
                    piped["shell"] = step["shell"]
                alone: dict = {"on": "push", "jobs": {"job": {"steps": [piped]}}}
                if "defaults" in workflow:
                    alone["defaults"] = workflow["defaults"]
                if "defaults" in job:
                    alone["jobs"]["job"]["defaults"] = job["defaults"]
                where = f"{path.name} {job_name}: {step.get('name', lines[0])}"
                result = runner_for(tmp_path / str(len(checked)), alone).run_job(
                    "job", Event("push")
                )
                assert result.result == "failure", f"{where} passes a failed command"
                checked.append(where)
    names = " ".join(checked)
    for workflow in ("batch.yml", "deploy.yml", "release.yml"):
        assert workflow in names, f"no piped step found in {workflow}: {checked}"
