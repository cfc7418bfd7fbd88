"""`make image`: the bento as a container image, built the way a GitHub runner builds it
(`bentoml containerize` on a Docker engine), tagged with the project version, the commit and the
model version, and labelled with its lineage, so that an image found in a registry says what
made it. An image must come from a commit: a work tree with uncommitted source changes is
refused (or, when asked, built and labelled dirty)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from {{ cookiecutter.package_name }} import git
from {{ cookiecutter.package_name }}.errors import PipelineError
from {{ cookiecutter.package_name }}.io import file_sha256
from {{ cookiecutter.package_name }}.serving.store import (
    BUNDLE_FILE,
    LINEAGE_FILE,
    MODEL_NAME,
    use_project_store,
)

LABEL_PREFIX = "lineage"  # the image's own labels; org.opencontainers.image.* for the standard ones
DEFAULT_SOURCE = "https://github.com/{{ cookiecutter.github_owner }}/{{ cookiecutter.project_slug }}"


@dataclass(frozen=True)
class ImagePlan:
    """What `make image` builds: from which bento, under which tags, with which labels."""

    bento: str
    tags: list[str]
    labels: dict[str, str]


def pipeline_outputs(dvc_file: Path | str = "dvc.yaml") -> set[str]:
    """Files the pipeline writes (its outs, metrics and plots) and dvc.lock: a rerun may change
    them without changing the source, and the labels record the model's own lineage instead."""
    stages = (yaml.safe_load(Path(dvc_file).read_text()) or {}).get("stages", {})
    produced = {"dvc.lock"}
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []) or []:
                produced.update(entry if isinstance(entry, dict) else [entry])
    return produced


def source_changes() -> list[str]:
    """Uncommitted changes that would reach the image or say it is not the commit: changed
    tracked files (pipeline outputs aside) and untracked files in src/ (the bento ships them)."""
    produced = pipeline_outputs()
    changes = []
    for line in git.output("status", "--porcelain=v1", "--untracked-files=all").splitlines():
        state, path = line[:2], line[3:].split(" -> ")[-1].strip('"')
        if path in produced or any(path.startswith(f"{out.rstrip('/')}/") for out in produced):
            continue
        if state == "??" and not path.startswith("src/"):
            continue
        changes.append(f"{state.strip()} {path}")
    return changes


def check_source(*, allow_dirty: bool) -> bool:
    """True when the work tree is dirty (and allowed); refuses a dirty one otherwise."""
    changes = source_changes()
    if changes and not allow_dirty:
        listed = ", ".join(changes[:5]) + (" ..." if len(changes) > 5 else "")
        raise PipelineError(
            f"the work tree has uncommitted changes ({listed}): commit them so the image is a"
            " commit, or build anyway with `make image ALLOW_DIRTY=1` (labelled dirty)"
        )
    return bool(changes)


def project_version(pyproject: Path | str = "pyproject.toml") -> str:
    return str(tomllib.loads(Path(pyproject).read_text())["project"]["version"])


def source_repository() -> str:
    """Where the source lives: the GitHub repository the workflow runs in, else `origin`."""
    server, repository = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_REPOSITORY")
    if server and repository:
        return f"{server}/{repository}"
    match = re.fullmatch(r"(?:https://|git@)([^/:]+)[/:](.+?)(?:\.git)?", git.remote_url())
    return f"https://{match[1]}/{match[2]}" if match else DEFAULT_SOURCE


def params_sha256(params: dict[str, Any]) -> str:
    """A stable hash of the params the model was trained with (as its lineage records them)."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def plan(image: str, *, allow_dirty: bool = False) -> ImagePlan:
    """Tags and labels for the newest bento of this project and the model it carries."""
    dirty = check_source(allow_dirty=allow_dirty)
    use_project_store()
    import bentoml  # after use_project_store: BentoML reads BENTOML_HOME when first used

    try:
        bento = bentoml.bentos.get(f"{MODEL_NAME}:latest")
    except bentoml.exceptions.NotFound:
        raise PipelineError("no bento to containerize: run `make build` first") from None
    models = [model.tag for model in bento.info.all_models if model.tag.name == MODEL_NAME]
    if not models:
        raise PipelineError(f"bento {bento.tag} carries no {MODEL_NAME} model")
    model = bentoml.models.get(models[0])
    lineage = json.loads(Path(model.path_of(LINEAGE_FILE)).read_text())
    commit = git.head_commit()
    version = project_version()
    suffix = "-dirty" if dirty else ""
    labels = {
        "org.opencontainers.image.title": str(bento.info.labels.get("project", bento.tag.name)),
        "org.opencontainers.image.source": source_repository(),
        "org.opencontainers.image.revision": commit + suffix,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.created": datetime.now(UTC).isoformat(timespec="seconds"),
        f"{LABEL_PREFIX}.bento": str(bento.tag),
        f"{LABEL_PREFIX}.model": str(model.tag),
        # the bundle's content: the deploy workflow's challenge checks it is the model it judged
        f"{LABEL_PREFIX}.model-sha256": file_sha256(Path(model.path_of(BUNDLE_FILE))),
        f"{LABEL_PREFIX}.model-commit": str(lineage["git"]["commit"]),
        f"{LABEL_PREFIX}.data-sha256": str(lineage["data"]["sha256"]),
        f"{LABEL_PREFIX}.params-sha256": params_sha256(lineage["params"]),
        f"{LABEL_PREFIX}.dirty": str(dirty).lower(),
    }
    tags = [
        f"{image}:{version}{suffix}",
        f"{image}:sha-{commit[:7]}{suffix}",
        f"{image}:model-{model.tag.version}{suffix}",
    ]
    return ImagePlan(bento=str(bento.tag), tags=tags, labels=labels)


def docker_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    return subprocess.run([docker, "info"], capture_output=True, check=False).returncode == 0


def build(image: str, *, allow_dirty: bool = False) -> ImagePlan:
    """Containerize the newest bento with every tag and label of its plan."""
    if not docker_answers():
        raise PipelineError(
            "make image needs a running Docker engine (`docker info` failed): start Docker,"
            " or set DOCKER_HOST to one"
        )
    planned = plan(image, allow_dirty=allow_dirty)
    command = [str(Path(sys.executable).parent / "bentoml"), "containerize", planned.bento]
    for tag in planned.tags:
        command += ["--image-tag", tag]
    # Host network: the same registries as the host, and no bridge needed on the engine.
    command += ["--opt", "network=host"]
    for key, value in planned.labels.items():
        command += ["--opt", f"label={key}={value}"]
    if subprocess.run(command, check=False).returncode != 0:
        raise PipelineError(f"bentoml containerize {planned.bento} failed (output above)")
    return planned
