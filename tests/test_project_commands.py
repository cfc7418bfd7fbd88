"""The generated project's Makefile commands not covered elsewhere (setup, pipeline, test, lint,
schema, build, serve and image have their own tests; test-unit runs alone on a fresh bake in
test_pythons.py): help, format, clean, token; and the git hooks `make setup` installs."""

from __future__ import annotations

import hashlib
import json
import re
import stat
from pathlib import Path

import pytest
from conftest import Project, user_path

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


def test_token_is_printed_once_kept_as_a_digest_listed_and_revoked(
    project: Project,
) -> None:
    created = project.run("make", "token", "NAME=ci-client", "SCOPES=predict,feedback")
    printed = re.findall(r"^mls_\S+$", created.stdout, flags=re.M)  # a line of its own
    assert len(printed) == 1, created.stdout
    token = printed[0]
    tokens = project.path / "secrets" / "tokens.json"
    kept = tokens.read_text()
    assert token not in kept
    [entry] = [e for e in json.loads(kept)["tokens"] if e["name"] == "ci-client"]
    assert entry["sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert entry["scopes"] == ["predict", "feedback"]
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    assert "secrets/" in (project.path / ".gitignore").read_text().splitlines()

    again = project.run("make", "token", "NAME=ci-client", check=False)
    assert again.returncode != 0 and "a token named 'ci-client' exists" in again.stdout

    listed = project.run("make", "token", "LIST=1").stdout
    assert "ci-client\tpredict,feedback\t" in listed and token not in listed
    project.run("make", "token", "REVOKE=ci-client")
    assert "ci-client" not in tokens.read_text()


def test_log_key_is_created_private_then_rotated_keeping_the_old_key(
    project: Project,
) -> None:
    """make log-key: a 256-bit key under its id, owner-only, git-ignored; a second run puts a
    new current key first and keeps the old one (its pseudonyms stay readable)."""
    key_file = project.path / "secrets" / "log-key"
    key_file.unlink(missing_ok=True)
    project.run("make", "log-key")
    [first] = key_file.read_text().splitlines()
    first_id, first_key = first.split()
    assert re.fullmatch(r"[0-9a-f]{8}", first_id) and re.fullmatch(
        r"[0-9a-f]{64}", first_key
    )
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    project.run("make", "log-key")
    lines = key_file.read_text().splitlines()
    assert len(lines) == 2 and lines[1] == first and lines[0].split()[0] != first_id


def test_clean_removes_caches_only(project: Project) -> None:
    cache = project.path / "src" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (project.path / ".pytest_cache").mkdir(exist_ok=True)
    project.run("make", "clean")
    assert not cache.exists() and not (project.path / ".pytest_cache").exists()
    for kept in ("models/model.joblib", "data/raw/data.csv", "reports/metrics.json"):
        assert (project.path / kept).is_file(), kept
    assert Path(project.environment.path / "pyvenv.cfg").is_file()


def test_the_first_commit_after_setup_and_pipeline_passes_every_hook(
    default_project: Project, tmp_path: Path
) -> None:
    """The README's next step after `make setup pipeline`: `git add -A && git commit` from a
    plain shell (no uv on PATH: the hooks use the project's own) runs every hook `make setup`
    installed, offline, on the code and the pipeline's outputs alike, and they all pass with
    nothing rewritten: reports too large for git are in DVC's cache, and dvc.lock is left to
    DVC. A no-op `make pipeline` afterwards changes no tracked file."""
    project = default_project.copy(tmp_path / default_project.path.name)
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
        "JSON parses",
        "files end with one newline",
        "no trailing whitespace",
        "no large files (data and models go to DVC)",
    ):
        assert re.search(rf"^{re.escape(name)}\.+Passed$", done.stdout, flags=re.M), (
            done.stdout
        )
    assert project.run("git", "status", "--porcelain").stdout == ""  # nothing rewritten
    tracked = project.run("git", "ls-files").stdout.split()
    assert "dvc.lock" in tracked and "reports/metrics.json" in tracked
    assert "reports/explore.html" not in tracked  # DVC's
    project.run("make", "pipeline")
    assert project.run("git", "status", "--porcelain").stdout == ""
