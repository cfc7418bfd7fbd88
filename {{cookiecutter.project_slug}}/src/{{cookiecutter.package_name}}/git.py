"""The project's git calls, in one place: the commit the code came from and whether the work
tree differs from it (the model's lineage, the image's labels), and where the source lives."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from {{ cookiecutter.package_name }}.errors import PipelineError

UNCOMMITTED = "uncommitted"
TIMEOUT_SECONDS = 30


def run(*args: str, cwd: Path | str = ".") -> subprocess.CompletedProcess[str] | None:
    """git's answer, whatever it is; None when git is not installed or does not answer."""
    try:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def output(*args: str, cwd: Path | str = ".") -> str:
    """The output of a git command that must succeed; PipelineError with git's reason if not."""
    done = run(*args, cwd=cwd)
    if done is None or done.returncode != 0:
        reason = done.stderr.strip() if done is not None else "git did not run"
        raise PipelineError(f"`git {' '.join(args)}` failed: {reason}")
    return done.stdout


def state(cwd: Path | str = ".") -> dict[str, Any]:
    """The commit the code came from and whether the work tree differed from it.

    A project without commits (or without git) is recorded as "uncommitted" rather than refused:
    the first `make pipeline` of a freshly generated project must work.
    """
    head = run("rev-parse", "--verify", "--quiet", "HEAD", cwd=cwd)
    commit = head.stdout.strip() if head is not None and head.returncode == 0 else UNCOMMITTED
    status = run("status", "--porcelain", "--untracked-files=no", cwd=cwd)
    dirty = (
        commit == UNCOMMITTED
        or status is None
        or status.returncode != 0
        or bool(status.stdout.strip())
    )
    return {"commit": commit, "dirty": dirty}


def head_commit(cwd: Path | str = ".") -> str:
    """The checked-out commit; PipelineError when there is none."""
    return output("rev-parse", "HEAD", cwd=cwd).strip()


def remote_url(name: str = "origin", cwd: Path | str = ".") -> str:
    """The remote's URL, or "" when there is no such remote (or no git)."""
    done = run("remote", "get-url", name, cwd=cwd)
    return done.stdout.strip() if done is not None and done.returncode == 0 else ""
