"""The generated project's `make serve`, run for real: the service starts on loopback at the
port given, becomes ready, refuses a request without a token, answers one with the local token
`make serve` made (git-ignored) like the model offline does, publishes its metrics, and is
stopped afterwards with every process it started.

BentoML's arbiter puts each worker in a session of its own, so ending the process group of
`make serve` may leave a worker behind: `loopback.running_make` finds what is left, ends it,
and the test fails if a graceful stop of the group had left any.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Project
from loopback import http, listening_addresses, offline_prediction, running_make

pytestmark = pytest.mark.e2e

# made by `make serve`, read by `make simulate`
LOCAL_TOKEN = Path("secrets") / "local-token"


@pytest.fixture(scope="module")
def project(
    default_project: Project, tmp_path_factory: pytest.TempPathFactory
) -> Project:
    """A copy of the default project: serving writes its prediction log into the project."""
    directory = tmp_path_factory.mktemp("serve") / default_project.path.name
    return default_project.copy(directory)


@pytest.fixture
def served(project: Project, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`make serve PORT=<free port>` running in the project: (its URL, its log file)."""
    with running_make(project, ["serve"], tmp_path / "serve.log") as server:
        listening = listening_addresses(server.port)
        assert listening <= {"0100007F"}, (
            f"port {server.port} is listened on beyond 127.0.0.1: {listening}"
        )
        yield server.url, server.log
    assert not server.survivors, (
        f"processes of make serve survived SIGKILL: {server.survivors}"
    )
    # Stopping `make serve` (SIGTERM to its process group) must end BentoML's workers too.
    assert not server.stragglers, (
        f"make serve left workers running after SIGTERM: {server.stragglers}"
    )


def test_make_serve_answers_on_loopback(
    served: tuple[str, Path], project: Project
) -> None:
    url, log = served
    offline = offline_prediction(project)
    registered = json.loads((project.path / "reports" / "registry.json").read_text())

    status, body = http(f"{url}/predict", {"records": [offline["record"]]})
    assert status == 401, body
    # git-ignored, or this fails
    project.run("git", "check-ignore", "--quiet", str(LOCAL_TOKEN))
    token = (project.path / LOCAL_TOKEN).read_text().strip()
    status, body = http(f"{url}/predict", {"records": [offline["record"]]}, token=token)
    assert status == 200, f"{body}\n{log.read_text()[-3000:]}"
    [answer] = json.loads(body)
    assert set(answer) == {"prediction_id", "label", "probability", "model_version"}
    assert 0.0 <= answer["probability"] <= 1.0
    assert answer["probability"] == pytest.approx(offline["probability"], abs=1e-9)
    assert answer["label"] == offline["label"], (
        answer
    )  # decided at the bundle's threshold
    assert uuid.UUID(answer["prediction_id"]).version == 4
    assert answer["model_version"] == registered["tag"]

    status, metrics = http(f"{url}/metrics")
    assert status == 200 and "# TYPE" in metrics, metrics[:500]
