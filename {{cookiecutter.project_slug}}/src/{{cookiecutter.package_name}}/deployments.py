"""Each deployment recorded in git, so the bundle an environment serves can be found and read
back (from the DVC remote, at the commit that was deployed) to judge a candidate against it.

A deployment is an annotated tag `deployed/<environment>/<UTC time>` on the deployed commit,
whose message holds the image digest and the model version. Why tags rather than a committed
file (say `deploy/production.json`):
- A tag names the deployed commit itself: its `dvc.lock` names the bundle's hash, so
  `dvc.api.open(..., rev=<tag>)` reads exactly what was deployed. A committed file would be one
  commit later than what it describes, and a branch made before it (a retrain pull request)
  would carry a stale copy.
- Recording needs no commit to `main`: no push through branch protection, no workflow started
  by the push, no merge conflict between two deploys.
- Tags only ever get added: the newest name is production (a rollback is a new tag on the old
  commit), and the list of tags is the history. No tag is moved: git does not update a moved
  tag in existing clones (`git fetch` refuses to clobber it), so a moving `production` tag
  could point at different commits in different clones.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib

from {{ cookiecutter.package_name }} import git
from {{ cookiecutter.package_name }}.bundle import ModelBundle, checked_bundle
from {{ cookiecutter.package_name }}.config import Paths
from {{ cookiecutter.package_name }}.errors import PipelineError

TAG_PREFIX = "deployed"
TAG_TIME_FORMAT = "%Y%m%dT%H%M%SZ"  # sorts as text in time order; git refuses ':' in names
ENVIRONMENT_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
PEEL_TO_COMMIT = "^{commit}"  # git's suffix: the commit a tag (or any name) points at
IMAGE_DIGEST = re.compile(r"(?:[^\s@]+@)?sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Deployment:
    """One recorded deployment: its tag and the commit, image and model it put in service."""

    environment: str
    tag: str
    commit: str
    deployed_at: str  # ISO 8601, UTC
    image_digest: str | None = None
    model_version: str | None = None

    def dict(self) -> dict[str, Any]:
        return asdict(self)


def tag_name(environment: str, at: datetime) -> str:
    return f"{TAG_PREFIX}/{environment}/{at.astimezone(UTC).strftime(TAG_TIME_FORMAT)}"


def _checked_environment(environment: str) -> str:
    if not ENVIRONMENT_NAME.fullmatch(environment):
        raise PipelineError(
            f"environment {environment!r}: lowercase letters, digits and '-', from a letter on"
        )
    return environment


def _model_version_at(commit: str, cwd: Path | str) -> str | None:
    """The registered model's version in reports/registry.json at `commit`, if it has one."""
    shown = git.run("show", f"{commit}:{Paths.registry.as_posix()}", cwd=cwd)
    if shown is None or shown.returncode != 0:
        return None
    try:
        version = json.loads(shown.stdout).get("version")
    except (json.JSONDecodeError, AttributeError):
        return None
    return str(version) if version else None


def record(
    environment: str,
    *,
    commit: str = "HEAD",
    image_digest: str | None = None,
    model_version: str | None = None,
    push_to: str | None = None,
    now: datetime | None = None,
    cwd: Path | str = ".",
) -> Deployment:
    """Tag `commit` as deployed to `environment` now (and push the tag to `push_to`, a remote
    name or URL). Call it after the rollout succeeded: the newest tag is what is in service."""
    environment = _checked_environment(environment)
    if image_digest is not None and not IMAGE_DIGEST.fullmatch(image_digest):
        raise PipelineError(
            f"image digest {image_digest!r} is not sha256:<64 hex digits> (optionally image@...)"
        )
    resolved = git.output("rev-parse", "--verify", commit + PEEL_TO_COMMIT, cwd=cwd).strip()
    at = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    deployment = Deployment(
        environment=environment,
        tag=tag_name(environment, at),
        commit=resolved,
        deployed_at=at.isoformat(),
        image_digest=image_digest,
        model_version=model_version or _model_version_at(resolved, cwd),
    )
    message = f"Deployed to {environment}\n\n{json.dumps(deployment.dict(), indent=2)}\n"
    git.output("tag", "--annotate", "--message", message, deployment.tag, resolved, cwd=cwd)
    if push_to:
        git.output("push", push_to, f"refs/tags/{deployment.tag}", cwd=cwd)
    return deployment


def history(environment: str, cwd: Path | str = ".") -> list[Deployment]:
    """Every deployment recorded for `environment`, newest first (empty when none, or no git).
    Only tags this clone has count: CI must fetch them (actions/checkout `fetch-depth: 0`)."""
    environment = _checked_environment(environment)
    listed = git.run(
        "for-each-ref",
        "--sort=-refname",
        "--format=%(refname:strip=2)%00%(*objectname)%00%(contents:body)%1e",
        f"refs/tags/{TAG_PREFIX}/{environment}/",
        cwd=cwd,
    )
    if listed is None or listed.returncode != 0:
        return []
    found = []
    for entry in listed.stdout.split("\x1e"):
        if not entry.strip():
            continue
        tag, commit, body = entry.lstrip("\n").split("\0", 2)
        if not commit:  # a lightweight tag made by hand: it names the commit itself
            commit = git.output("rev-parse", tag + PEEL_TO_COMMIT, cwd=cwd).strip()
        try:
            details = json.loads(body) if body.strip() else {}
        except json.JSONDecodeError:
            details = {}
        found.append(
            Deployment(
                environment=environment,
                tag=tag,
                commit=commit,
                deployed_at=str(details.get("deployed_at", "")),
                image_digest=details.get("image_digest"),
                model_version=details.get("model_version"),
            )
        )
    return found


def latest(environment: str, cwd: Path | str = ".") -> Deployment | None:
    """The newest deployment recorded for `environment`, None when there is none (or no git).
    Only tags this clone has count: CI must fetch them (actions/checkout `fetch-depth: 0`)."""
    recorded = history(environment, cwd)
    return recorded[0] if recorded else None


def digest_of(image_digest: str | None) -> str | None:
    """The `sha256:...` part of a recorded digest (which may be written `image@sha256:...`)."""
    return image_digest.rpartition("@")[2] if image_digest else None


def read_bundle(deployment: Deployment, cwd: Path | str = ".") -> ModelBundle:
    """The bundle the deployed commit's dvc.lock names, from the DVC cache or else the remote."""
    import dvc.api
    from dvc.exceptions import DvcException

    origin = f"{Paths.model} at {deployment.tag} ({deployment.commit[:12]})"
    try:
        with dvc.api.open(
            Paths.model.as_posix(), repo=str(cwd), rev=deployment.commit, mode="rb"
        ) as file:
            content = file.read()
    except (DvcException, OSError) as error:
        raise PipelineError(
            f"cannot read {origin} from the DVC cache or remote: {error}"
            " (was it pushed with `make push`? are the remote's credentials set?)"
        ) from error
    return checked_bundle(joblib.load(io.BytesIO(content)), origin)
