"""Shared fixtures of the template's own test suite.

Baking is cheap; installing the generated project's dependencies is not (about 1.2 GB, a
minute). So every baked project that needs its tools shares ONE virtual environment,
``<template>/.cache/project-env/<hash>``, created by the first ``make setup`` and reused by
later ones and by later test sessions. The hash covers the template's ``pyproject.toml`` (and
``uv.lock`` if the template ships one), so moving a pin builds a fresh environment. Each project
still runs its own ``make setup`` (``uv sync`` with ``UV_PROJECT_ENVIRONMENT`` pointing at the
shared environment): the command is exercised, but after the first time it only reinstalls the
small project package.

Because one environment serves several projects, commands run through ``Project.run`` put the
project's own ``src/`` first on ``PYTHONPATH``: whichever project was installed last, the code
that runs is the code of the project the command runs in.

Fixtures others rely on (keep the contract):

* ``default_project``: a project baked with every default, ``make setup`` and ``make pipeline``
  done. Shared by the whole session: read it, never change it; copy it (``.copy(dest)``) to
  change anything.
* ``bake_project``: ``bake_project(extra_context=None, *, setup=False, pipeline=False)`` bakes a
  fresh project into its own temporary directory and returns the same kind of object.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

TEMPLATE = Path(__file__).resolve().parents[1]
TEMPLATE_PROJECT = TEMPLATE / "{{cookiecutter.project_slug}}"
CACHE = TEMPLATE / ".cache"
ENVS = CACHE / "project-env"
STALE_ENV_SECONDS = (
    7 * 24 * 3600
)  # shared environments of other pins unused this long are removed
OUTPUT_TAIL = (
    6000  # characters of a failed command's output shown in the assertion message
)

# Variables that must not leak from the outer `make test` or an activated environment into the
# commands run in a baked project.
LEAKY_VARIABLES = (
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
    "MAKEOVERRIDES",
    "VIRTUAL_ENV",
    "PYTHONHOME",
    "PYTHONPATH",
    "CONDA_PREFIX",
    "UV_PROJECT_ENVIRONMENT",
    "PYTEST_ADDOPTS",
    "PYTEST_ARGS",  # the template's Makefile passes it to pytest, and so would a project's
    "PREDICTION_LOG",  # the generated service reads it: a shell value must not redirect logs
    # Set on some CI machines (this workplace's among them), not in a user's shell: with it, no
    # process caches the bytecode of what it imports, so each one compiles pandas, scikit-learn,
    # BentoML and DVC again (about 6 s of CPU per process here).
    "PYTHONDONTWRITEBYTECODE",
)

MARKERS = {
    "e2e": "runs a baked project's pipeline or tools (slow: uses the shared project environment)",
    "container": "builds or runs the generated project's container image",
    "slow": "takes more than a few seconds even without the project environment",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")


# --------------------------------------------------------------------------------------------
# Baking


def cookiecutter_defaults() -> dict[str, Any]:
    """cookiecutter.json as data."""
    return json.loads((TEMPLATE / "cookiecutter.json").read_text())


def bake(output_dir: Path, extra_context: Mapping[str, str] | None = None) -> Path:
    """Bake the template without prompts into output_dir; return the project directory.

    A private cookiecutter config keeps the user's ~/.cookiecutterrc (default_context) out and
    writes the replay file into output_dir instead of the home directory.
    """
    from cookiecutter.main import cookiecutter

    output_dir.mkdir(parents=True, exist_ok=True)
    user_dir = output_dir / ".cookiecutter-user"
    user_dir.mkdir(exist_ok=True)
    config_file = user_dir / "config.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "cookiecutters_dir": str(user_dir / "cookiecutters"),
                "replay_dir": str(user_dir / "replay"),
                "default_context": {},
                "abbreviations": {},
            }
        )
    )
    project = cookiecutter(
        str(TEMPLATE),
        no_input=True,
        extra_context=dict(extra_context or {}),
        output_dir=str(output_dir),
        config_file=str(config_file),
    )
    return Path(project)


# --------------------------------------------------------------------------------------------
# The shared project environment


def environment_key() -> str:
    """Hash of what decides the project environment's contents: the pins and the Python."""
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "uv.lock", ".python-version"):
        path = TEMPLATE_PROJECT / name
        digest.update(name.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"(absent)")
    digest.update(str(cookiecutter_defaults().get("python_version")).encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ProjectEnvironment:
    """One virtual environment shared by every baked project of a test session (and later ones)."""

    path: Path

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    def variables(self, project: Path, *, activated: bool = True) -> dict[str, str]:
        """The environment for a command run in `project`: a user's PATH (see `user_path`),
        with the project environment's bin first when `activated` (as after
        `source .venv/bin/activate`), never for `make` (the project's Makefile must find or
        install uv by itself)."""
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in LEAKY_VARIABLES
        }
        path = user_path()
        if activated:
            path = os.pathsep.join([str(self.bin), path])
            env["VIRTUAL_ENV"] = str(self.path)
        env["PATH"] = path
        env.update(
            {
                # The one deviation from a user's shell: every baked project's environment
                # is this shared one (uv and the Makefile honour the variable as they would
                # .venv), so that its 1.2 GB are installed once.
                "UV_PROJECT_ENVIRONMENT": str(self.path),
                "UV_PYTHON_DOWNLOADS": "never",  # no interpreter downloads here: fail clearly
                "UV_NO_PROGRESS": "1",
                **NO_SETUP_COMPILE,
                "PYTHONPATH": str(
                    project / "src"
                ),  # this project's code, whichever is installed
                "DVC_NO_ANALYTICS": "1",
                "DO_NOT_TRACK": "1",
                "BENTOML_DO_NOT_TRACK": "true",
                "BENTOML_HOME": str(project / ".bentoml"),
                # `git commit` in a baked project must not depend on the machine's git config.
                "GIT_AUTHOR_NAME": "Template Tests",
                "GIT_AUTHOR_EMAIL": "template-tests@example.com",
                "GIT_COMMITTER_NAME": "Template Tests",
                "GIT_COMMITTER_EMAIL": "template-tests@example.com",
            }
        )
        return env


def user_path() -> str:
    """This machine's PATH as a user's shell has it: without the template's .venv (the test
    runner's own tools) and without any directory holding a `uv` (most users have none; the
    project's Makefile installs its own)."""
    own_tools = (TEMPLATE / ".venv" / "bin").resolve()
    kept = []
    for entry in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if not entry or Path(entry).resolve() == own_tools:
            continue
        if (Path(entry) / "uv").exists():
            continue
        kept.append(entry)
    return os.pathsep.join(kept)


def plain_shell_environment(*first: str) -> dict[str, str]:
    """A user's shell on this machine, for commands that must not use the shared project
    environment (they install their own .venv): a user's PATH (see `user_path`) after the
    directories in `first`, nothing of an activated environment, BentoML, GitHub or Docker
    settings, and no interpreter downloads (none are possible here: fail clearly)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in LEAKY_VARIABLES
        and not key.startswith(("UV_", "BENTOML_", "GITHUB_", "RUNNER_", "DOCKER_"))
    }
    env["PATH"] = os.pathsep.join([*first, user_path()])
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["UV_NO_PROGRESS"] = "1"
    env.update(NO_SETUP_COMPILE)
    for role in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{role}_NAME"] = "Template Tests"
        env[f"GIT_{role}_EMAIL"] = "template-tests@example.com"
    return env


ALL_PYTHONS_REQUIRED = "REQUIRE_ALL_PYTHONS"


def interpreter_directory(version: str) -> Path | None:
    """A directory whose `python<version>` is that Python (not a version-manager shim): on a
    user's PATH (GitHub's setup-python puts it there) or pyenv's `versions/<version>.*`."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = sorted((root / "versions").glob(f"{version}.*/bin"), reverse=True)
    found = shutil.which(f"python{version}", path=user_path())
    if found and "shims" not in Path(found).parts:
        candidates.insert(0, Path(found).parent)
    for directory in candidates:
        python = directory / f"python{version}"
        probe = subprocess.run(
            [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return directory
    return None


def interpreter_or_skip(version: str) -> Path:
    """`interpreter_directory(version)`; missing, the test skips saying what to install, or
    fails where REQUIRE_ALL_PYTHONS=1 (the template's .ci/run sets it)."""
    directory = interpreter_directory(version)
    if directory is None:
        reason = f"Python {version} is not installed (install it on PATH or with pyenv)"
        if os.environ.get(ALL_PYTHONS_REQUIRED) == "1":
            pytest.fail(
                f"{reason}, and {ALL_PYTHONS_REQUIRED}=1 requires every offered Python"
            )
        pytest.skip(f"{reason}; set {ALL_PYTHONS_REQUIRED}=1 to fail instead")
    return directory


def _prune_stale_environments(keep: Path) -> None:
    if not ENVS.is_dir():
        return
    for other in ENVS.iterdir():
        if other == keep or not other.is_dir():
            continue
        if time.time() - other.stat().st_mtime > STALE_ENV_SECONDS:
            shutil.rmtree(other, ignore_errors=True)


@pytest.fixture(scope="session")
def project_environment() -> ProjectEnvironment:
    """The shared environment; `make setup` of the first project creates it (uv sync)."""
    path = ENVS / environment_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not (path / "pyvenv.cfg").is_file():
        shutil.rmtree(path)  # an interrupted creation: start again
    _prune_stale_environments(keep=path)
    if path.exists():
        os.utime(path)  # in use: not stale
    return ProjectEnvironment(path=path)


# --------------------------------------------------------------------------------------------
# Running commands in a baked project


def _tail(text: str) -> str:
    """The end of a command's output, after the failure lines of any pytest run in it."""
    tail = text if len(text) <= OUTPUT_TAIL else "...\n" + text[-OUTPUT_TAIL:]
    failures = re.findall(r"^(?:FAILED|ERROR) .*$", text, flags=re.M)
    if not failures:
        return tail
    listed = "\n".join(line[:300] for line in failures[:40])
    return f"--- failed tests ---\n{listed}\n--- output ---\n{tail}"


def run_command(
    args: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    *,
    check: bool = True,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run a command, output (stdout and stderr, interleaved) captured as text in `.stdout`.

    The command gets its own process group, so a timeout stops its children too (make, dvc and
    the stage processes), not just the direct child.
    """
    started = time.monotonic()
    process = subprocess.Popen(
        list(args),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(
            f"timed out after {timeout:.0f} s: {' '.join(args)}\n(in {cwd})\n{_tail(output)}"
        ) from None
    result = subprocess.CompletedProcess(list(args), process.returncode, output, None)
    if check and result.returncode != 0:
        elapsed = time.monotonic() - started
        raise AssertionError(
            f"exit {result.returncode} after {elapsed:.0f} s: {' '.join(args)}\n"
            f"(in {cwd})\n--- output (tail) ---\n{_tail(output)}"
        )
    return result


@dataclass
class Project:
    """A baked project and a way to run commands in it with the shared environment."""

    path: Path
    environment: ProjectEnvironment

    def env(
        self, extra: Mapping[str, str] | None = None, *, activated: bool = True
    ) -> dict[str, str]:
        variables = self.environment.variables(self.path, activated=activated)
        variables.update(extra or {})
        return variables

    def run(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 600,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the project directory.

        ``run("dvc", "repro")`` runs the program with those arguments; a single argument with
        a space, ``run("git add -A && git commit -qm x")``, runs through ``bash -c``. `make`
        runs with a user's plain PATH (no uv, no project environment); anything else as in
        an activated project environment. `env` adds or overrides variables. Output (stdout
        and stderr together) is in ``.stdout``. With check=True a non-zero exit raises
        AssertionError showing the command and the tail of its output.
        """
        if not args:
            raise ValueError("run() needs a command")
        command = (
            ["bash", "-c", args[0]] if len(args) == 1 and " " in args[0] else list(args)
        )
        activated = command[0] != "make"
        return run_command(
            command,
            self.path,
            self.env(env, activated=activated),
            check=check,
            timeout=timeout,
        )

    def setup(self) -> Project:
        """The project's own `make setup` (uv sync into the shared environment)."""
        self.run("make", "setup", timeout=1200)
        return self

    def pipeline(self) -> Project:
        """The project's own `make pipeline` (dvc repro)."""
        self.run("make", "pipeline", timeout=1200)
        return self

    def copy(self, destination: Path) -> Project:
        """A full copy (git repository, DVC cache, outputs) to change without touching this one.

        Timestamps are kept, so DVC finds the outputs it knows and reruns only what changed.
        """
        shutil.copytree(self.path, destination, symlinks=True)
        return Project(destination, self.environment)

    def commit(self, message: str = "snapshot") -> None:
        """Commit everything git sees (DVC outputs are ignored, dvc.lock is not)."""
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "--no-verify", "--allow-empty", "-m", message)


BakeProject = Callable[..., Project]

# Files of the generated suite that do not depend on the task or the data: the release job's
# `make test` (test_workflows.py) runs them on the default project, and the other runs of the
# suite (another task, another dataset, the CI workflow's job) leave them out, for the
# template's CI time budget.
# The live canary release (Envoy, Prometheus, five services, four minutes) is task-independent
# too but for its decision check, which the quick tests/deploy/test_decision_check.py measures
# on every run: the release job runs the release on the default project, the others leave it out.
DATA_INDEPENDENT_TESTS = (
    "tests/service/test_load.py",
    "tests/service/test_overload.py",
    "tests/service/test_durability.py",
    "tests/unit/test_lineage.py",
)
CANARY_RELEASE_TEST = "tests/deploy/test_canary.py"
# The generated load test's requests in the template's runs (its default, 10,000, is a user's):
# at concurrency 32 still thousands of batches joined under a full queue, for the time budget.
LOAD_TEST_REQUESTS = {"LOAD_REQUESTS": "3000"}
# For runs made at the same time on this machine's two cores (another task's project, CI's two
# jobs, separate workflows, experiments, other Pythons): one OpenMP thread each (scikit-learn's),
# or each run's team of two spins for the core the other run holds.
ONE_OPENMP_THREAD = {"OMP_NUM_THREADS": "1"}
# `make setup` compiles a whole environment's bytecode once (about 45 s of CPU here): worth it
# for a user's .venv, not for the environments of one test each (a workflow job's, which imports
# a fraction of it and writes that bytecode as it goes) or for the shared one, whose bytecode the
# imports write. The compiling setup is test_pythons' (the project's UV_COMPILE_BYTECODE=0).
NO_SETUP_COMPILE = {"UV_COMPILE_BYTECODE": "0"}


def deselecting(*paths: str) -> dict[str, str]:
    """The environment that leaves `paths` out of a generated project's pytest runs."""
    return {"PYTEST_ADDOPTS": " ".join(f"--deselect {path}" for path in paths)}


@pytest.fixture(scope="session")
def bake_project(
    tmp_path_factory: pytest.TempPathFactory, project_environment: ProjectEnvironment
) -> BakeProject:
    """Factory: bake_project(extra_context=None, *, setup=False, pipeline=False) -> Project."""

    def factory(
        extra_context: Mapping[str, str] | None = None,
        *,
        setup: bool = False,
        pipeline: bool = False,
    ) -> Project:
        project = Project(
            bake(tmp_path_factory.mktemp("bake"), extra_context), project_environment
        )
        if setup or pipeline:
            project.setup()
        if pipeline:
            project.pipeline()
        return project

    return factory


@pytest.fixture(scope="session")
def default_project(bake_project: BakeProject) -> Project:
    """A default project after `make setup` and `make pipeline`. Shared: do not change it."""
    return bake_project(pipeline=True)


# ---------------------------------------------------------------------------------------
# A real PostgreSQL server (.ci/run starts Debian's and creates the role; see test_postgres.py)

POSTGRES_REQUIRED = "REQUIRE_POSTGRES_TEST"
POSTGRES_ROLE = os.environ.get("TEMPLATE_TESTS_POSTGRES_ROLE", "template_tests")
POSTGRES_PASSWORD = os.environ.get("TEMPLATE_TESTS_POSTGRES_PASSWORD", "template-tests")
POSTGRES_SERVER = "127.0.0.1:5432"

POSTGRES_ADMIN = r"""
import sys, sqlalchemy as sa
url, action, name = sys.argv[1:4]
engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
with engine.connect() as connection:
    if action == "create":
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    elif action == "drop":
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    else:
        connection.execute(sa.text("SELECT 1"))
"""


def postgres_url(database: str, password: str = POSTGRES_PASSWORD) -> str:
    return f"postgresql://{POSTGRES_ROLE}:{password}@{POSTGRES_SERVER}/{database}"


@pytest.fixture
def postgres_database(default_project: Project) -> Iterator[str]:
    """A fresh database on the server, dropped afterwards; skips without a server."""
    probe = default_project.run(
        "python",
        "-c",
        POSTGRES_ADMIN,
        postgres_url(POSTGRES_ROLE),
        "probe",
        "-",
        check=False,
    )
    if probe.returncode != 0:
        reason = f"no PostgreSQL server answers as {POSTGRES_ROLE} on {POSTGRES_SERVER}"
        if os.environ.get(POSTGRES_REQUIRED) == "1":
            pytest.fail(
                f"{reason}, and {POSTGRES_REQUIRED}=1 requires it:\n{probe.stdout[-2000:]}"
            )
        pytest.skip(f"{reason} (set {POSTGRES_REQUIRED}=1 to fail instead)")
    name = f"template_tests_{uuid.uuid4().hex[:12]}"
    default_project.run(
        "python", "-c", POSTGRES_ADMIN, postgres_url(POSTGRES_ROLE), "create", name
    )
    try:
        yield name
    finally:
        default_project.run(
            "python",
            "-c",
            POSTGRES_ADMIN,
            postgres_url(POSTGRES_ROLE),
            "drop",
            name,
            check=False,
        )
