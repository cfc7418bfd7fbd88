"""Every Python the template offers: a project baked for it installs with that interpreter
(`make setup`: uv sync of the lock made for it), passes `make lint` (ruff, mypy) and its unit
tests (`make test-unit`: the unit layer alone, on a fresh bake with no pipeline outputs), in a
plain shell whose PATH has that Python and no uv (the Makefile installs its own). The oldest
of them runs as in many CI images, whose imports write no bytecode (PYTHONDONTWRITEBYTECODE):
its setup compiles the environment, once.

3.11, the default, is the interpreter of the shared project environment: every end-to-end test
runs on it (the release job in test_workflows runs the default project's whole `make test`).
Here the others, each in its own .venv, run at the same time. The interpreter comes from PATH
(`python3.12`; GitHub's setup-python puts it there) or pyenv (`$(pyenv root)/versions/3.12.*`).
Missing, the case skips, unless REQUIRE_ALL_PYTHONS=1 (the template's .ci/run sets it): then
it fails.
"""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    ONE_OPENMP_THREAD,
    bake,
    interpreter_directory,
    interpreter_or_skip,
    plain_shell_environment,
    run_command,
)
from test_bake import PYTHON_VERSIONS

pytestmark = pytest.mark.e2e

DEFAULT = "3.11"
OTHERS = [v for v in PYTHON_VERSIONS if v != DEFAULT]
# The one whose setup compiles its environment (the others' leave that to their imports: the
# same Makefile rule, and about 45 s of CPU each).
COMPILING = OTHERS[0]


@dataclass
class Run:
    project: Path
    env: dict[str, str]
    done: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Each installed offered Python's bake, and its `make lint test-unit` started together
    with the others': each runs one process at a time (uv, ruff, mypy, pytest), so two share
    two cores."""
    baked = {}  # one at a time: cookiecutter changes the working directory as it bakes
    for version in OTHERS:
        directory = interpreter_directory(version)
        if directory is not None:
            output = tmp_path_factory.mktemp(f"python{version}")
            baked[version] = (bake(output, {"python_version": version}), directory)

    def run(version: str) -> Run:
        project, directory = baked[version]
        # One OpenMP thread each (scikit-learn's): two runs on two cores, a team of two
        # threads each would spin waiting for the core the other run holds.
        env = {**plain_shell_environment(str(directory)), **ONE_OPENMP_THREAD}
        if version == COMPILING:
            # A user's setup, compiling the environment, in a shell whose imports write no
            # bytecode (as in many CI images): what is compiled, setup compiled.
            del env["UV_COMPILE_BYTECODE"]
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        done = run_command(
            ["make", "lint", "test-unit"], project, env, check=False, timeout=1800
        )
        return Run(project, env, done)

    with ThreadPoolExecutor(max(1, len(baked))) as pool:
        futures = {version: pool.submit(run, version) for version in baked}
        return {v: future.result() for v, future in futures.items()}


@pytest.mark.parametrize("version", OTHERS)
def test_unit_tests_pass_on_every_offered_python(
    version: str, runs: dict[str, Run]
) -> None:
    interpreter_or_skip(version)
    project, env, done = runs[version].project, runs[version].env, runs[version].done
    assert done.returncode == 0, done.stdout[-3000:]
    interpreter = (project / ".venv" / "bin" / "python").resolve()
    probe = run_command(
        [str(interpreter), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        project,
        env,
    )
    assert probe.stdout.strip() == version, f".venv runs Python {probe.stdout.strip()}"
    # "N passed, [N skipped, ]N deselected": the PostgreSQL cases skip without a database,
    # the other layers are deselected
    summary = re.search(
        r"(\d+) passed, (?:\d+ skipped, )?(\d+) deselected", done.stdout
    )
    assert summary, done.stdout[-3000:]
    assert int(summary[1]) > 50 and int(summary[2]) > 0, summary[0]
    assert " failed" not in done.stdout, done.stdout[-3000:]


def test_setup_compiles_the_environment_once_per_lock(runs: dict[str, Run]) -> None:
    """`make setup` leaves every module compiled for its Python (no stage compiles what it
    imports, even where imports may not write bytecode), and a second setup with the same
    uv.lock does not compile again."""
    version = COMPILING
    interpreter_or_skip(version)
    project, env, done = runs[version].project, runs[version].env, runs[version].done
    assert done.returncode == 0, done.stdout[-3000:]
    assert "UV_COMPILE_BYTECODE" in done.stdout, done.stdout[-3000:]
    site = next((project / ".venv" / "lib").glob("python*/site-packages"))
    modules = [
        *(site / "sklearn").rglob("*.py"),
        *(site / "dvc").rglob("*.py"),
        *(project / "src").rglob("*.py"),
    ]
    tag = "cpython-" + version.replace(".", "")
    uncompiled = [
        str(module)
        for module in modules
        if not (module.parent / "__pycache__" / f"{module.stem}.{tag}.pyc").is_file()
    ]
    assert len(modules) > 500 and not uncompiled, uncompiled[:10]
    again = run_command(["make", "setup"], project, env)
    assert "UV_COMPILE_BYTECODE" not in again.stdout, again.stdout
