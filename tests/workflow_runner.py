"""A small local runner for a baked project's GitHub Actions workflows.

It executes one job of a workflow file the way a GitHub-hosted runner does, step by step:
``run:`` blocks with the job's shell (``bash -e`` unless ``shell:`` says otherwise), the
workflow's, job's and step's ``env`` (expressions evaluated), ``if:`` conditions (with the
implicit ``success()``), ``continue-on-error``, step outputs and the ``GITHUB_OUTPUT``,
``GITHUB_ENV``, ``GITHUB_PATH`` and ``GITHUB_STEP_SUMMARY`` files, and a job-level ``if:`` over
the results of the jobs it needs. The few actions the generated workflows use have local
stand-ins that do what the real ones do here (checkout clones the repository at the event's
commit; setup-uv puts the pinned uv on PATH and sets ``UV_PYTHON``; the artifact actions copy
files to and from a local store). Their ``with:`` keys are checked against the inputs that the
pinned version's ``action.yml`` declares (``tests/data/actions``).

Steps that need GitHub itself (opening issues or pull requests, pushing an image or a branch,
Pages) are not run: a test lists each of them with the reason, and the runner refuses to run a
job in which such a step is not listed. A ``${{ }}`` expression inside a ``run:`` block is
refused too (an injection risk on GitHub: values go through ``env``).

Deviations, on purpose: a pull request is checked out at its head commit (GitHub checks out a
test merge of head into base; the same tree when the head is up to date with its base), and
there is no cache (``enable-cache`` has nothing to restore here).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACTIONS = Path(__file__).parent / "data" / "actions"
# What in a `run:` block needs GitHub: its CLI, the registry, a push to the repository.
NEEDS_GITHUB = re.compile(r"\bgh\s|\bdocker\s+(?:login|push)\b|\bgit\s+push\b")
NEEDS_GITHUB_ACTIONS = {"actions/upload-pages-artifact", "actions/deploy-pages"}
STATUS_FUNCTIONS = ("success(", "failure(", "always(", "cancelled(")


class RunnerError(Exception):
    """The workflow cannot run here as written (not a failing step: a defect or a gap)."""


# --------------------------------------------------------------------------------------------
# Actions: pins and declared inputs


@dataclass(frozen=True)
class ActionSpec:
    """An action's interface at a pinned commit, from the fixture kept in tests/data/actions."""

    action: str
    ref: str
    version: str
    inputs: dict[str, dict[str, Any]]

    def defaults(self) -> dict[str, str]:
        return {
            name: str(spec["default"])
            for name, spec in self.inputs.items()
            if "default" in spec and "${{" not in str(spec["default"])
        }


def action_specs() -> dict[str, ActionSpec]:
    specs = {}
    for path in sorted(ACTIONS.glob("*.yml")):
        data = yaml.safe_load(path.read_text())
        specs[data["action"]] = ActionSpec(
            data["action"], data["ref"], data["version"], data.get("inputs") or {}
        )
    return specs


def split_uses(uses: str) -> tuple[str, str]:
    action, _, ref = uses.partition("@")
    return action, ref


def input_problems(
    step: Mapping[str, Any], specs: Mapping[str, ActionSpec]
) -> list[str]:
    """Why a `uses:` step's pin or `with:` keys do not match its action (empty: they do)."""
    action, ref = split_uses(str(step["uses"]))
    label = step.get("name") or step["uses"]
    if not re.fullmatch(r"[0-9a-f]{40}", ref):
        return [f"{label}: {step['uses']} is not pinned to a full commit SHA"]
    spec = specs.get(action)
    if spec is None:
        return [f"{label}: no fixture for {action} in {ACTIONS}"]
    if spec.ref != ref:
        return [
            f"{label}: pinned at {ref}, the fixture is of {spec.ref} ({spec.version})"
        ]
    given = dict(step.get("with") or {})
    problems = [
        f"{label}: `{key}` is not an input of {action}@{spec.version}"
        for key in given
        if key not in spec.inputs
    ]
    problems += [
        f"{label}: required input `{name}` of {action} is missing"
        for name, input_spec in spec.inputs.items()
        if input_spec.get("required")
        and "default" not in input_spec
        and name not in given
    ]
    return problems


# --------------------------------------------------------------------------------------------
# Expressions: the subset of GitHub's expression language the workflows use

TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?)"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||[()!<>,\[\]])|(?P<name>[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z_*][A-Za-z0-9_\-]*)*))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    found, position = [], 0
    text = text.strip()
    while position < len(text):
        match = TOKEN.match(text, position)
        if not match or match.end() == position:
            raise RunnerError(
                f"cannot parse expression at {text[position:]!r} in {text!r}"
            )
        kind = match.lastgroup or ""
        found.append((kind, match[kind]))
        position = match.end()
    return found


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if text == "":
        return 0.0
    try:
        return float(text)
    except ValueError:
        return math.nan


def _equal(left: Any, right: Any) -> bool:
    """GitHub's loose equality: strings case-insensitively, other types as numbers."""
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold() == right.casefold()
    if type(left) is type(right) and not isinstance(left, int | float):
        return bool(left == right)
    return _number(left) == _number(right)


def truthy(value: Any) -> bool:
    if value is None or value is False or value == "":
        return False
    if isinstance(value, int | float) and (value == 0 or math.isnan(value)):
        return False
    return True


def to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class Expression:
    """A recursive-descent evaluator over a context dict (github, env, secrets, vars, steps...)."""

    def __init__(
        self, text: str, context: Mapping[str, Any], status: Mapping[str, bool]
    ) -> None:
        self.tokens = _tokens(text)
        self.position = 0
        self.context = context
        self.status = status
        self.text = text

    def evaluate(self) -> Any:
        value = self._or()
        if self.position != len(self.tokens):
            raise RunnerError(
                f"unexpected {self.tokens[self.position][1]!r} in {self.text!r}"
            )
        return value

    def _peek(self) -> str | None:
        return (
            self.tokens[self.position][1] if self.position < len(self.tokens) else None
        )

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise RunnerError(f"expression ends early: {self.text!r}")
        token = self.tokens[self.position]
        if expected is not None and token[1] != expected:
            raise RunnerError(
                f"expected {expected!r}, got {token[1]!r} in {self.text!r}"
            )
        self.position += 1
        return token

    def _or(self) -> Any:
        value = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            value = value if truthy(value) else right
        return value

    def _and(self) -> Any:
        value = self._comparison()
        while self._peek() == "&&":
            self._take()
            right = self._comparison()
            value = right if truthy(value) else value
        return value

    def _comparison(self) -> Any:
        value = self._unary()
        while self._peek() in ("==", "!=", "<", ">", "<=", ">="):
            operator = self._take()[1]
            right = self._unary()
            if operator == "==":
                value = _equal(value, right)
            elif operator == "!=":
                value = not _equal(value, right)
            else:
                left_n, right_n = _number(value), _number(right)
                value = {
                    "<": left_n < right_n,
                    ">": left_n > right_n,
                    "<=": left_n <= right_n,
                    ">=": left_n >= right_n,
                }[operator]
        return value

    def _unary(self) -> Any:
        if self._peek() == "!":
            self._take()
            return not truthy(self._unary())
        return self._primary()

    def _primary(self) -> Any:
        kind, text = self._take()
        if text == "(":
            value = self._or()
            self._take(")")
            return value
        if kind == "string":
            return text[1:-1].replace("''", "'")
        if kind == "number":
            return float(text)
        if kind != "name":
            raise RunnerError(f"unexpected {text!r} in {self.text!r}")
        if text in ("true", "false"):
            return text == "true"
        if text == "null":
            return None
        if self._peek() == "(":
            return self._call(text)
        value: Any = self.context
        for part in text.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        while self._peek() == "[":
            self._take()
            key = self._or()
            self._take("]")
            value = value.get(to_text(key)) if isinstance(value, Mapping) else None
        return value

    def _call(self, name: str) -> Any:
        self._take("(")
        arguments = []
        while self._peek() != ")":
            arguments.append(self._or())
            if self._peek() == ",":
                self._take()
        self._take(")")
        lowered = name.lower()
        if lowered in ("success", "failure", "always", "cancelled"):
            return self.status[lowered]
        if lowered == "startswith":
            return (
                to_text(arguments[0])
                .casefold()
                .startswith(to_text(arguments[1]).casefold())
            )
        if lowered == "endswith":
            return (
                to_text(arguments[0])
                .casefold()
                .endswith(to_text(arguments[1]).casefold())
            )
        if lowered == "contains":
            haystack = arguments[0]
            if isinstance(haystack, list):
                return any(_equal(item, arguments[1]) for item in haystack)
            return to_text(arguments[1]).casefold() in to_text(haystack).casefold()
        if lowered == "format":
            text = to_text(arguments[0])
            for index, argument in enumerate(arguments[1:]):
                text = text.replace("{" + str(index) + "}", to_text(argument))
            return text
        raise RunnerError(f"function {name}() is not supported by the local runner")


EMBEDDED = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def substitute(
    text: str, context: Mapping[str, Any], status: Mapping[str, bool]
) -> str:
    """A value with every ${{ }} replaced by its result, as text."""
    return EMBEDDED.sub(
        lambda match: to_text(Expression(match[1], context, status).evaluate()), text
    )


def condition(
    text: Any, context: Mapping[str, Any], status: Mapping[str, bool]
) -> bool:
    """An `if:` (with or without ${{ }}); without a status function it means success() && it."""
    if text is None:
        return status["success"]
    if isinstance(text, bool):
        return text and status["success"]
    expression = str(text).strip()
    whole = re.fullmatch(r"\$\{\{(.*)\}\}", expression, re.S)
    if whole:
        expression = whole[1]
    if not any(function in expression.lower() for function in STATUS_FUNCTIONS):
        expression = f"success() && ({expression})"
    return truthy(Expression(expression, context, status).evaluate())


# --------------------------------------------------------------------------------------------
# Events and results


@dataclass
class Event:
    """What triggered the run. `ref` is a branch (or tag) of the repository; for a pull
    request, `ref` is its head branch and `base` the branch it targets."""

    name: str
    ref: str = "main"
    base: str = ""
    from_fork: bool = False
    number: int = 1
    inputs: dict[str, str] = field(
        default_factory=dict
    )  # workflow_dispatch / workflow_call


@dataclass
class StepResult:
    name: str
    outcome: str  # success | failure | skipped | not run (needs GitHub)
    reason: str = ""
    output: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0  # wall time, for the report


@dataclass
class JobResult:
    job: str
    result: str  # success | failure | skipped
    steps: list[StepResult]
    summary: str
    workspace: Path
    reason: str = ""

    def step(self, name: str) -> StepResult:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"no step {name!r} in {[step.name for step in self.steps]}")

    def report(self) -> str:
        """Each step's outcome, and the tail of the output of the ones that failed."""
        lines = [f"job {self.job}: {self.result} {self.reason}".rstrip()]
        for step in self.steps:
            lines.append(
                f"  {step.outcome:8} {step.seconds:6.1f}s {step.name} {step.reason}".rstrip()
            )
            if step.outcome == "failure":
                lines.append("    " + step.output[-5000:].replace("\n", "\n    "))
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The runner

# A stand-in gets the job run, the step's inputs and its GITHUB_* files (by variable name).
Stand_in = Callable[["JobRun", dict[str, str], Mapping[str, Path]], None]


class WorkflowRunner:
    """Runs jobs of one workflow file against a local git repository.

    repository: the git repository the workflow's repository stands for (cloned by checkout).
    work: a directory for the runs (workspaces, temp files, the artifact store).
    environment: the runner machine's environment (a user's PATH: no uv, no project env).
    uv: the uv binary setup-uv puts on PATH.
    github_only: name of each step that needs GitHub itself -> why it is not run here.
    """

    def __init__(
        self,
        workflow: Path,
        repository: Path,
        work: Path,
        *,
        environment: Mapping[str, str],
        uv: Path,
        github_repository: str,
        secrets: Mapping[str, str] | None = None,
        variables: Mapping[str, str] | None = None,
        github_only: Mapping[str, str] | None = None,
        run_command: Callable[..., subprocess.CompletedProcess[str]],
    ) -> None:
        self.workflow_path = workflow
        self.workflow = yaml.safe_load(workflow.read_text())
        self.repository = repository
        self.work = work
        self.environment = dict(environment)
        self.uv = uv
        self.github_repository = github_repository
        self.secrets = dict(secrets or {})
        self.variables = dict(variables or {})
        self.github_only = dict(github_only or {})
        self.run_command = run_command
        self.artifacts = work / "artifacts"
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self.specs = action_specs()
        self.stand_ins: dict[str, Stand_in] = {
            "actions/checkout": checkout,
            "astral-sh/setup-uv": setup_uv,
            "actions/upload-artifact": upload_artifact,
            "actions/download-artifact": download_artifact,
        }

    def job(self, job_id: str) -> dict[str, Any]:
        jobs = self.workflow.get("jobs", {})
        if job_id not in jobs:
            raise RunnerError(
                f"{self.workflow_path.name} has no job {job_id!r}: {list(jobs)}"
            )
        return jobs[job_id]

    def github_context(self, event: Event, sha: str, workspace: Path) -> dict[str, Any]:
        owner = self.github_repository.split("/")[0]
        pull_request = {}
        if event.name == "pull_request":
            head_repo = (
                f"someone-else/{self.github_repository.split('/')[1]}"
                if event.from_fork
                else self.github_repository
            )
            pull_request = {
                "number": event.number,
                "head": {
                    "ref": event.ref,
                    "sha": sha,
                    "repo": {"full_name": head_repo},
                },
                "base": {
                    "ref": event.base,
                    "repo": {"full_name": self.github_repository},
                },
            }
        ref = (
            f"refs/pull/{event.number}/merge"
            if event.name == "pull_request"
            else f"refs/heads/{event.ref}"
            if not event.ref.startswith("v")
            else f"refs/tags/{event.ref}"
        )
        return {
            "event_name": event.name,
            "event": {"pull_request": pull_request}
            if pull_request
            else {"inputs": dict(event.inputs)}
            if event.inputs
            else {},
            "ref": ref,
            "ref_name": f"{event.number}/merge"
            if event.name == "pull_request"
            else event.ref,
            "ref_type": "tag" if ref.startswith("refs/tags/") else "branch",
            "sha": sha,
            "base_ref": event.base if event.name == "pull_request" else "",
            "head_ref": event.ref if event.name == "pull_request" else "",
            "repository": self.github_repository,
            "repository_owner": owner,
            "actor": owner,
            "server_url": "https://github.com",
            "run_id": "1000",
            "run_number": "1",
            "workflow": self.workflow.get("name", self.workflow_path.stem),
            "workspace": str(workspace),
            "token": "",
        }

    def run_job(
        self,
        job_id: str,
        event: Event,
        *,
        needs: Mapping[str, str] | None = None,
        needs_outputs: Mapping[str, Mapping[str, str]] | None = None,
    ) -> JobResult:
        """Run one job; `needs` gives the result of each job it needs (default: success),
        `needs_outputs` their outputs (default: none, as a job whose steps set none)."""
        return JobRun(self, job_id, event, dict(needs or {}), needs_outputs).run()

    def would_run(self, job_id: str, step_name: str, event: Event) -> bool:
        """Whether a step's `if:` holds for this event and these secrets, all earlier steps
        having succeeded (nothing is run)."""
        run = JobRun(self, job_id, event, {})
        run.env = run.evaluated(self.workflow.get("env"))
        run.env.update(run.evaluated(run.spec.get("env")))
        for step in run.spec.get("steps", []):
            if run.step_name(step) == step_name:
                return condition(step.get("if"), run.context(), run.status())
        raise RunnerError(f"job {job_id} has no step {step_name!r}")


def _sha(repository: Path, ref: str) -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
        cwd=repository,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RunnerError(
            f"{ref} is not a commit of {repository}: {done.stderr.strip()}"
        )
    return done.stdout.strip()


class JobRun:
    """One execution of one job (its workspace, files and step results)."""

    def __init__(
        self,
        runner: WorkflowRunner,
        job_id: str,
        event: Event,
        needs: dict[str, str],
        needs_outputs: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.runner = runner
        self.job_id = job_id
        self.spec = runner.job(job_id)
        self.event = event
        self.root = runner.work / f"{runner.workflow_path.stem}-{job_id}"
        shutil.rmtree(self.root, ignore_errors=True)
        name = runner.github_repository.split("/")[1]
        self.workspace = (
            self.root / name / name
        )  # as on GitHub: work/<repository>/<repository>
        self.temp = self.root / "temp"
        self.workspace.mkdir(parents=True)
        self.temp.mkdir()
        self.sha = _sha(runner.repository, event.ref)
        self.github = runner.github_context(event, self.sha, self.workspace)
        needed = self.spec.get("needs", [])
        needed = [needed] if isinstance(needed, str) else list(needed)
        self.needs = {name: needs.get(name, "success") for name in needed}
        self.needs_outputs = {
            name: dict(values) for name, values in (needs_outputs or {}).items()
        }
        self.env: dict[str, str] = {}
        self.path_additions: list[str] = []
        self.steps: dict[str, dict[str, Any]] = {}
        self.results: list[StepResult] = []
        self.summary: list[str] = []
        self.failed = False

    # contexts ---------------------------------------------------------------------------------
    def context(self) -> dict[str, Any]:
        return {
            "github": self.github,
            "env": self.env,
            "secrets": {"GITHUB_TOKEN": "", **self.runner.secrets},
            "vars": self.runner.variables,
            "inputs": dict(self.event.inputs),
            "steps": self.steps,
            "needs": {
                name: {"result": result, "outputs": self.needs_outputs.get(name, {})}
                for name, result in self.needs.items()
            },
            "runner": {"os": "Linux", "temp": str(self.temp), "arch": "X64"},
            "matrix": {},
            "job": {"status": "failure" if self.failed else "success"},
        }

    def status(self) -> dict[str, bool]:
        return {
            "success": not self.failed,
            "failure": self.failed,
            "always": True,
            "cancelled": False,
        }

    def job_status(self) -> dict[str, bool]:
        results = set(self.needs.values())
        return {
            "success": results <= {"success"},
            "failure": "failure" in results,
            "always": True,
            "cancelled": False,
        }

    def evaluated(self, mapping: Mapping[str, Any] | None) -> dict[str, str]:
        values = {}
        for key, value in (mapping or {}).items():
            values[str(key)] = substitute(to_text(value), self.context(), self.status())
        return values

    def base_environment(self) -> dict[str, str]:
        github = self.github
        variables = dict(self.runner.environment)
        variables.update(
            {
                "CI": "true",
                "GITHUB_ACTIONS": "true",
                "GITHUB_WORKSPACE": str(self.workspace),
                "GITHUB_EVENT_NAME": github["event_name"],
                "GITHUB_REF": github["ref"],
                "GITHUB_REF_NAME": github["ref_name"],
                "GITHUB_REF_TYPE": github["ref_type"],
                "GITHUB_SHA": github["sha"],
                "GITHUB_BASE_REF": github["base_ref"],
                "GITHUB_HEAD_REF": github["head_ref"],
                "GITHUB_REPOSITORY": github["repository"],
                "GITHUB_REPOSITORY_OWNER": github["repository_owner"],
                "GITHUB_ACTOR": github["actor"],
                "GITHUB_SERVER_URL": github["server_url"],
                "GITHUB_RUN_ID": github["run_id"],
                "GITHUB_RUN_NUMBER": github["run_number"],
                "GITHUB_WORKFLOW": github["workflow"],
                "GITHUB_JOB": self.job_id,
                "RUNNER_OS": "Linux",
                "RUNNER_TEMP": str(self.temp),
            }
        )
        return variables

    # the job -----------------------------------------------------------------------------------
    def run(self) -> JobResult:
        if not condition(self.spec.get("if"), self.context(), self.job_status()):
            return JobResult(
                self.job_id,
                "skipped",
                [],
                "",
                self.workspace,
                f"(if: {self.spec.get('if')})",
            )
        self.check_github_steps()
        self.env = self.evaluated(self.runner.workflow.get("env"))
        self.env.update(self.evaluated(self.spec.get("env")))
        timeout = float(self.spec.get("timeout-minutes", 360)) * 60
        for index, step in enumerate(self.spec.get("steps", [])):
            self.run_step(index, step, timeout)
        return JobResult(
            self.job_id,
            "failure" if self.failed else "success",
            self.results,
            "".join(self.summary),
            self.workspace,
        )

    def step_name(self, step: Mapping[str, Any]) -> str:
        if "name" in step:
            return str(step["name"])
        if "uses" in step:
            return split_uses(str(step["uses"]))[0]
        return str(step["run"]).strip().splitlines()[0]

    def check_github_steps(self) -> None:
        for step in self.spec.get("steps", []):
            name = self.step_name(step)
            needs_github = (
                "run" in step and NEEDS_GITHUB.search(str(step["run"]))
            ) or split_uses(str(step.get("uses", "")))[0] in NEEDS_GITHUB_ACTIONS
            if needs_github and name not in self.runner.github_only:
                raise RunnerError(
                    f"step {name!r} of job {self.job_id} needs GitHub: list it (with why) in"
                    " github_only to run the rest of the job"
                )
            if "run" in step and "${{" in str(step["run"]):
                raise RunnerError(
                    f"step {name!r} has a ${{{{ }}}} expression inside run: pass it through env"
                )

    def run_step(self, index: int, step: Mapping[str, Any], job_timeout: float) -> None:
        name = self.step_name(step)
        step_id = str(step.get("id", f"__step{index}"))
        if not condition(step.get("if"), self.context(), self.status()):
            self.record(step_id, StepResult(name, "skipped", f"(if: {step.get('if')})"))
            return
        if name in self.runner.github_only:
            reason = self.runner.github_only[name]
            self.record(
                step_id, StepResult(name, "not run", f"(needs GitHub: {reason})")
            )
            return
        env = {**self.env, **self.evaluated(step.get("env"))}
        files = {
            key: self.temp / f"{key.lower()}-{index}"
            for key in (
                "GITHUB_OUTPUT",
                "GITHUB_ENV",
                "GITHUB_PATH",
                "GITHUB_STEP_SUMMARY",
            )
        }
        for path in files.values():
            path.write_text("")
        timeout = float(step.get("timeout-minutes", job_timeout / 60)) * 60
        started = time.monotonic()
        if "uses" in step:
            result = self.run_action(step, name, files)
        else:
            result = self.run_script(step, name, env, files, timeout)
        continue_on_error = (
            substitute(
                to_text(step.get("continue-on-error", False)),
                self.context(),
                self.status(),
            )
            .strip()
            .casefold()
            == "true"
        )
        result.seconds = time.monotonic() - started
        result.outputs = parse_key_values(files["GITHUB_OUTPUT"].read_text())
        self.env.update(parse_key_values(files["GITHUB_ENV"].read_text()))
        self.path_additions[:0] = [
            line.strip()
            for line in files["GITHUB_PATH"].read_text().splitlines()
            if line.strip()
        ]
        self.summary.append(files["GITHUB_STEP_SUMMARY"].read_text())
        conclusion = "success" if continue_on_error else result.outcome
        if conclusion == "failure":
            self.failed = True
        self.record(step_id, result, conclusion)

    def record(
        self, step_id: str, result: StepResult, conclusion: str | None = None
    ) -> None:
        outcome = "success" if result.outcome == "not run" else result.outcome
        self.steps[step_id] = {
            "outputs": result.outputs,
            "outcome": outcome,
            "conclusion": conclusion or outcome,
        }
        self.results.append(result)

    def process_environment(
        self, env: Mapping[str, str], files: Mapping[str, Path]
    ) -> dict[str, str]:
        variables = self.base_environment()
        variables.update(env)
        variables.update({key: str(path) for key, path in files.items()})
        variables["PATH"] = os.pathsep.join(
            [*self.path_additions, variables.get("PATH", "")]
        )
        return variables

    def run_script(
        self,
        step: Mapping[str, Any],
        name: str,
        env: Mapping[str, str],
        files: Mapping[str, Path],
        timeout: float,
    ) -> StepResult:
        shell = step.get("shell") or (
            (self.spec.get("defaults") or {}).get("run", {}).get("shell")
            or (self.runner.workflow.get("defaults") or {}).get("run", {}).get("shell")
        )
        script = self.temp / f"step-{len(self.results)}.sh"
        script.write_text(str(step["run"]))
        if shell in (None, "bash"):
            command = (
                ["bash", "-e", str(script)]
                if shell is None
                else ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)]
            )
        elif shell == "sh":
            command = ["sh", "-e", str(script)]
        else:
            raise RunnerError(f"step {name!r}: shell {shell!r} is not supported here")
        directory = self.workspace / str(step.get("working-directory", "."))
        try:
            done = self.runner.run_command(
                command,
                directory,
                self.process_environment(env, files),
                check=False,
                timeout=timeout,
            )
        except AssertionError as timed_out:  # run_command raises on a timeout
            return StepResult(name, "failure", "(timed out)", str(timed_out))
        outcome = "success" if done.returncode == 0 else "failure"
        reason = "" if done.returncode == 0 else f"(exit {done.returncode})"
        return StepResult(name, outcome, reason, done.stdout)

    def run_action(
        self, step: Mapping[str, Any], name: str, files: Mapping[str, Path]
    ) -> StepResult:
        problems = input_problems(step, self.runner.specs)
        if problems:
            raise RunnerError("; ".join(problems))
        action, _ = split_uses(str(step["uses"]))
        stand_in = self.runner.stand_ins.get(action)
        if stand_in is None:
            raise RunnerError(f"no local stand-in for {action} (step {name!r})")
        inputs = self.runner.specs[action].defaults()
        inputs.update(self.evaluated(step.get("with")))
        try:
            stand_in(self, inputs, files)
        except StepFailure as failure:
            return StepResult(name, "failure", "", str(failure))
        return StepResult(name, "success")

    def git(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd or self.workspace,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise StepFailure(f"git {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout


class StepFailure(Exception):
    """A stand-in action failed the step (as the real action would)."""


def parse_key_values(text: str) -> dict[str, str]:
    """GITHUB_OUTPUT / GITHUB_ENV: `name=value` lines and `name<<DELIMITER` blocks."""
    values, lines, index = {}, text.splitlines(), 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.strip():
            continue
        heredoc = re.fullmatch(r"([^=<]+)<<(.+)", line)
        if heredoc:
            body = []
            while index < len(lines) and lines[index] != heredoc[2]:
                body.append(lines[index])
                index += 1
            index += 1
            values[heredoc[1]] = "\n".join(body)
            continue
        key, separator, value = line.partition("=")
        if not separator:
            raise RunnerError(f"malformed line in a GitHub file: {line!r}")
        values[key] = value
    return values


# --------------------------------------------------------------------------------------------
# Stand-ins for the actions the generated workflows use


def checkout(run: JobRun, inputs: dict[str, str], files: Mapping[str, Path]) -> None:
    """actions/checkout: the event's commit into the workspace, `origin` being the repository.
    fetch-depth 0 fetches every branch (as origin/<branch>), else only the event's ref."""
    target = run.workspace / inputs.get("path", "")
    target.mkdir(parents=True, exist_ok=True)
    url = f"file://{run.runner.repository}"
    depth = int(inputs.get("fetch-depth", "1") or "0")
    run.git("init", "-q", cwd=target)
    run.git("remote", "add", "origin", url, cwd=target)
    refspec = (
        "+refs/heads/*:refs/remotes/origin/*"
        if depth == 0
        else f"+refs/heads/{run.event.ref}:refs/remotes/origin/{run.event.ref}"
    )
    depth_args = [] if depth == 0 else [f"--depth={depth}"]
    run.git("fetch", "-q", "--no-tags", *depth_args, "origin", refspec, cwd=target)
    if run.event.name == "pull_request":
        run.git("checkout", "-q", "--detach", run.sha, cwd=target)
    else:
        run.git("checkout", "-q", "-B", run.event.ref, run.sha, cwd=target)


def setup_uv(run: JobRun, inputs: dict[str, str], files: Mapping[str, Path]) -> None:
    """astral-sh/setup-uv: the requested uv and its uvx on PATH (the pinned one: it must be
    the version asked for), UV_PYTHON from python-version."""
    bin_dir = run.root / "uv-bin"
    bin_dir.mkdir(exist_ok=True)
    uv = bin_dir / "uv"
    # uvx beside it, as the action installs both (uvx finds its uv next to itself).
    for name, target in (
        ("uv", run.runner.uv),
        ("uvx", run.runner.uv.with_name("uvx")),
    ):
        if not (bin_dir / name).exists():
            (bin_dir / name).symlink_to(target)
    installed = subprocess.run(
        [str(uv), "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    wanted = inputs.get("version", "")
    if wanted and wanted != installed:
        raise StepFailure(
            f"setup-uv was asked for uv {wanted}; the runner has {installed}"
        )
    with files["GITHUB_PATH"].open("a") as path_file:
        path_file.write(f"{bin_dir}\n")
    if inputs.get("python-version"):
        with files["GITHUB_ENV"].open("a") as env_file:
            env_file.write(f"UV_PYTHON={inputs['python-version']}\n")


def _artifact_files(run: JobRun, patterns: list[str]) -> tuple[Path, list[Path]]:
    """The files a path list names, and their least common ancestor (the artifact's root)."""
    files, roots = [], []
    for pattern in patterns:
        matches = sorted(run.workspace.glob(pattern.rstrip("/"))) if pattern else []
        for match in matches:
            if match.is_dir():
                roots.append(match)
                files += [path for path in match.rglob("*") if path.is_file()]
            elif match.is_file():
                roots.append(match.parent)
                files.append(match)
    if not files:
        return run.workspace, []
    return Path(os.path.commonpath([str(root) for root in roots])), files


def upload_artifact(
    run: JobRun, inputs: dict[str, str], files: Mapping[str, Path]
) -> None:
    patterns = [line.strip() for line in inputs["path"].splitlines() if line.strip()]
    root, files = _artifact_files(run, patterns)
    if not files:
        if inputs.get("if-no-files-found", "warn") == "error":
            raise StepFailure(f"no files found at {patterns}")
        return
    store = run.runner.artifacts / inputs.get("name", "artifact")
    if store.exists():
        raise StepFailure(f"an artifact named {store.name} already exists in this run")
    for path in files:
        destination = store / path.relative_to(root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)


def download_artifact(
    run: JobRun, inputs: dict[str, str], files: Mapping[str, Path]
) -> None:
    store = run.runner.artifacts / inputs.get("name", "")
    if not store.is_dir():
        raise StepFailure(f"artifact {store.name!r} not found in this run")
    shutil.copytree(store, run.workspace / inputs.get("path", "."), dirs_exist_ok=True)
