"""The generated project's GitHub workflows, executed here job by job with the local runner
(tests/workflow_runner.py): CI on a pull request (lint, every test layer, the differences
against the base branch), the release job up to the push (the image built by `bentoml
containerize` on a Docker engine, then started as the Deployment's pod runs it and asked for a
prediction), monitoring and its alarm, retraining, and batch scoring. Each job starts from a
fresh clone of a repository holding the piped default project (main) and a branch that changes a
param, with a user's PATH: no uv until setup-uv puts the pinned one there, and each job installs
its own .venv (uv's cache makes that quick); nothing is shared with the other tests' project
environment.

The release test needs a Docker engine: ../shared/tools/docker-daemon start (the template's
.ci/run starts it) or the one on a GitHub runner. Without one it skips, unless
REQUIRE_CONTAINER_TEST=1: then it fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from batch_scoring import broken_copy_of_the_test_split
from conftest import (
    CANARY_RELEASE_TEST,
    DATA_INDEPENDENT_TESTS,
    LOAD_TEST_REQUESTS,
    ONE_OPENMP_THREAD,
    TEMPLATE,
    Project,
    bake,
    cookiecutter_defaults,
    deselecting,
    plain_shell_environment,
    run_command,
)
from loopback import free_port, http, offline_prediction, wait_until_ready
from workflow_runner import Event, JobResult, WorkflowRunner

pytestmark = pytest.mark.e2e

UV = TEMPLATE / ".venv" / "bin" / "uv"
REQUIRE = "REQUIRE_CONTAINER_TEST"
# Steps that need GitHub itself, and why they are not run here.
GITHUB_ONLY = {
    "Push to GHCR": "pushes the image to ghcr.io with the job's token",
    "Open the monitoring issue, or comment on the open one": "opens a GitHub issue (gh)",
    "Start retraining": "dispatches retrain.yml on GitHub (gh workflow run)",
    "Open a pull request": "pushes a branch and opens a pull request (git push, gh)",
    "actions/upload-pages-artifact": "uploads a Pages artifact to GitHub",
    "actions/deploy-pages": "deploys to GitHub Pages",
}


@pytest.fixture(scope="module")
def repository(
    default_project: Project, tmp_path_factory: pytest.TempPathFactory
) -> Project:
    """The repository the workflows run in: main holds the piped default project (dvc.lock,
    metrics and reports committed, as a user pushes it); branch `tune` changes a param."""
    work = tmp_path_factory.mktemp("github")
    project = default_project.copy(work / "repository" / default_project.path.name)
    project.commit("The generated project, piped")
    project.run("git", "branch", "-M", "main")
    project.run("git", "switch", "-q", "-c", "tune")
    params = project.path / "params.yaml"
    text, count = re.subn(r"(?m)^(  cv_folds:) 5\b", r"\1 4", params.read_text())
    assert count == 1, "params.yaml has no `cv_folds: 5` to change"
    params.write_text(text)
    project.commit("Tune the cut-off with 4 folds")
    project.run("git", "switch", "-q", "main")
    return project


def make_runner(
    repository: Path, workflow: str, work: Path, **options: object
) -> WorkflowRunner:
    defaults = cookiecutter_defaults()
    environment = options.pop("environment", None) or plain_shell_environment()
    return WorkflowRunner(
        repository / ".github" / "workflows" / workflow,
        repository,
        work,
        environment=environment,  # type: ignore[arg-type]
        uv=UV,
        github_repository=f"{defaults['github_owner']}/{repository.name}",
        github_only=options.pop("github_only", GITHUB_ONLY),
        run_command=run_command,
        **options,  # type: ignore[arg-type]
    )


def assert_green(
    job: JobResult, *, not_run: tuple[str, ...] = (), skipped: tuple[str, ...] = ()
) -> None:
    """The job succeeded, every step ran and passed except those GitHub must run and those
    whose `if:` does not hold for the event."""
    assert job.result == "success", job.report()
    for step in job.steps:
        expected = (
            "not run"
            if step.name in not_run
            else "skipped"
            if step.name in skipped
            else "success"
        )
        assert step.outcome == expected, job.report()


# The unit layer's slowest files, which the PR job's unit step leaves to the release job's
# `make test` on the same project (the step still runs the rest of the layer).
SLOW_UNIT_TESTS = (
    "tests/unit/test_monitoring.py",
    "tests/unit/test_stages.py",
    "tests/unit/test_challenge.py",
    "tests/unit/test_register.py",
)


def test_ci_on_a_pull_request_shows_the_differences(
    repository: Project, tmp_path: Path
) -> None:
    """The CI workflow's lint and test jobs, green on a pull request, and the summary of what
    it changes. The job leaves out the suite's data-independent files, the live canary and its
    decision check, the service layer and the slowest unit files: the release job's `make test`
    runs them on this very project (the job's own pipeline, which retrains with the branch's
    params, feeds the data, model and bias layers)."""
    environment = {
        **plain_shell_environment(),
        **deselecting(
            *DATA_INDEPENDENT_TESTS,
            *SLOW_UNIT_TESTS,
            CANARY_RELEASE_TEST,
            "tests/deploy/test_decision_check.py",
            "tests/service/",
        ),
        **ONE_OPENMP_THREAD,  # the two jobs run at once below, on this machine's cores
    }
    runner = make_runner(repository.path, "ci.yml", tmp_path, environment=environment)
    event = Event("pull_request", ref="tune", base="main")

    # GitHub runs the two jobs at once, each on a runner of its own
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(runner.run_job, job, event) for job in ("lint", "test")]
        lint, test = (job.result() for job in jobs)
    assert_green(lint)
    assert_green(test)
    # the unit layer once, in its own step; the lifecycle step runs the other layers
    unit = test.step("Unit tests").output
    rest = test.step("Lifecycle (dvc repro) and every other test layer").output
    assert re.search(r"^tests/unit/\S+ \.", unit, re.M), unit[-3000:]
    assert re.search(r"^tests/model/\S+ \.", rest, re.M), rest[-3000:]
    assert not re.search(r"^tests/unit/", rest, re.M), rest[-3000:]
    summary = test.summary
    assert "### Metrics and fairness: main → this pull request" in summary, summary
    metrics_table = summary.split("### Params")[0]
    assert re.search(
        r"\|\s*reports/train\.json\s*\|\s*decision_threshold\.cv_folds\s*\|\s*5\s*\|\s*4\s*\|\s*-1\s*\|",
        metrics_table,
    ), metrics_table
    params_table = summary.split("### Params")[1]
    assert re.search(
        r"\| params\.yaml\s*\|\s*train\.cv_folds\s*\|\s*5\s*\|\s*4\s*\|", params_table
    ), params_table
    plots = runner.artifacts / "plots-diff"
    assert (plots / "index.html").is_file(), sorted(runner.artifacts.rglob("*"))
    assert "origin/main" in (plots / "index.html").read_text()


def test_conditions_dvc_pull_with_credentials_never_for_forks_version_check_on_tags(
    tmp_path: Path,
) -> None:
    project = bake(
        tmp_path / "bake", {"dvc_remote": "s3", "dvc_remote_url": "s3://bucket/data"}
    )
    identity = ["-c", "user.name=Tests", "-c", "user.email=tests@example.com"]
    for args in (
        ["add", "-A"],
        [*identity, "commit", "-q", "-m", "x"],
        ["branch", "-M", "main"],
        ["tag", "v0.1.0"],
    ):
        subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)
    step = "Pull data and models from the DVC remote"
    secrets = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"}
    for workflow, job in (("ci.yml", "test"), ("release.yml", "image")):
        with_secrets = make_runner(project, workflow, tmp_path / "w", secrets=secrets)
        without = make_runner(project, workflow, tmp_path / "w")
        push = Event("push", ref="main")
        assert with_secrets.would_run(job, step, push)
        assert not without.would_run(job, step, push)
        if workflow == "ci.yml":
            assert with_secrets.would_run(
                job, step, Event("pull_request", "main", "main")
            )
            fork = Event("pull_request", "main", "main", from_fork=True)
            assert not with_secrets.would_run(job, step, fork)
    # The release's version check runs for a version tag only.
    release = make_runner(project, "release.yml", tmp_path / "w")
    tag_check = "A version tag matches pyproject.toml"
    assert release.would_run("image", tag_check, Event("push", ref="v0.1.0"))
    assert not release.would_run("image", tag_check, Event("push", ref="main"))
    # A local remote is not reachable from a runner: no pull step, the data in git is used.
    local = bake(tmp_path / "local", {})
    assert "make pull" not in (local / ".github" / "workflows" / "ci.yml").read_text()


@dataclass
class Dispatched:
    """A workflow's runner and what its main job did."""

    runner: WorkflowRunner
    job: JobResult
    details: dict[str, Any]


def one_thread_shell() -> dict[str, str]:
    """A user's shell with one OpenMP thread: the workflows below run at once."""
    return {**plain_shell_environment(), **ONE_OPENMP_THREAD}


def monitor_on_schedule(repository: Project, work: Path) -> Dispatched:
    """Simulated traffic logged by the service (`make simulate`), where the PREDICTION_LOG
    secret points; then monitor.yml's monitor job on a schedule."""
    repository.run("make", "simulate", timeout=900, env=ONE_OPENMP_THREAD)
    log = repository.path / "logs" / "predictions"
    assert log.exists(), "make simulate logged nothing"
    runner = make_runner(
        repository.path,
        "monitor.yml",
        work,
        environment=one_thread_shell(),
        # the service's pseudonymisation key (make simulate made it), as the LOG_KEY secret
        secrets={
            "PREDICTION_LOG": str(log),
            "LOG_KEY": (repository.path / "secrets" / "log-key").read_text(),
        },
        variables={"RETRAIN_ON_ALARM": "true"},
    )
    return Dispatched(
        runner, runner.run_job("monitor", Event("schedule", ref="main")), {}
    )


def retrain_on_dispatch(repository: Project, work: Path) -> Dispatched:
    runner = make_runner(
        repository.path, "retrain.yml", work, environment=one_thread_shell()
    )
    job = runner.run_job("retrain", Event("workflow_dispatch", ref="main"))
    return Dispatched(runner, job, {})


def batch_on_dispatch(repository: Project, work: Path) -> Dispatched:
    """batch.yml dispatched with explanations, first without the LOG_KEY secret, then with a
    key made as the service makes its own."""
    source = work / "applicants.csv"
    count, _ = broken_copy_of_the_test_split(repository, source)
    log = work / "log"
    secrets = {"BATCH_INPUT": str(source), "PREDICTION_LOG": str(log)}
    dispatch = Event("workflow_dispatch", ref="main", inputs={"explain": "true"})
    refused = make_runner(
        repository.path,
        "batch.yml",
        work / "refused",
        environment=one_thread_shell(),
        secrets=secrets,
    ).run_job("score", dispatch)
    key = work / "secrets" / "log-key"
    repository.run(
        "python",
        "-m",
        repository.path.name.replace("-", "_"),
        "log-key",
        env={"LOG_KEY_FILE": str(key)},
    )
    runner = make_runner(
        repository.path,
        "batch.yml",
        work / "work",
        environment=one_thread_shell(),
        secrets={**secrets, "LOG_KEY": key.read_text()},
    )
    job = runner.run_job("score", dispatch)
    details = {"count": count, "log": log, "key": key, "refused": refused}
    return Dispatched(runner, job, details)


@pytest.fixture(scope="module")
def dispatched(
    repository: Project, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Dispatched]]]:
    """The scheduled and dispatched workflows' main jobs, started together as GitHub runs
    separate workflows (each on a runner of its own); each test reads its own."""
    runs = {
        "monitor": monitor_on_schedule,
        "retrain": retrain_on_dispatch,
        "batch": batch_on_dispatch,
    }
    with ThreadPoolExecutor(len(runs)) as pool:
        yield {
            name: pool.submit(run, repository, tmp_path_factory.mktemp(name))
            for name, run in runs.items()
        }


def test_monitor_and_its_alarm(dispatched: dict[str, Future[Dispatched]]) -> None:
    done = dispatched["monitor"].result()
    runner, monitor = done.runner, done.job
    event = Event("schedule", ref="main")
    assert_green(monitor)
    assert (
        "PREDICTION_LOG" not in monitor.step("Check where the prediction log is").output
    )
    assert "LOG_KEY" not in monitor.step("The log's pseudonymisation key").output
    assert "drift" in monitor.summary.lower(), monitor.summary
    reports = runner.artifacts / "monitoring-reports"
    assert (reports / "summary.md").is_file() and (reports / "index.html").is_file()

    assert (
        runner.run_job("alarm", event, needs={"monitor": "success"}).result == "skipped"
    )
    alarm = runner.run_job("alarm", event, needs={"monitor": "failure"})
    assert_green(
        alarm,
        not_run=(
            "Open the monitoring issue, or comment on the open one",
            "Start retraining",
        ),
    )
    assert (alarm.workspace / "reports" / "summary.md").is_file()
    assert (
        runner.run_job("pages", event).result == "skipped"
    )  # off unless the variable says


def test_retrain_compares_with_main_for_review(
    dispatched: dict[str, Future[Dispatched]],
) -> None:
    job = dispatched["retrain"].result().job
    assert_green(job, not_run=("Open a pull request",))
    assert "### Metrics and fairness against main" in job.summary, job.summary
    assert "### Params against main" in job.summary
    # no deployed/production/* tag in this repository: the first deployment passes
    assert "### The candidate against production" in job.summary, job.summary
    assert "this is the first deployment" in job.summary, job.summary


def test_batch_scores_what_the_secret_names_into_an_artifact(
    dispatched: dict[str, Future[Dispatched]],
) -> None:
    """batch.yml dispatched with explanations: the file BATCH_INPUT names is scored (rejects
    beside it) into the `batch-scores` artifact, the scored rows into the log PREDICTION_LOG
    names; on a schedule it runs only when BATCH_ON_SCHEDULE says so."""
    done = dispatched["batch"].result()
    runner, job, details = done.runner, done.job, done.details
    without_key = details["refused"]  # a shared log needs the service's key
    assert without_key.result == "failure"
    assert (
        "Set the repository secret LOG_KEY"
        in without_key.step("The log's pseudonymisation key").output
    )
    assert_green(job)
    count = details["count"]
    said = f"scored {count - 2} of {count} rows into scores/scores.parquet"
    assert said in job.summary and "contributions explain" in job.summary, job.summary
    scores = runner.artifacts / "batch-scores"
    assert (scores / "scores.parquet").is_file()
    rejects = (scores / "scores.rejects.csv").read_text().splitlines()
    assert len(rejects) == 1 + 2, rejects  # the header and the two broken rows
    logged = [
        json.loads(line)
        for path in details["log"].glob("predictions-*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert len(logged) == count - 2
    # the sensitive column, pseudonymised under that key
    key_id = details["key"].read_text().split()[0]
    assert all(row["features"]["sex"].startswith(f"{key_id}:") for row in logged)
    assert runner.run_job("score", Event("schedule", ref="main")).result == "skipped"


def test_make_image_refuses_uncommitted_source_changes(
    repository: Project, tmp_path: Path
) -> None:
    project = repository.copy(tmp_path / repository.path.name)
    readme = project.path / "README.md"
    readme.write_text(readme.read_text() + "\nAn uncommitted line.\n")
    done = project.run("make", "image", check=False, timeout=600)
    assert done.returncode != 0
    assert "uncommitted changes (M README.md)" in done.stdout, done.stdout[-3000:]
    assert "ALLOW_DIRTY=1" in done.stdout
    assert "Successfully built Bento" not in done.stdout  # refused before the build


# --------------------------------------------------------------------------------------------
# The release image, built by the release job on a Docker engine


@dataclass(frozen=True)
class DockerEngine:
    """A Docker engine that answers: its client, and DOCKER_HOST when it is not the default."""

    client: Path
    host: str | None = None

    def env(self) -> dict[str, str]:
        return {**os.environ, **({"DOCKER_HOST": self.host} if self.host else {})}

    def run(
        self, *args: str, cwd: Path, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run_command(
            [str(self.client), *args], cwd, self.env(), check=check, timeout=300
        )

    def answers(self) -> bool:
        done = subprocess.run(
            [str(self.client), "info"], env=self.env(), capture_output=True, check=False
        )
        return done.returncode == 0


def docker_engine() -> DockerEngine | None:
    """The private engine of ../shared/tools/docker-daemon when it runs, else the `docker` on
    PATH (a GitHub runner's), whichever answers first."""
    daemon = TEMPLATE.parent / "shared" / "tools" / "docker-daemon"
    candidates = []
    if daemon.is_file():
        status = subprocess.run(
            [str(daemon), "status"], capture_output=True, text=True, check=False
        )
        if status.returncode == 0:
            directory = Path(os.environ.get("DOCKER_DAEMON_DIR", "/tmp/docker-daemon"))
            candidates.append(
                DockerEngine(
                    directory / "bin" / "docker", f"unix://{directory}/docker.sock"
                )
            )
    on_path = shutil.which("docker")
    if on_path:
        candidates.append(DockerEngine(Path(on_path)))
    return next((engine for engine in candidates if engine.answers()), None)


@pytest.fixture(scope="module")
def docker() -> DockerEngine:
    found = docker_engine()
    if found is None:
        reason = "no Docker engine answers (`docker info` fails): start Docker"
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(f"{reason}, and {REQUIRE}=1 requires the container test")
        pytest.skip(f"{reason}; set {REQUIRE}=1 to fail instead")
    return found


@pytest.fixture(scope="module")
def release(
    repository: Project, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[JobResult, list[str]]]:
    """The release job on a push to main, with the Docker engine's client on PATH where one
    answers (without one the job fails at the build, after its tests)."""
    engine = docker_engine()
    environment = plain_shell_environment(
        *([str(engine.client.parent)] if engine else [])
    )
    environment.update(LOAD_TEST_REQUESTS)
    if engine and engine.host:
        environment["DOCKER_HOST"] = engine.host
    runner = make_runner(
        repository.path,
        "release.yml",
        tmp_path_factory.mktemp("release"),
        environment=environment,
    )
    job = runner.run_job("image", Event("push", ref="main"))
    tags = (
        job.step("Build the image (bentoml containerize)")
        .outputs.get("tags", "")
        .split()
    )
    try:
        yield job, tags
    finally:
        if tags and engine:
            engine.run("rmi", "--force", *tags, cwd=repository.path, check=False)


def test_release_job_runs_the_lifecycle_and_every_test_layer(
    release: tuple[JobResult, list[str]],
) -> None:
    """The one run of the default project's whole suite (`make test`: every layer, the load,
    overload and durability tests, the live canary), in the job's fresh clone and .venv; the
    other runs of the generated suite leave those files out (conftest.DATA_INDEPENDENT_TESTS)."""
    job, _ = release
    step = job.step("Lifecycle and every test layer (the gates decide what ships)")
    assert step.outcome == "success", job.report()
    summary = step.output.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "failed" not in summary, summary
    for path in (
        *DATA_INDEPENDENT_TESTS,
        CANARY_RELEASE_TEST,
        "tests/service/test_api",
    ):
        assert re.search(rf"^{re.escape(path)}\S* [.s]*\.", step.output, re.M), (
            f"{path} did not run:\n{step.output[-3000:]}"
        )


def as_the_pod_runs_it(project: Path, secrets: Path) -> tuple[list[str], str]:
    """`docker run` options that run the image as deploy/'s Deployment does: its uid and gid, a
    read-only root, no capabilities, no privilege escalation, a tmpfs for each emptyDir, its
    environment, each Secret volume a read-only directory `secrets/<volume>` (a volume with no
    directory there is left out, with the variables naming its files); and the uid."""
    deployment = yaml.safe_load((project / "deploy/base/deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    user = pod["securityContext"]
    options = ["--user", f"{user['runAsUser']}:{user['runAsGroup']}"]
    options += ["--group-add", str(user["fsGroup"]), "--cap-drop", "ALL"]
    options += ["--security-opt", "no-new-privileges"]
    if container["securityContext"]["readOnlyRootFilesystem"]:
        options.append("--read-only")
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    absent = []
    for mount in container["volumeMounts"]:
        if "emptyDir" in volumes[mount["name"]]:
            options += ["--tmpfs", f"{mount['mountPath']}:rw,exec,mode=1777"]
        elif (secrets / mount["name"]).is_dir():
            options += [
                "--volume",
                f"{secrets / mount['name']}:{mount['mountPath']}:ro",
            ]
        else:
            absent.append(mount["mountPath"] + "/")
    for variable in container["env"]:
        if not variable["value"].startswith(tuple(absent)):
            options += ["--env", f"{variable['name']}={variable['value']}"]
    return options, str(user["runAsUser"])


def pod_secrets(project: Path, directory: Path) -> Path:
    """The Secrets' files the pod would mount: the log's location (a directory on the pod's
    /tmp), and the project's tokens and log key where it has them. World-readable: Docker has
    no fsGroup to give them to the pod's group."""
    files = {
        "prediction-log/url": "/tmp/prediction-log",
        "api-tokens/tokens.json": project / "secrets" / "tokens.json",
        "log-key/log-key": project / "secrets" / "log-key",
    }
    for name, content in files.items():
        if isinstance(content, Path) and not content.is_file():
            continue
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content.read_text() if isinstance(content, Path) else content)
        path.chmod(0o444)
        path.parent.chmod(0o755)
    return directory


@pytest.mark.container
def test_release_job_builds_a_labelled_image_that_serves_the_model(
    release: tuple[JobResult, list[str]],
    repository: Project,
    docker: DockerEngine,
    tmp_path: Path,
) -> None:
    job, tags = release
    tag_check = "A version tag matches pyproject.toml"
    assert_green(job, not_run=("Push to GHCR",), skipped=(tag_check,))
    defaults = cookiecutter_defaults()
    slug = repository.path.name
    image = f"ghcr.io/{defaults['github_owner']}/{slug}"
    head = repository.run("git", "rev-parse", "main").stdout.strip()
    registry = json.loads((job.workspace / "reports" / "registry.json").read_text())
    model_version = registry["tag"].split(":")[1]
    assert sorted(tags) == sorted(
        [f"{image}:0.1.0", f"{image}:sha-{head[:7]}", f"{image}:model-{model_version}"]
    )

    def docker_run(*args: str) -> str:
        return docker.run(*args, cwd=tmp_path).stdout

    ids = {
        docker_run("image", "inspect", "--format", "{{.Id}}", tag).strip()
        for tag in tags
    }
    assert len(ids) == 1, f"the tags name different images: {ids}"
    config = json.loads(
        docker_run("image", "inspect", "--format", "{{json .Config}}", tags[0])
    )
    labels = config["Labels"]
    lineage = registry  # register's record: git, data, params as the lineage has them
    assert (
        labels["org.opencontainers.image.source"]
        == f"https://github.com/{defaults['github_owner']}/{slug}"
    )
    assert labels["org.opencontainers.image.revision"] == head
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00",
        labels["org.opencontainers.image.created"],
    )
    assert labels["lineage.model"] == registry["tag"]
    bundle = (job.workspace / "models" / "model.joblib").read_bytes()
    assert labels["lineage.model-sha256"] == hashlib.sha256(bundle).hexdigest()
    assert labels["lineage.data-sha256"] == lineage["data"]["sha256"]
    assert re.fullmatch(r"[0-9a-f]{64}", labels["lineage.params-sha256"])
    assert labels["lineage.dirty"] == "false"
    assert config["User"] not in ("", "root", "0")

    # The service needs a tokens file: made by the project's own command, then mounted as the
    # pod mounts its Secret (pod_secrets reads it from the project's secrets/ directory).
    workspace = Project(job.workspace, repository.environment)
    package = slug.replace("-", "_")
    token = workspace.run(
        f"python -m {package} token --name release-check --scopes predict 2>/dev/null",
        env={"API_TOKENS_FILE": str(job.workspace / "secrets" / "tokens.json")},
    ).stdout.strip()
    # and the log's pseudonymisation key (schema.yaml pseudonymises a column), its Secret too
    workspace.run(
        f"python -m {package} log-key",
        env={"LOG_KEY_FILE": str(job.workspace / "secrets" / "log-key")},
    )
    port = free_port()
    # As the pod runs it (restricted profile): another uid than the image's user, read-only.
    secrets = pod_secrets(job.workspace, tmp_path / "secrets")
    pod_options, pod_uid = as_the_pod_runs_it(repository.path, secrets)
    container = docker_run(
        "run",
        "--detach",
        "--rm",
        "--network",
        "host",
        *pod_options,
        tags[0],
        "serve",
        "--port",
        str(port),
    ).strip()
    log = tmp_path / "container.log"
    log.write_text("")
    try:
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(url, 300, log)
        finally:
            log.write_text(
                docker.run("logs", container, cwd=tmp_path, check=False).stdout
            )
        offline = offline_prediction(workspace)
        status, body = http(f"{url}/predict", {"records": [offline["record"]]})
        assert status == 401, body
        status, body = http(
            f"{url}/predict", {"records": [offline["record"]]}, token=token
        )
        assert status == 200, body
        [answer] = json.loads(body)
        assert answer["probability"] == pytest.approx(offline["probability"], abs=1e-9)
        assert answer["label"] == offline["label"]
        assert answer["model_version"] == registry["tag"]
        assert docker_run("exec", container, "id", "-u").strip() == pod_uid != "0"
    finally:
        docker.run("rm", "--force", container, cwd=tmp_path, check=False)
