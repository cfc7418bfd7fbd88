"""Deploying one image: the committed overlays rendered with the image pinned by digest (by
`kubectl kustomize`, as the deploy workflow applies them), the canary's time limit from params,
the rollback to a recorded production deployment (its commit's manifests, its digest, the
analysis skipped; refused when none is recorded), and the smoke test against a stand-in
service."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from {{ cookiecutter.package_name }} import deployments
from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.config import duration_seconds
from {{ cookiecutter.package_name }}.deploy import rollout, smoke
from {{ cookiecutter.package_name }}.deploy.manifests import PLACEHOLDER_DIGEST
from {{ cookiecutter.package_name }}.errors import PipelineError
from tests.conftest import PROJECT_ROOT, edit_params

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "a" * 64
OLDER = "sha256:" + "b" * 64
NEWER = "sha256:" + "c" * 64
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "Tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
}
needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl renders the overlays (kubectl kustomize)"
)


@pytest.mark.parametrize(
    "digest",
    [
        "",
        "latest",
        "a" * 64,  # no sha256:
        "sha256:" + "a" * 63,
        "sha256:" + "A" * 64,
        "sha256:" + "g" * 64,
        "registry.example/o/p@sha256:" + "a" * 64,  # the image's name is params', not this
    ],
)
def test_a_malformed_digest_is_refused(digest: str) -> None:
    with pytest.raises(PipelineError, match="not sha256:<64 lowercase hex digits>"):
        rollout.checked_digest(digest)


@needs_kubectl
def test_each_overlay_renders_with_the_image_pinned_by_digest(params) -> None:
    before = {
        environment: (
            PROJECT_ROOT / "deploy" / "overlays" / environment / "kustomization.yaml"
        ).read_text()
        for environment in rollout.ENVIRONMENTS
    }
    for environment in rollout.ENVIRONMENTS:
        rendered = list(yaml.safe_load_all(rollout.render(environment, DIGEST, root=PROJECT_ROOT)))
        [deployment] = [doc for doc in rendered if doc["kind"] == "Deployment"]
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"{params.deploy.image}@{DIGEST}"
        namespace = getattr(params.deploy.environments, environment).namespace
        assert {doc["metadata"].get("namespace") for doc in rendered} == {namespace}
        canaries = [doc for doc in rendered if doc["kind"] == "Canary"]
        assert all("skipAnalysis" not in canary["spec"] for canary in canaries)
    # pinned in a scratch copy: the committed overlays keep their placeholder
    for environment, text in before.items():
        path = PROJECT_ROOT / "deploy" / "overlays" / environment / "kustomization.yaml"
        assert path.read_text() == text and PLACEHOLDER_DIGEST in text


@needs_kubectl
def test_skipping_the_analysis_is_for_production_only() -> None:
    rendered = rollout.render("production", DIGEST, skip_analysis=True, root=PROJECT_ROOT)
    [canary] = [doc for doc in yaml.safe_load_all(rendered) if doc["kind"] == "Canary"]
    assert canary["spec"]["skipAnalysis"] is True
    assert canary["spec"]["analysis"]["stepWeights"]  # the analysis itself is kept
    with pytest.raises(PipelineError, match="only production"):
        rollout.render("staging", DIGEST, skip_analysis=True, root=PROJECT_ROOT)


def test_the_canary_timeout_covers_every_step_and_the_failed_checks(workspace: Path) -> None:
    params = edit_params(
        workspace, deploy__canary__step_weights=[10, 50], deploy__canary__interval="30s"
    )
    canary = params.deploy.canary
    timeout = rollout.canary_timeout_seconds(params)
    # the pods' start, 2 steps + the promotion + the failed checks, then a margin
    least = rollout.STARTUP_SECONDS + (2 + 1 + canary.failed_checks) * 30
    assert least < timeout <= least + 2 * 30
    facts = rollout.environment_facts(params, "production")
    assert facts["canary_timeout"] == str(timeout)
    assert facts["canary_interval"] == str(duration_seconds("30s"))
    assert facts["namespace"] == params.deploy.environments.production.namespace


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=60
    ).stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A git repository holding the project's deploy/ (committed), and nothing recorded."""
    for name, value in GIT_IDENTITY.items():
        monkeypatch.setenv(name, value)
    repo = tmp_path / "repo"
    shutil.copytree(PROJECT_ROOT / "deploy", repo / "deploy")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "deploy/")
    yield repo


def test_history_lists_the_recorded_deployments_newest_first(repo: Path) -> None:
    assert deployments.history("production", cwd=repo) == []
    first = deployments.record(
        "production", image_digest=OLDER, now=datetime(2025, 1, 1, tzinfo=UTC), cwd=repo
    )
    second = deployments.record(
        "production",
        image_digest="registry.example/o/p@" + NEWER,
        now=datetime(2025, 2, 1, tzinfo=UTC),
        cwd=repo,
    )
    assert deployments.history("production", cwd=repo) == [second, first]
    assert deployments.latest("production", cwd=repo) == second
    assert deployments.digest_of(second.image_digest) == NEWER
    assert deployments.history("staging", cwd=repo) == []


def test_deploy_dir_at_a_commit_extracts_without_tar_filters(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Pythons before 3.11.4 (no `tarfile.data_filter`, no `filter` argument: Debian 12's
    3.11.2) deploy/ at a commit is extracted all the same, plain files and directories only."""
    commit = _git(repo, "rev-parse", "HEAD").strip()
    extract = tarfile.TarFile.extractall

    def as_before_3_11_4(self: tarfile.TarFile, path: Any = ".", members: Any = None) -> None:
        extract(self, path, members, filter="fully_trusted")

    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    monkeypatch.setattr(tarfile.TarFile, "extractall", as_before_3_11_4)
    rollout.deploy_dir_at(commit, tmp_path / "out", cwd=repo)
    extracted, committed = (
        sorted(path.relative_to(root) for path in root.rglob("*"))
        for root in (tmp_path / "out" / "deploy", repo / "deploy")
    )
    assert extracted == committed and committed

    link = tarfile.TarInfo("deploy/escape")
    link.type, link.linkname = tarfile.SYMTYPE, "../../etc/passwd"
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.addfile(link)
    archive.seek(0)
    with (
        tarfile.open(fileobj=archive) as tar,
        pytest.raises(PipelineError, match="not a plain file or directory"),
    ):
        rollout.plain_members(tar, commit)


def test_a_rollback_without_a_recorded_deployment_is_refused(repo: Path) -> None:
    with pytest.raises(PipelineError, match="no production deployment is recorded"):
        rollout.rollback(root=repo)


@needs_kubectl
def test_a_rollback_re_applies_a_recorded_deployment_as_it_was(repo: Path) -> None:
    older = deployments.record(
        "production", image_digest=OLDER, now=datetime(2025, 1, 1, tzinfo=UTC), cwd=repo
    )
    # deploy/ changes after the older deployment: its rollback applies the older manifests
    hpa = repo / "deploy" / "overlays" / "production" / "autoscaler.yaml"
    hpa.write_text(hpa.read_text().replace("maxReplicas:", "maxReplicas: 99 #"))
    _git(repo, "commit", "-q", "-am", "more replicas")
    newer = deployments.record(
        "production", image_digest=NEWER, now=datetime(2025, 2, 1, tzinfo=UTC), cwd=repo
    )

    planned = rollout.rollback(root=repo)  # the newest recorded
    assert (planned.deployment, planned.digest) == (newer, NEWER)
    assert f"@{NEWER}" in planned.manifests and "maxReplicas: 99" in planned.manifests

    planned = rollout.rollback(OLDER, root=repo)  # the newest that ran this digest
    assert (planned.deployment, planned.digest) == (older, OLDER)
    documents = list(yaml.safe_load_all(planned.manifests))
    [canary] = [doc for doc in documents if doc["kind"] == "Canary"]
    assert canary["spec"]["skipAnalysis"] is True
    [autoscaler] = [doc for doc in documents if doc["kind"] == "HorizontalPodAutoscaler"]
    assert autoscaler["spec"]["maxReplicas"] != 99
    assert f"@{OLDER}" in planned.manifests
    assert older.commit[:12] in planned.describe() and OLDER in planned.describe()

    with pytest.raises(PipelineError, match="no recorded production deployment ran"):
        rollout.rollback("sha256:" + "d" * 64, root=repo)


@needs_kubectl
def test_the_rollback_command_dry_run_names_the_digest_and_applies_nothing(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(repo)
    assert main(["rollback", "--dry-run"]) == 1
    assert "no production deployment is recorded" in capsys.readouterr().err
    deployments.record("production", image_digest=OLDER, cwd=repo)
    monkeypatch.setattr(rollout, "apply", lambda manifests: pytest.fail("applied"))
    output = repo / "rollback.yaml"
    assert main(["rollback", "--dry-run", "--output", str(output)]) == 0
    printed = capsys.readouterr()
    assert f"digest={OLDER}" in printed.out.splitlines()
    assert "dry run: nothing applied" in printed.err and OLDER in printed.err
    assert f"@{OLDER}" in output.read_text()


# --------------------------------------------------------------------------------------------
# The smoke test, against a stand-in service on loopback

OFFLINE: dict[str, Any] = {"record": {"age": 30}, "answer": {"label": 0, "probability": 0.25}}
TOKEN = "smoke-test-token"


class _Service(BaseHTTPRequestHandler):
    ready = 200
    probability = 0.25
    malformed = 400
    token: str | None = TOKEN  # the one it accepts; None: it asks for none

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer(self.ready if self.path == "/readyz" else 404, {})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.token and self.headers.get("Authorization") != f"Bearer {self.token}":
            self._answer(401, {"error": "send Authorization: Bearer <token>"})
            return
        if not isinstance(body.get("records"), list):
            self._answer(self.malformed, {"error": "records: a list"})
            return
        answer = {"label": 0, "probability": self.probability, "prediction_id": "x"}
        self._answer(200, [answer for _ in body["records"]])


@pytest.fixture
def service() -> Iterator[tuple[str, type[_Service]]]:
    handler = type("Handler", (_Service,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_smoke_passes_a_service_that_answers_as_the_bundle(
    service: tuple[str, type[_Service]],
) -> None:
    url, _ = service
    assert smoke.failures(url + "/", OFFLINE, TOKEN, wait=0) == []


def test_smoke_names_each_failure(service: tuple[str, type[_Service]]) -> None:
    url, handler = service
    handler.probability = 0.75
    handler.malformed = 500
    found = smoke.failures(url, OFFLINE, TOKEN, wait=0)
    assert len(found) == 3, found
    assert found[0] == "/predict: probability 0.75 but the bundle gives 0.25 offline"
    assert "is the image of this commit's model?" in found[1]
    assert "malformed request answered 500, not 4xx" in found[2]
    handler.ready = 503
    [not_ready] = smoke.failures(url, OFFLINE, TOKEN, wait=0)
    assert "/readyz answered 503" in not_ready


def test_smoke_names_a_service_open_to_anyone_and_a_refused_token(
    service: tuple[str, type[_Service]],
) -> None:
    url, handler = service
    [refused] = smoke.failures(url, OFFLINE, "another-token", wait=0)
    assert "answered 401: the service does not know the token" in refused
    assert "API_TOKEN" in refused and "make token" in refused
    handler.token = None
    [open_to_anyone] = smoke.failures(url, OFFLINE, TOKEN, wait=0)
    assert "/predict without a token answered 200, not 401" in open_to_anyone


@pytest.mark.parametrize(
    ("served", "offline", "found"),
    [
        # multiclass: each class's probability, in the bundle's order
        (
            {"label": "b", "probabilities": {"a": 0.2, "b": 0.8}},
            {"label": "b", "probabilities": {"a": 0.2, "b": 0.8 + 1e-9}},
            [],
        ),
        (
            {"label": "a", "probabilities": {"a": 0.6, "b": 0.4}},
            {"label": "b", "probabilities": {"a": 0.2, "b": 0.8}},
            ["label 'a' but the bundle gives 'b' offline", "probabilities {'a': 0.6"],
        ),
        (
            {"label": "b", "probabilities": {"b": 0.8, "a": 0.2}},
            {"label": "b", "probabilities": {"a": 0.2, "b": 0.8}},
            ["probabilities {'b': 0.8, 'a': 0.2} but the bundle gives"],
        ),
        # regression: the decided number is the label
        ({"label": 1234.5}, {"label": 1234.5}, []),
        ({"label": 1300.0}, {"label": 1234.5}, ["label 1300.0 but the bundle gives 1234.5"]),
        ({"label": True}, {"label": 1.0}, ["label True but the bundle gives 1.0"]),
        ({"prediction_id": "x"}, {"label": 0}, ["no 'label' in the answer"]),
        ("not an object", {"label": 0}, ["an answer that is not an object"]),
    ],
)
def test_smoke_compares_every_tasks_answer_field_by_field(
    served: Any, offline: dict[str, Any], found: list[str]
) -> None:
    differences = smoke.differences(served, offline)
    assert len(differences) == len(found), differences
    for difference, expected in zip(differences, found, strict=True):
        assert expected in difference


def test_what_a_service_sends_is_bounded_in_the_smoke_report() -> None:
    [difference] = smoke.differences({"label": "x" * 10_000}, {"label": "y"})
    assert difference.startswith("label 'xxx") and len(difference) < 300, len(difference)


def test_smoke_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("API_TOKEN", raising=False)
    with pytest.raises(PipelineError, match="set API_TOKEN to a token of scope predict"):
        smoke.run("http://127.0.0.1:9", wait=0)


def test_smoke_reports_a_service_that_does_not_answer() -> None:
    [found] = smoke.failures("http://127.0.0.1:9", OFFLINE, TOKEN, wait=0)
    assert "/readyz answered nothing" in found
