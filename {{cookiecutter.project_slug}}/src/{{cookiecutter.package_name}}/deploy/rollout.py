"""Putting one release image into an environment: the committed overlay rendered with the image
pinned by digest (what is applied is exactly what this renders, and the deploy workflow shows
it), how long Flagger's canary may take, and the rollback to a recorded production deployment.

The committed overlays hold a placeholder digest (deploy/manifests.py); the pin is made in a
scratch copy of deploy/, never in the work tree, and rendered with `kubectl kustomize` (no
standalone kustomize needed). A rollback renders the production overlay of the recorded
commit with its recorded digest and Flagger's `spec.skipAnalysis: true`: the image passed its
canary once already, and a rollback must not wait for a fresh analysis.
"""

from __future__ import annotations

import io
import math
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

import yaml

from {{ cookiecutter.package_name }} import deployments
from {{ cookiecutter.package_name }}.config import Params, duration_seconds
from {{ cookiecutter.package_name }}.deploy.manifests import DEPLOY_DIR, PLACEHOLDER_DIGEST
from {{ cookiecutter.package_name }}.errors import PipelineError

DIGEST: Final = re.compile(r"sha256:[0-9a-f]{64}")
ENVIRONMENTS: Final = ("staging", "production")
KUBECTL_TIMEOUT_SECONDS: Final = 120
# Before the canary's first check: the new pods start (the startup probe allows 5 minutes).
STARTUP_SECONDS: Final = 300


def checked_digest(digest: str) -> str:
    """`digest` when it is sha256:<64 lowercase hex digits>; otherwise one line saying why."""
    if not DIGEST.fullmatch(digest):
        shown = digest if len(digest) <= 80 else digest[:77] + "..."
        raise PipelineError(
            f"image digest {shown!r} is not sha256:<64 lowercase hex digits>"
            " (a tag such as :latest or :v1 is not a digest)"
        )
    return digest


def canary_timeout_seconds(params: Params) -> int:
    """The longest a production canary can take to end, Succeeded or Failed: the pods' start,
    one interval per traffic step and for the promotion, and the failed checks that end it
    early; then a margin of one more interval each way."""
    canary = params.deploy.canary
    interval = duration_seconds(canary.interval)
    steps = len(canary.step_weights) + 1 + canary.failed_checks + 2
    return STARTUP_SECONDS + steps * interval


def pin(
    environment: str,
    digest: str,
    *,
    skip_analysis: bool = False,
    root: Path = Path(),
    into: Path,
) -> Path:
    """A copy of root/deploy under `into`, its `environment` overlay pinned to the image at
    `digest` (and, for production, Flagger's analysis skipped when asked). Returns the
    overlay's directory in the copy."""
    if environment not in ENVIRONMENTS:
        raise PipelineError(f"environment {environment!r}: one of {', '.join(ENVIRONMENTS)}")
    checked_digest(digest)
    if skip_analysis and environment != "production":
        raise PipelineError("only production has a canary analysis to skip")
    source = root / DEPLOY_DIR
    if not (source / "overlays" / environment / "kustomization.yaml").is_file():
        raise PipelineError(f"no {source}/overlays/{environment}: run `make manifests`")
    copy = into / DEPLOY_DIR
    shutil.copytree(source, copy)
    overlay = copy / "overlays" / environment
    path = overlay / "kustomization.yaml"
    kustomization = yaml.safe_load(path.read_text())
    entries = [
        entry
        for entry in kustomization.get("images", [])
        if entry.get("digest") == PLACEHOLDER_DIGEST
    ]
    if len(entries) != 1:
        raise PipelineError(
            f"{source}/overlays/{environment}/kustomization.yaml has no images: entry with the"
            " placeholder digest to pin: run `make manifests`"
        )
    entries[0]["digest"] = digest
    if skip_analysis:
        skip = [{"op": "add", "path": "/spec/skipAnalysis", "value": True}]
        kustomization.setdefault("patches", []).append(
            {"target": {"group": "flagger.app", "kind": "Canary"}, "patch": yaml.safe_dump(skip)}
        )
    path.write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return overlay


def kubectl(*args: str, stdin: str | None = None) -> str:
    """kubectl's output; PipelineError with its reason when it fails or is missing."""
    try:
        done = subprocess.run(
            ["kubectl", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=KUBECTL_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError as error:
        raise PipelineError("kubectl is not installed (it renders and applies deploy/)") from error
    except subprocess.TimeoutExpired as error:
        raise PipelineError(f"`kubectl {args[0]}` did not answer in time") from error
    if done.returncode != 0:
        raise PipelineError(f"`kubectl {' '.join(args[:2])}` failed: {done.stderr.strip()}")
    return done.stdout


def render(
    environment: str,
    digest: str,
    *,
    skip_analysis: bool = False,
    root: Path = Path(),
) -> str:
    """The manifests `kubectl apply` gets for `environment`, the image pinned at `digest`."""
    with tempfile.TemporaryDirectory(prefix="deploy-") as scratch:
        into = Path(scratch)
        overlay = pin(environment, digest, skip_analysis=skip_analysis, root=root, into=into)
        rendered = kubectl("kustomize", str(overlay))
    if f"@{digest}" not in rendered or PLACEHOLDER_DIGEST in rendered:
        raise PipelineError(f"the rendered {environment} manifests do not run the image {digest}")
    return rendered


@dataclass(frozen=True)
class Rollback:
    """The recorded production deployment a rollback returns to, and its manifests."""

    deployment: deployments.Deployment
    digest: str
    manifests: str

    def describe(self) -> str:
        model = f", model {self.deployment.model_version}" if self.deployment.model_version else ""
        return (
            f"rollback of production to {self.digest} (recorded {self.deployment.tag}, commit"
            f" {self.deployment.commit[:12]}{model}); Flagger's analysis skipped"
        )


def rollback_target(
    digest: str | None = None, cwd: Path | str = "."
) -> tuple[deployments.Deployment, str]:
    """The newest recorded production deployment (with `digest`, the newest that ran it) and
    its image digest. Refuses when none is recorded: a rollback only returns to an image that
    passed production before."""
    if digest is not None:
        checked_digest(digest)
    recorded = deployments.history("production", cwd)
    if not recorded:
        raise PipelineError(
            f"no production deployment is recorded (no {deployments.TAG_PREFIX}/production/* tag"
            " in this clone; `git fetch --tags` fetches them): nothing to roll back to"
        )
    for deployment in recorded:
        found = deployments.digest_of(deployment.image_digest)
        if found and (digest is None or found == digest):
            return deployment, found
    if digest is not None:
        raise PipelineError(
            f"no recorded production deployment ran {digest}: a rollback returns only to an image"
            f" production ran before (git tag --list '{deployments.TAG_PREFIX}/production/*')"
        )
    raise PipelineError(
        f"the production deployments recorded ({recorded[0].tag} and older) hold no image digest"
    )


def deploy_dir_at(commit: str, into: Path, cwd: Path | str = ".") -> None:
    """deploy/ as it was at `commit`, written under `into`."""
    try:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit, DEPLOY_DIR.as_posix()],
            cwd=cwd,
            capture_output=True,
            timeout=KUBECTL_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PipelineError(f"git archive of {DEPLOY_DIR}/ at {commit[:12]}: {error}") from error
    if archive.returncode != 0:
        raise PipelineError(
            f"the recorded commit {commit[:12]} has no {DEPLOY_DIR}/ to re-apply:"
            f" {archive.stderr.decode(errors='replace').strip()}"
        )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:  # Python 3.11.0 to 3.11.3 (Debian 12's) have no extraction filters
            tar.extractall(into, members=plain_members(tar, commit))


def plain_members(tar: tarfile.TarFile, commit: str) -> list[tarfile.TarInfo]:
    """The archive's members, each a file or directory under the extraction directory (what
    the "data" filter allows of `git archive`'s output); anything else refused."""
    members = tar.getmembers()
    for member in members:
        path = PurePosixPath(member.name)
        if not (member.isfile() or member.isdir()) or path.is_absolute() or ".." in path.parts:
            raise PipelineError(
                f"{DEPLOY_DIR}/ at {commit[:12]} holds {member.name!r}, which is not a plain"
                " file or directory inside it: refusing to extract it"
            )
    return members


def rollback(digest: str | None = None, root: Path = Path()) -> Rollback:
    """Production as it was recorded: the deployed commit's deploy/ (its manifests, not
    today's), its image digest, Flagger's analysis skipped."""
    deployment, found = rollback_target(digest, cwd=root)
    with tempfile.TemporaryDirectory(prefix="rollback-") as scratch:
        deploy_dir_at(deployment.commit, Path(scratch), cwd=root)
        manifests = render("production", found, skip_analysis=True, root=Path(scratch))
    return Rollback(deployment, found, manifests)


def apply(manifests: str) -> str:
    """`kubectl apply` of rendered manifests to the current kube context."""
    return kubectl("apply", "-f", "-", stdin=manifests)


def environment_facts(params: Params, environment: str) -> dict[str, str]:
    """What the deploy workflow reads about an environment, as `name=value` lines."""
    if environment not in ENVIRONMENTS:
        raise PipelineError(f"environment {environment!r}: one of {', '.join(ENVIRONMENTS)}")
    settings = getattr(params.deploy.environments, environment)
    canary = params.deploy.canary
    return {
        "name": params.deploy.name,
        "image": params.deploy.image,
        "namespace": settings.namespace,
        "host": settings.host,
        "canary_timeout": str(canary_timeout_seconds(params)),
        "canary_interval": str(math.ceil(duration_seconds(canary.interval))),
    }
