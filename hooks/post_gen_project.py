"""Finish the generated project: start a git repository and print the next steps.

Cookiecutter renders this file with Jinja and runs it inside the new project.
It must not fail for git problems: a failing post-generation hook makes
Cookiecutter delete the whole project.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# See pre_gen_project.py: answers arrive as JSON inside raw single-quoted strings.
PROJECT_SLUG: str = json.loads(r'{{ cookiecutter["project_slug"] | tojson }}')
GITHUB_OWNER: str = json.loads(r'{{ cookiecutter["github_owner"] | tojson }}')

# Variables that would point git at another repository than this directory.
GIT_LOCATION_VARIABLES = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
)


def init_git_repository(project_dir: Path) -> str | None:
    """Run ``git init`` on branch main; return a note for the user if that was not possible."""
    git = shutil.which("git")
    if git is None:
        return "git is not installed, so no repository was created; run `git init -b main` later"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in GIT_LOCATION_VARIABLES
    }
    attempts = (
        [[git, "init", "-q", "-b", "main"]],
        # git < 2.28 has no -b: initialise, then point HEAD at main.
        [[git, "init", "-q"], [git, "symbolic-ref", "HEAD", "refs/heads/main"]],
    )
    for attempt in attempts:
        try:
            for command in attempt:
                subprocess.run(
                    command,
                    cwd=project_dir,
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                )
        except (OSError, subprocess.CalledProcessError):
            continue
        return None
    return "`git init` failed, so no repository was created; run `git init -b main` yourself"


def next_steps(project_dir: Path, git_note: str | None) -> str:
    """Return the text that tells the user what to do next."""
    repository = f"{GITHUB_OWNER}/{PROJECT_SLUG}"
    lines = [
        f"Created {PROJECT_SLUG} in {project_dir}",
        *([f"Note: {git_note}"] if git_note else []),
        "",
        "Next steps:",
        f"  cd {project_dir}",
        "  make setup       # create the virtual environment and install the tools",
        "  make pipeline    # run the DVC pipeline: data, training, evaluation",
        "  make test        # run the tests",
        "",
        f"Then create the empty repository https://github.com/{repository} and push:",
        '  git add -A && git commit -m "Initial project from template"',
        f"  git remote add origin git@github.com:{repository}.git",
        "  git push -u origin main",
    ]
    return "\n".join(lines)


def show(text: str) -> None:
    """Print text; if stdout is gone (say, piped into ``head``), drop it instead of failing."""
    try:
        print(text, flush=True)
    except OSError:
        # Point stdout at /dev/null so the flush at exit cannot fail either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main() -> None:
    """Initialise git and print the next steps; never fail."""
    project_dir = Path.cwd()
    show(next_steps(project_dir, init_git_repository(project_dir)))


if __name__ == "__main__":
    main()
