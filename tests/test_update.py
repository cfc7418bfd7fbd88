"""Template updates reach generated projects: a project records its answers
(`.cookiecutter.json`), and cruft creates it from a git clone of the template, finds it up to date,
sees a later template commit, and applies it with `cruft update`, cleanly.

The template under test is this working tree (committed or not), copied into a scratch git
repository as a user's clone would hold it; the project is committed as a user commits it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import TEMPLATE, bake, cookiecutter_defaults, run_command
from test_bake import tool

IDENTITY = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "template-tests@example.com",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "template-tests@example.com",
}
# What `cruft check` prints for each verdict (cruft 2.x, cruft/_commands/check.py).
UP_TO_DATE = "Project's cruft is up to date"
OUT_OF_DATE = "Project's cruft is out of date!"


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, **IDENTITY}
    return run_command(["git", *args], cwd, env).stdout


def template_clone(destination: Path) -> Path:
    """The template's files as git sees them (tracked, and untracked but not ignored), committed
    in a fresh repository."""
    listed = git(
        "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=TEMPLATE
    )
    for relative in filter(None, listed.split("\0")):
        source = TEMPLATE / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git("init", "-q", "-b", "main", cwd=destination)
    git("add", "-A", cwd=destination)
    git("commit", "-q", "-m", "Template as tested", cwd=destination)
    return destination


def test_cruft_creates_checks_and_updates_a_project(tmp_path: Path) -> None:
    template = template_clone(tmp_path / "template")
    cruft = tool("cruft")
    env = {
        **os.environ,
        **IDENTITY,
        "HOME": str(tmp_path),
    }  # no user cookiecutter config
    out = tmp_path / "projects"
    run_command(
        [cruft, "create", "--no-input", "--output-dir", str(out), str(template)],
        tmp_path,
        env,
    )
    slug = cookiecutter_defaults()["project_name"].lower().replace(" ", "-")
    project = out / slug

    answers = json.loads((project / ".cookiecutter.json").read_text())
    assert answers["project_slug"] == slug and answers["python_version"] == "3.11"
    assert not any(key.startswith("_") for key in answers)
    state = json.loads((project / ".cruft.json").read_text())
    assert state["commit"] == git("rev-parse", "HEAD", cwd=template).strip()

    git("add", "-A", cwd=project)
    git("commit", "-q", "-m", "Generated", cwd=project)
    assert UP_TO_DATE in run_command([cruft, "check"], project, env).stdout

    # A later template change: a new line in the generated README and a new file.
    readme = template / "{{cookiecutter.project_slug}}" / "README.md"
    readme.write_text(
        readme.read_text()
        + "\nUpdated by the template for {{ cookiecutter.project_name }}.\n"
    )
    (template / "{{cookiecutter.project_slug}}" / "CHANGES.md").write_text(
        "# Changes\n"
    )
    git("add", "-A", cwd=template)
    git("commit", "-q", "-m", "Template change", cwd=template)

    # cruft exits 1 both when the project is out of date and when it crashes: only its
    # verdict tells the two apart.
    stale = run_command([cruft, "check"], project, env, check=False)
    assert stale.returncode == 1, stale.stdout
    assert OUT_OF_DATE in stale.stdout, stale.stdout

    run_command([cruft, "update", "--skip-apply-ask"], project, env)
    assert (
        "Updated by the template for Credit Risk Model."
        in (project / "README.md").read_text()
    )
    assert (project / "CHANGES.md").read_text() == "# Changes\n"
    assert not list(project.rglob("*.rej")), "the update left rejected hunks"
    assert UP_TO_DATE in run_command([cruft, "check"], project, env).stdout
    status = git("status", "--porcelain", cwd=project)
    assert (
        "README.md" in status and "CHANGES.md" in status
    )  # applied, for the user to commit


@pytest.mark.parametrize("answer", ["monitoring_cron", "dvc_remote"])
def test_recorded_answers_are_the_baked_ones(answer: str, tmp_path: Path) -> None:

    value = {"monitoring_cron": "30 2 * * *", "dvc_remote": "s3"}[answer]
    extra = {answer: value}
    if answer == "dvc_remote":
        extra["dvc_remote_url"] = "s3://bucket/path"
    project = bake(tmp_path, extra)
    recorded = json.loads((project / ".cookiecutter.json").read_text())
    assert {key: recorded[key] for key in extra} == extra
