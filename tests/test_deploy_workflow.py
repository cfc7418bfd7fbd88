"""The generated project's deploy workflow (deploy.yml), run here with the local runner up to
what needs GitHub or a cluster: a dispatched digest is checked in the first step (a malformed
one refused with the problem named), the staging overlay is rendered with the image pinned by
that digest (and passes `kubectl kustomize`), the cluster credential is read without ever
appearing in a log; applying, the rollout, the smoke test of the staging URL and the GHCR lookup
are listed with why they are not run. The production job renders its overlay with the digest
(applying it and recording the deployment are not run); the rollback job refuses a malformed
digest, and a rollback with no recorded production deployment. `make rollback` refuses with no
recorded production deployment and, with one recorded, names its digest and prints what it
would apply (DRY_RUN=1).

Shares the repository fixture of test_workflows.py (the piped default project)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import Project
from test_workflows import GITHUB_ONLY, assert_green, make_runner, repository
from workflow_runner import Event, WorkflowRunner

pytestmark = pytest.mark.e2e

__all__ = ["repository"]  # the module-scoped fixture, shared

DIGEST = "sha256:" + "5" * 64
# A kubeconfig whose token is a marker: it must appear in no step's output.
MARKER = "kube-secret-marker-7f3a9c"
KUBE_CONFIG = f"""apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {{server: "https://127.0.0.1:1"}}
users:
- name: u
  user: {{token: {MARKER}}}
contexts:
- name: staging-context
  context: {{cluster: c, user: u}}
current-context: staging-context
"""
NEEDS_CLUSTER = {
    "The image is in GHCR": "needs ghcr.io (docker login with the job's token)",
    "Apply to staging and wait for the rollout": "needs a Kubernetes API server",
    "Smoke test of staging (ready, a prediction as offline, malformed refused)": (
        "needs the staging service at its public host"
    ),
}
PRODUCTION_NEEDS_CLUSTER = {
    "Apply to production and wait for the canary": "needs a Kubernetes API server and Flagger",
    "Record the deployment (a deployed/production tag)": "pushes a tag to the repository",
}
RENDER = "Render the staging manifests with the image pinned by digest"
CHECK = "The digest is sha256:<64 hex digits>"


def deploy_runner(repository: Project, work: Path) -> WorkflowRunner:
    """The local runner of deploy.yml: the steps that need a cluster or GitHub listed with why,
    the environments' KUBE_CONFIG secret the stand-in kubeconfig."""
    return make_runner(
        repository.path,
        "deploy.yml",
        work,
        github_only={**GITHUB_ONLY, **NEEDS_CLUSTER, **PRODUCTION_NEEDS_CLUSTER},
        secrets={"KUBE_CONFIG": KUBE_CONFIG},
    )


def dispatch(digest: str) -> Event:
    return Event(
        "workflow_dispatch", ref="main", inputs={"action": "deploy", "digest": digest}
    )


@pytest.mark.parametrize(
    ("digest", "problem"),
    [
        ("", "no digest given"),
        ("latest", "does not start with sha256:"),
        ("sha256:" + "5" * 63, "has 63 characters after sha256:, not 64"),
        ("sha256:" + "Z" * 64, "characters other than 0-9 and a-f"),
    ],
)
def test_a_malformed_digest_is_refused_in_the_first_step(
    repository: Project, tmp_path: Path, digest: str, problem: str
) -> None:
    runner = deploy_runner(repository, tmp_path)
    job = runner.run_job("staging", dispatch(digest))
    assert job.result == "failure", job.report()
    first, *rest = job.steps
    assert first.name == CHECK and first.outcome == "failure", job.report()
    [line] = [line for line in first.output.splitlines() if "::error::" in line]
    assert problem in line, line
    assert all(step.outcome == "skipped" for step in rest), job.report()


def test_staging_renders_the_digest_and_never_shows_the_credential(
    repository: Project, tmp_path: Path
) -> None:
    runner = deploy_runner(repository, tmp_path)
    assert (
        runner.run_job(
            "staging", Event("workflow_dispatch", inputs={"action": "rollback"})
        ).result
        == "skipped"
    )
    job = runner.run_job("staging", dispatch(DIGEST))
    assert_green(job, not_run=tuple(NEEDS_CLUSTER))
    assert (
        "Cluster context: staging-context"
        in job.step("The cluster credential is a kubeconfig").output
    )
    assert all(MARKER not in step.output for step in job.steps), job.report()
    assert MARKER not in job.summary
    temp = job.workspace.parents[1] / "temp"  # the job's RUNNER_TEMP
    assert not (temp / "kubeconfig").exists()  # removed by its step

    render = job.step(RENDER)
    assert render.outputs["namespace"].endswith("-staging"), render.outputs
    assert render.outputs["host"].startswith("staging."), render.outputs
    rendered = temp / "staging.yaml"
    text = rendered.read_text()
    assert f"@{DIGEST}" in text and "sha256:" + "0" * 64 not in text
    assert DIGEST in job.summary
    # what is applied is what kustomize makes of it: a plain list of resources renders again
    kubectl = shutil.which("kubectl")
    if kubectl:
        (tmp_path / "check").mkdir()
        shutil.copy(rendered, tmp_path / "check" / "staging.yaml")
        (tmp_path / "check" / "kustomization.yaml").write_text(
            "resources: [staging.yaml]\n"
        )
        again = subprocess.run(
            [kubectl, "kustomize", str(tmp_path / "check")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert again.returncode == 0 and f"@{DIGEST}" in again.stdout, again.stderr


def test_make_rollback_refuses_without_a_record_and_names_the_recorded_digest(
    repository: Project, tmp_path: Path
) -> None:
    project = repository.copy(tmp_path / repository.path.name)
    refused = project.run("make", "rollback", "DRY_RUN=1", check=False, timeout=600)
    assert refused.returncode != 0
    assert "no production deployment is recorded" in refused.stdout, refused.stdout[
        -2000:
    ]

    package = project.path.name.replace("-", "_")
    project.run("python", "-m", package, "record-deployment", "--image-digest", DIGEST)
    planned = project.run("make", "rollback", "DRY_RUN=1", timeout=600)
    assert f"rollback of production to {DIGEST}" in planned.stdout, planned.stdout[
        -2000:
    ]
    assert f"@{DIGEST}" in planned.stdout and "skipAnalysis: true" in planned.stdout
    assert "dry run: nothing applied" in planned.stdout


def test_production_renders_the_digest_for_the_canary(
    repository: Project, tmp_path: Path
) -> None:
    """The production job (after the challenge, and a reviewer's approval on GitHub) renders
    the production overlay with the digest, the Canary's time limit read from params."""
    runner = deploy_runner(repository, tmp_path)
    job = runner.run_job("production", dispatch(DIGEST))
    assert_green(job, not_run=tuple(PRODUCTION_NEEDS_CLUSTER))
    render = job.step("Render the production manifests with the image pinned by digest")
    assert int(render.outputs["canary_timeout"]) > 0, render.outputs
    temp = job.workspace.parents[1] / "temp"
    text = (temp / "production.yaml").read_text()
    assert f"@{DIGEST}" in text and "kind: Canary" in text
    assert f"{render.outputs['image']}@{DIGEST}" in job.summary


@pytest.mark.parametrize(
    ("digest", "step", "problem"),
    [
        (
            "sha256:abc",
            "The digest, if given, is sha256:<64 hex digits>",
            "is not sha256:",
        ),
        (
            "",
            "Render production as recorded (analysis skipped)",
            "no production deployment",
        ),
    ],
)
def test_a_rollback_with_nothing_to_return_to_is_refused(
    repository: Project, tmp_path: Path, digest: str, step: str, problem: str
) -> None:
    """A malformed digest is refused first; with no production deployment recorded (this
    repository has none) there is nothing to roll back to, said before anything is applied."""
    runner = deploy_runner(repository, tmp_path)
    job = runner.run_job(
        "rollback",
        Event(
            "workflow_dispatch",
            ref="main",
            inputs={"action": "rollback", "digest": digest},
        ),
    )
    assert job.result == "failure", job.report()
    failed = job.step(step)
    assert failed.outcome == "failure", job.report()
    assert problem in failed.output, failed.output[-2000:]
    later = job.steps[job.steps.index(failed) + 1 :]
    assert later and all(s.outcome == "skipped" for s in later), job.report()


def test_the_challenge_job_puts_the_comparison_in_its_summary(
    repository: Project, tmp_path: Path
) -> None:
    """The gate between staging and production: `make challenge` in a fresh checkout (the
    pipeline rebuilt from the data in git, as with a local DVC remote). This repository records
    no production deployment: the first one has nothing to beat, and the summary says so. The
    staging job's output, the model inside the image (as release.yml labels it: the sha256 of
    the repository's bundle), reaches the challenge, which finds it is the model it judges:
    the rebuilt bundle is byte for byte the one the image carries."""
    runner = deploy_runner(repository, tmp_path)
    model = hashlib.sha256((repository.path / "models" / "model.joblib").read_bytes())
    job = runner.run_job(
        "challenge",
        dispatch(DIGEST),
        needs_outputs={"staging": {"model_sha256": model.hexdigest()}},
    )
    assert_green(job)
    assert "no production deployment" in job.summary.lower(), job.summary[-2000:]
    assert f"`{model.hexdigest()[:12]}` (the same model)" in job.summary, job.summary[
        -2000:
    ]
