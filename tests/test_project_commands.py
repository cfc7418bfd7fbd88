"""The generated project's Makefile commands not covered elsewhere (setup, pipeline, test, lint,
schema, build, serve and image have their own tests): help, test-unit, format, clean; and the git
hooks `make setup` installs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import BakeProject, Project, user_path

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(
    default_project: Project, tmp_path_factory: pytest.TempPathFactory
) -> Project:
    return default_project.copy(tmp_path_factory.mktemp("commands") / "project")


def test_help_lists_every_advertised_command(project: Project) -> None:
    makefile = (project.path / "Makefile").read_text()
    advertised = set(re.findall(r"^([a-z-]+):.*## ", makefile, flags=re.M))
    shown = project.run("make", "--no-print-directory", "help").stdout
    assert set(re.findall(r"^\s+make (\S+)", shown, flags=re.M)) == advertised
    assert advertised >= {
        "setup",
        "pipeline",
        "schema",
        "test",
        "lint",
        "build",
        "serve",
        "image",
    }


def test_unit_layer_runs_alone(project: Project) -> None:
    result = project.run("make", "test-unit", timeout=900)
    summary = re.search(r"(\d+) passed, (\d+) deselected", result.stdout)
    assert summary, result.stdout[-2000:]
    assert int(summary[1]) > 50 and int(summary[2]) > 0
    assert " failed" not in result.stdout


def changed_files(project: Project) -> list[str]:
    """Files that differ from the last commit, untracked ones listed one by one."""
    listed = project.run("git", "status", "--porcelain", "--untracked-files=all").stdout
    return [line[3:] for line in listed.splitlines()]


def test_format_leaves_a_generated_project_unchanged(
    project: Project, tmp_path: Path
) -> None:
    """Compared with a commit of the bake: uncommitted, src/ and tests/ would each show as one
    untracked line whatever `make format` rewrote inside them. A mis-formatted file committed
    afterwards shows the comparison sees a reformat."""
    formatted = project.copy(tmp_path / "project")
    formatted.commit("as baked")
    formatted.run("make", "format")
    assert changed_files(formatted) == [], "make format rewrote files of a fresh bake"

    (formatted.path / "misformatted.py").write_text("GREETING = 'hello'\n")
    formatted.commit("a file ruff format rewrites")
    formatted.run("make", "format")
    assert changed_files(formatted) == ["misformatted.py"]


def test_clean_removes_caches_only(project: Project) -> None:
    cache = project.path / "src" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (project.path / ".pytest_cache").mkdir(exist_ok=True)
    project.run("make", "clean")
    assert not cache.exists() and not (project.path / ".pytest_cache").exists()
    for kept in ("models/model.joblib", "data/raw/data.csv", "reports/metrics.json"):
        assert (project.path / kept).is_file(), kept
    assert Path(project.environment.path / "pyvenv.cfg").is_file()


def test_setup_installs_git_hooks_that_pass_on_a_fresh_bake(
    bake_project: BakeProject,
) -> None:
    """`make setup` installs the pre-commit hook; a first commit from a plain shell (no uv on
    PATH: the hooks use the project's own) runs every hook offline, and they all pass."""
    project = bake_project(setup=True)
    hook = project.path / ".git" / "hooks" / "pre-commit"
    assert hook.is_file(), "make setup installed no pre-commit hook"
    project.run("git", "add", "-A")
    done = project.run(
        "git", "commit", "-q", "-m", "Initial project", env={"PATH": user_path()}
    )
    for name in (
        "ruff check",
        "ruff format --check",
        "mypy",
        "YAML parses",
        "no trailing whitespace",
    ):
        assert re.search(rf"^{re.escape(name)}\.+Passed$", done.stdout, flags=re.M), (
            done.stdout
        )
    assert (
        project.run("git", "status", "--porcelain").stdout == ""
    )  # no hook changed a file
    again = project.run("pre-commit", "run", "--all-files")
    assert "Failed" not in again.stdout
