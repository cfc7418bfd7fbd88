"""The generated project's container image, built and run for real: the project's own
`make image` (its buildah branch: no Docker daemon here) builds it from the bento that
`make build` makes; the image is started on loopback and checked from outside: ready, answering
like the model offline does, and not running as root.

Needs buildah (root, vfs storage), ../shared/tools/image-run to start and stop the image, and a
`python:3.11-slim` base: pulled where a registry is reachable, else the local stand-in that
../shared/tools/stand-in-base-image builds. Without buildah or image-run the test is skipped,
unless REQUIRE_CONTAINER_TEST=1 (the template's .ci/run sets it): then it fails. GitHub-hosted
runners have no ../shared, so there it skips.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TEMPLATE, Project, cookiecutter_defaults
from loopback import free_port, http, offline_prediction, wait_until_ready

pytestmark = pytest.mark.container

BUILDAH = ["buildah", "--storage-driver", "vfs"]
IMAGE_RUN = TEMPLATE.parent / "shared" / "tools" / "image-run"
REQUIRE = "REQUIRE_CONTAINER_TEST"
IMAGE_TIMEOUT = (
    1800.0  # seconds for `make image`: about 2 min here (bento, then buildah build)
)
READY_TIMEOUT = (
    300.0  # seconds: about 5 s here once built; a cold, busy runner needs more
)


def missing_tools() -> list[str]:
    """What this machine lacks to build and run the image (empty: nothing)."""
    missing = []
    if shutil.which("buildah") is None:
        missing.append("buildah is not installed")
    if not IMAGE_RUN.is_file():
        missing.append(f"{IMAGE_RUN} is missing")
    elif not os.access(IMAGE_RUN, os.X_OK):
        missing.append(f"{IMAGE_RUN} is not executable")
    return missing


# Session scope and autouse: checked before the session's default project is baked, so a
# machine without the tools skips at once.
@pytest.fixture(scope="session", autouse=True)
def container_tools() -> None:
    """Skip without the tools, or fail when the run says the image must be tested here."""
    missing = missing_tools()
    if not missing:
        return
    reason = "; ".join(missing) + ": the container image cannot be built and run here"
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{reason}, and {REQUIRE}=1 requires the container test")
    pytest.skip(f"{reason} (set {REQUIRE}=1 to fail instead of skipping)")


def run(*args: str | Path, timeout: float) -> str:
    """Run a command outside the project; fail with its output when it fails."""
    done = subprocess.run(
        [str(arg) for arg in args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"exit {done.returncode}: {' '.join(map(str, args))}\n{done.stdout[-6000:]}"
        )
    return done.stdout


def without_docker(directory: Path, path: str) -> str:
    """`path` behind a directory whose `docker` always fails, so that `make image` takes its
    buildah branch even on a machine with a Docker daemon (image-run runs buildah images)."""
    directory.mkdir(parents=True, exist_ok=True)
    docker = directory / "docker"
    docker.write_text("#!/bin/sh\nexit 1\n")
    docker.chmod(0o755)
    return f"{directory}{os.pathsep}{path}"


@pytest.fixture(scope="module")
def image(
    default_project: Project,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The image that `make image` builds in a copy of the default project (building adds to
    its bento store); removed afterwards."""
    work = tmp_path_factory.mktemp("container")
    slug = default_project.path.name
    project = default_project.copy(work / slug)
    path = without_docker(work / "no-docker", project.env(activated=False)["PATH"])
    output = project.run(
        "make", "image", env={"PATH": path}, timeout=IMAGE_TIMEOUT
    ).stdout
    built = re.findall(r"^built (\S+)$", output, flags=re.M)
    assert len(built) == 1, f"no `built <ref>` line from make image:\n{output[-3000:]}"
    name = built[0]
    try:
        bento = re.search(r'Successfully built Bento\(tag="([^"]+)"\)', output)
        assert bento, f"make image did not build a bento:\n{output[-3000:]}"
        owner = cookiecutter_defaults()["github_owner"]
        version = bento.group(1).split(":")[1]
        assert name == f"ghcr.io/{owner}/{slug}:{version}"
        images = run(*BUILDAH, "images", "--format", "{{.Name}}:{{.Tag}}", timeout=120)
        assert name in images.split(), f"{name} not in buildah's images:\n{images}"
        yield name
    finally:
        subprocess.run(
            [*BUILDAH, "rmi", "--force", name], capture_output=True, check=False
        )


def container_processes(container: str) -> list[tuple[int, int, str]]:
    """(pid, uid, command) of every process inside the running container.

    image-run records the pid of the session it started; the container's processes are those
    whose root directory is the one that session's chrooted processes see.
    """
    pidfile = Path(os.environ.get("TMPDIR", "/tmp")) / f"image-run-{container}.pid"
    session = int(pidfile.read_text())
    roots = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            sid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[3])
            root = os.readlink(proc / "root")
        except (OSError, ValueError, IndexError):
            continue
        if sid == session and root != "/":
            roots.add(root)
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(proc / "root") not in roots:
                continue
            status = (proc / "status").read_text()
            command = (
                (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            )
        except OSError:
            continue
        uid = int(
            next(
                line for line in status.splitlines() if line.startswith("Uid:")
            ).split()[1]
        )
        found.append((int(proc.name), uid, command))
    return found


def test_image_serves_the_model_as_a_non_root_user(
    image: str, default_project: Project, tmp_path: Path
) -> None:
    offline = offline_prediction(default_project)
    registered = json.loads(
        (default_project.path / "reports" / "registry.json").read_text()
    )
    port = free_port()
    log = tmp_path / "container.log"
    container = run(IMAGE_RUN, "start", image, str(port), log, timeout=300).strip()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, READY_TIMEOUT, log)

        status, body = http(f"{url}/predict", {"records": [offline["record"]]})
        assert status == 200, body
        [answer] = json.loads(body)
        assert answer["probability"] == pytest.approx(offline["probability"], abs=1e-9)
        assert answer["label"] == offline["label"]
        assert answer["model_version"] == registered["tag"]

        processes = container_processes(container)
        assert any("bentoml" in command for _, _, command in processes), processes
        assert all(uid != 0 for _, uid, _ in processes), (
            f"root in the container: {processes}"
        )
    finally:
        subprocess.run(
            [str(IMAGE_RUN), "stop", container], capture_output=True, timeout=120
        )
