"""Every Python the template offers: a project baked for it installs with that interpreter
(`make setup`: uv sync of the lock made for it), passes `make lint` (ruff, mypy) and its unit
tests (`make test-unit`: the unit layer alone, on a fresh bake with no pipeline outputs), in a
plain shell whose PATH has that Python and no uv (the Makefile installs its own).

3.11, the default, is the interpreter of the shared project environment: every end-to-end test
runs on it (the release job in test_workflows runs the default project's whole `make test`).
Here the others, each in its own .venv. The interpreter comes from PATH (`python3.12`;
GitHub's setup-python puts it there) or pyenv (`$(pyenv root)/versions/3.12.*`). Missing, the
case skips, unless REQUIRE_ALL_PYTHONS=1 (the template's .ci/run sets it): then it fails.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import bake, interpreter_or_skip, plain_shell_environment, run_command
from test_bake import PYTHON_VERSIONS

pytestmark = pytest.mark.e2e

DEFAULT = "3.11"


@pytest.mark.parametrize("version", [v for v in PYTHON_VERSIONS if v != DEFAULT])
def test_unit_tests_pass_on_every_offered_python(version: str, tmp_path: Path) -> None:
    directory = interpreter_or_skip(version)
    project = bake(tmp_path, {"python_version": version})
    env = plain_shell_environment(str(directory))
    done = run_command(["make", "lint", "test-unit"], project, env, timeout=1800)
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
