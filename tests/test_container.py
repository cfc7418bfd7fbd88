"""The generated project's container image, built and run for real: the bento that `make build`
makes, exported and built with buildah from BentoML's own Dockerfile (no Docker daemon needed),
started on loopback, and checked from outside: ready, answering like the model offline does,
and not running as root.

Skipped only when buildah is missing, and never when CI is set (there it fails instead). Needs
root (buildah with vfs storage) and a `python:3.11-slim` base: pulled where a registry is
reachable, else the local stand-in that ../shared/tools/stand-in-base-image builds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TEMPLATE, Project, cookiecutter_defaults

pytestmark = pytest.mark.container

BUILDAH = ["buildah", "--storage-driver", "vfs"]
IMAGE_RUN = TEMPLATE.parent / "shared" / "tools" / "image-run"
READY_TIMEOUT = (
    300.0  # seconds: about 5 s here once built; a cold, busy runner needs more
)

OFFLINE_PREDICTION = """
import json, joblib
from {package}.config import Paths, load_params
from {package}.schema import load_schema
schema = load_schema(load_params().data.schema_file)
row = schema.read_csv(Paths.test_data)[schema.feature_names].head(1)
probability = float(joblib.load(Paths.model).predict_proba(row)[0, 1])
record = json.loads(row.to_json(orient="records"))[0]
print(json.dumps({{"record": record, "probability": probability}}))
"""


@pytest.fixture(scope="module")
def buildah() -> None:
    if shutil.which("buildah") is None:
        if os.environ.get("CI"):
            pytest.fail(
                "buildah is not installed, and CI is set: the image must be tested here"
            )
        pytest.skip(
            "buildah is not installed: the container image cannot be built here"
        )
    if not IMAGE_RUN.is_file():
        pytest.fail(f"{IMAGE_RUN} is missing: it starts and stops the image")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


def http(url: str, body: Any = None, timeout: float = 30) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def build_bento(project: Project) -> str:
    """`make build` in the project; the tag of the bento it made."""
    output = project.run("make", "build", timeout=1200).stdout
    match = re.search(r'Successfully built Bento\(tag="([^"]+)"\)', output)
    assert match, f"no bento tag in the output of make build:\n{output[-3000:]}"
    return match.group(1)


@pytest.fixture(scope="module")
def image(
    buildah: None, default_project: Project, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The image built from a copy of the default project (building adds to its bento store)."""
    work = tmp_path_factory.mktemp("container")
    project = default_project.copy(work / "project")
    tag = build_bento(project)
    archive = work / "bento.tar"
    project.run("bentoml", "export", tag, str(archive), timeout=600)
    context = work / "context"
    with tarfile.open(archive) as bento:
        bento.extractall(context, filter="data")
    assert (context / "models").is_dir(), "the exported bento carries no model"
    defaults = cookiecutter_defaults()
    name = f"ghcr.io/{defaults['github_owner']}/{project.path.name}:{tag.split(':')[1]}"
    dockerfile = context / "env" / "docker" / "Dockerfile"
    build = [
        *BUILDAH,
        "build",
        "--isolation",
        "chroot",
        "-f",
        dockerfile,
        "-t",
        name,
        context,
    ]
    run(*build, timeout=1800)
    try:
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
    package = default_project.path.name.replace("-", "_")
    offline = json.loads(
        default_project.run(
            "python", "-c", OFFLINE_PREDICTION.format(package=package)
        ).stdout
    )
    registered = json.loads(
        (default_project.path / "reports" / "registry.json").read_text()
    )
    port = free_port()
    log = tmp_path / "container.log"
    container = run(IMAGE_RUN, "start", image, str(port), log, timeout=300).strip()
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                if http(f"{url}/readyz", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                tail = log.read_text()[-4000:]
                pytest.fail(f"/readyz not 200 after {READY_TIMEOUT:.0f} s:\n{tail}")
            time.sleep(1)

        status, body = http(f"{url}/predict", {"records": [offline["record"]]})
        assert status == 200, body
        [answer] = json.loads(body)
        assert answer["probability"] == pytest.approx(offline["probability"], abs=1e-9)
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
