"""The candidate against the champion: deployments recorded as git tags, the production bundle
read back through DVC at the deployed commit (from a remote, the cache emptied), and the gate on
a better, an equal and a worse candidate, on the test split and a labelled prediction log."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.package_name }} import challenge, deployments
from {{ cookiecutter.package_name }}.bundle import ModelBundle, load_bundle
from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.config import Paths, load_params
from {{ cookiecutter.package_name }}.errors import GateError, PipelineError
from {{ cookiecutter.package_name }}.io import file_sha256
from {{ cookiecutter.package_name }}.monitoring import simulate
from {{ cookiecutter.package_name }}.serving.prediction_log import DirectorySink
from tests.conftest import edit_params

pytestmark = pytest.mark.unit

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}
PRODUCTION_COMMIT = "0" * 40


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, trained_once: Path) -> Path:
    """A copy of the session's scratch project with its quick model (conftest's trained_once),
    its baseline and a prediction log of simulated traffic, half of it with feedback labels."""
    root = tmp_path_factory.mktemp("challenge")
    shutil.copytree(trained_once, root, dirs_exist_ok=True)
    settings = yaml.safe_load((root / "params.yaml").read_text())
    settings["serving"]["prediction_log"] = "logs/predictions"
    settings["monitor"]["current"] = "prediction_log"
    settings["monitor"]["window"] = {"last_days": None, "last_rows": None}
    (root / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        simulate.run(load_params())
    shutil.copy(root / Paths.model, root / "models" / "trained.joblib")
    return root


@pytest.fixture
def project(trained: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The trained project as each test finds it: its model the candidate, its params."""
    settings = (trained / "params.yaml").read_text()
    monkeypatch.chdir(trained)
    yield trained
    (trained / "params.yaml").write_text(settings)
    shutil.copy(trained / "models" / "trained.joblib", trained / Paths.model)
    for path in (challenge.REPORT, challenge.RESULT):
        (trained / path).unlink(missing_ok=True)


def _in_production(monkeypatch: pytest.MonkeyPatch, bundle: ModelBundle) -> None:
    """`bundle` as production's, recorded without git (the git and DVC path has its own test)."""
    recorded = deployments.Deployment(
        environment="production",
        tag="deployed/production/20250101T000000Z",
        commit=PRODUCTION_COMMIT,
        deployed_at="2025-01-01T00:00:00+00:00",
        image_digest="sha256:" + "a" * 64,
        model_version="v1",
    )
    monkeypatch.setattr(deployments, "latest", lambda environment, cwd=".": recorded)
    monkeypatch.setattr(deployments, "read_bundle", lambda deployment, cwd=".": bundle)


def _trained(root: Path = Path()) -> ModelBundle:
    return load_bundle(root / "models" / "trained.joblib")


def _at_half(bundle: ModelBundle) -> ModelBundle:
    """The same model deciding as if every mistake cost the same (the task's default decision:
    binary 0.5 instead of its cost-based cut-off, the most probable class, the plain estimate):
    costlier on the test split, with the same ranking of rows."""
    plain = dataclasses.replace(bundle, decision=bundle.task.default_decision)
    test = bundle.schema.read_csv(Paths.test_data)
    truth, outputs = bundle.encode(test[bundle.target]), bundle.outputs(test)
    costs = [bundle.task.cost_of(truth, each.decide(outputs)) for each in (plain, bundle)]
    if costs[0] <= costs[1]:
        pytest.skip(f"the quick model's cost-based decision is the plain one ({bundle.decision})")
    return plain


def test_an_equal_candidate_passes_on_both_data(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _in_production(monkeypatch, _trained())
    result = challenge.run(load_params())
    assert result["passed"]
    test_split, window = result["comparisons"]
    assert test_split["judged"] and window["judged"], window["note"]
    assert window["rows"] >= load_params().deploy.champion.min_labelled_rows
    for comparison in (test_split, window):
        assert comparison["candidate"] == comparison["production"]
    summary = challenge.REPORT.read_text()
    assert "| test split |" in summary and "labelled window (prediction log" in summary
    assert "**Passed**" in summary and "+0.0000" in summary
    assert json.loads(challenge.RESULT.read_text())["passed"] is True


def test_a_better_candidate_passes(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _in_production(monkeypatch, _at_half(_trained()))
    # a cheaper decision may score a decision-based metric (macro F1) lower: cost is judged here
    edit_params(project, deploy__champion__max_metric_drop=1e9)
    result = challenge.run(load_params())
    assert result["passed"]
    for comparison in result["comparisons"]:
        assert comparison["candidate"]["cost"] < comparison["production"]["cost"]


def test_a_worse_candidate_is_refused_naming_the_keys(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _in_production(monkeypatch, _trained())
    load_bundle(Paths.baseline_model).save(Paths.model)  # no features used: ROC AUC 0.5
    with pytest.raises(GateError) as refused:
        challenge.run(load_params())
    failures = refused.value.failures
    for data in ("test split", "labelled window"):
        assert any(f.startswith(data) and "deploy.champion.max_metric_drop" in f for f in failures)
    summary = challenge.REPORT.read_text()
    assert "**Refused**" in summary and "deploy.champion.max_metric_drop" in summary
    assert json.loads(challenge.RESULT.read_text())["passed"] is False


def test_cost_tolerance_is_per_prediction_and_absolute(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _in_production(monkeypatch, _trained())
    _at_half(_trained()).save(Paths.model)
    with pytest.raises(GateError, match=r"deploy\.champion\.max_cost_increase 0\.05") as refused:
        challenge.run(load_params())
    assert not any("max_metric_drop" in failure for failure in refused.value.failures)
    result = json.loads(challenge.RESULT.read_text())
    test_split = result["comparisons"][0]
    costs = {side: test_split[side]["cost_per_prediction"] for side in ("candidate", "production")}
    increase = costs["candidate"] - costs["production"]
    edit_params(project, deploy__champion__max_cost_increase=round(increase + 0.5, 2))
    assert challenge.run(load_params())["passed"]  # within a looser limit


def test_a_small_labelled_window_is_shown_but_not_judged(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _in_production(monkeypatch, _trained())
    _at_half(_trained()).save(Paths.model)
    edit_params(
        project,
        deploy__champion__min_labelled_rows=100_000,
        deploy__champion__max_cost_increase=0.0,  # any costlier decision is refused
    )
    with pytest.raises(GateError) as refused:
        challenge.run(load_params())
    assert all(failure.startswith("test split") for failure in refused.value.failures)
    assert "fewer than deploy.champion.min_labelled_rows 100000" in challenge.REPORT.read_text()


def test_no_production_recorded_passes_as_the_first_deployment(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(deployments, "latest", lambda environment, cwd=".": None)
    load_bundle(Paths.baseline_model).save(Paths.model)  # would be refused against anything
    assert main(["challenge"]) == 0
    assert "first deployment" in capsys.readouterr().out


def test_the_image_to_deploy_must_carry_the_candidate_model(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The deploy workflow gives the image's lineage.model-sha256 label as IMAGE_MODEL_SHA256:
    an image of another model, or of none named, is refused even on a first deployment; the
    candidate's own passes; unset (a laptop's `make challenge`), no image is checked."""
    monkeypatch.setattr(deployments, "latest", lambda environment, cwd=".": None)
    candidate = file_sha256(Paths.model)
    other = file_sha256(Paths.baseline_model)
    monkeypatch.setenv("IMAGE_MODEL_SHA256", other)
    assert main(["challenge"]) == 1
    printed = capsys.readouterr()
    assert (
        f"serves the model of sha256 {other[:12]}, but the candidate judged here is"
        f" {candidate[:12]} (models/model.joblib)" in printed.err
    )
    assert "**another model**" in printed.out and "**Refused**" in printed.out
    monkeypatch.setenv("IMAGE_MODEL_SHA256", "")
    assert main(["challenge"]) == 1
    assert "names no model (no lineage.model-sha256 label)" in capsys.readouterr().err

    monkeypatch.setenv("IMAGE_MODEL_SHA256", candidate)
    assert main(["challenge"]) == 0
    printed = capsys.readouterr()
    assert f"`{candidate[:12]}` (the same model)" in printed.out and "**Passed.**" in printed.out
    assert json.loads(challenge.RESULT.read_text())["image"]["failures"] == []
    monkeypatch.delenv("IMAGE_MODEL_SHA256")
    assert main(["challenge"]) == 0
    assert "Image to deploy" not in capsys.readouterr().out


def test_an_unreadable_production_bundle_is_refused(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _in_production(monkeypatch, _trained())

    def unreadable(deployment: deployments.Deployment, cwd: str = ".") -> ModelBundle:
        raise PipelineError("cannot read models/model.joblib: no remote")

    monkeypatch.setattr(deployments, "read_bundle", unreadable)
    assert main(["challenge"]) == 1
    printed = capsys.readouterr()
    assert "production cannot be compared with" in printed.err
    assert "**Refused**" in printed.out


def _log_copy(project: Path, name: str) -> DirectorySink:
    """A copy of the fixture's prediction log under logs/<name>, made the window's source (the
    module's other tests keep the original)."""
    target = project / "logs" / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(project / "logs" / "predictions", target)
    edit_params(project, serving__prediction_log=f"logs/{name}")
    return DirectorySink(target)


def _feedback_by(sink: DirectorySink, labellers: list[str]) -> list[str]:
    """The log's feedback written again, each label by the next of `labellers` in turn (the
    sink written directly, as the service's would hold it); the labelled prediction ids."""
    records = [
        json.loads(line)
        for path in sorted(sink.directory.glob("feedback-*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    for path in sink.directory.glob("feedback-*.jsonl"):
        path.unlink()
    for i, record in enumerate(records):
        record["labeller"] = labellers[i % len(labellers)]
    sink.write("feedback", records)
    return [record["prediction_id"] for record in records]


def test_a_flood_of_wrong_labels_from_one_caller_is_refused_naming_it(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _in_production(monkeypatch, _trained())
    sink = _log_copy(project, "flooded")
    labelled_ids = set(_feedback_by(sink, ["outcomes"]))
    bundle = _trained()
    history = bundle.schema.read_csv(Paths.test_data)[bundle.target]
    wrong = (  # the rarest class for every row, or a number far above any seen
        str(history.value_counts().idxmin())
        if bundle.schema.target_values
        else str(float(history.max()) * 3)
    )
    unlabelled = [i for i in sink.read_predictions()["prediction_id"] if i not in labelled_ids]
    assert len(unlabelled) >= load_params().deploy.champion.min_labelled_rows
    flood = [
        {"prediction_id": i, "timestamp": datetime.now(UTC).isoformat(), "label": wrong}
        | {"labeller": "mallory"}
        for i in unlabelled
    ]
    sink.write("feedback", flood)

    with pytest.raises(GateError) as refused:
        challenge.run(load_params())
    [failure] = [f for f in refused.value.failures if f.startswith("labelled window")]
    assert "not judged with its labels" in failure and "monitor.labels.max_label_shift" in failure
    assert "'mallory'" in failure and "'outcomes'" not in failure  # the honest feed is not named
    assert all(f.startswith("labelled window") for f in refused.value.failures)
    summary = challenge.REPORT.read_text()
    assert "| mallory | " in summary and "| outcomes | " in summary  # the provenance table
    assert "**Refused**" in summary


def test_a_healthy_window_from_several_labellers_is_judged_and_shown(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _in_production(monkeypatch, _trained())
    _feedback_by(_log_copy(project, "mixed"), ["alice", "bob"])
    edit_params(project, monitor__labels__max_labeller_share=0.6)
    result = challenge.run(load_params())
    window = result["comparisons"][1]
    assert result["passed"] and window["judged"], window["note"]
    shares = {each["labeller"]: each["share"] for each in window["labels"]["labellers"]}
    assert set(shares) == {"alice", "bob"} and max(shares.values()) <= 0.6
    assert window["labels"]["shift"] <= load_params().monitor.labels.max_label_shift
    assert "| alice | " in challenge.REPORT.read_text()

    edit_params(project, monitor__labels__max_labeller_share=0.4)  # neither may supply half
    with pytest.raises(GateError) as refused:
        challenge.run(load_params())
    text = " ".join(refused.value.failures)
    for name in ("alice", "bob"):
        assert f"labeller '{name}' supplied" in text
    assert "monitor.labels.max_labeller_share 40%" in text


def _dvc(repo: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "DVC_NO_ANALYTICS": "1"},
    )


def test_the_production_bundle_is_read_at_its_tag_from_the_dvc_remote(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in GIT_IDENTITY.items():
        monkeypatch.setenv(name, value)
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    (repo / "models").mkdir(parents=True)
    _git(repo, "init", "-q")
    _dvc(repo, "init", "-q")
    _dvc(repo, "remote", "add", "-d", "storage", str(remote))
    deployed = _trained(trained)
    deployed.save(repo / Paths.model)
    _dvc(repo, "add", "-q", Paths.model.as_posix())
    _dvc(repo, "push", "-q")
    (repo / "reports").mkdir()
    (repo / Paths.registry).write_text(json.dumps({"version": "deployed-model"}))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "the deployed model")
    assert deployments.latest("production", cwd=repo) is None

    first = deployments.record(
        "production",
        image_digest="registry.example/o/p@sha256:" + "b" * 64,
        now=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        cwd=repo,
    )
    assert first.tag == "deployed/production/20250102T030405Z"
    assert first.model_version == "deployed-model"  # from reports/registry.json at the commit

    # a later candidate replaces the work tree's model; the cache and the file go
    dataclasses.replace(deployed, family="a candidate").save(repo / Paths.model)
    _dvc(repo, "add", "-q", Paths.model.as_posix())
    _git(repo, "commit", "-q", "-am", "a candidate")
    shutil.rmtree(repo / ".dvc" / "cache")
    (repo / Paths.model).unlink()

    found = deployments.latest("production", cwd=repo)
    assert found == first
    assert found.commit == _git(repo, "rev-parse", "HEAD~1").strip()
    production = deployments.read_bundle(found, cwd=repo)
    assert production.family == deployed.family != "a candidate"
    assert production.decision == deployed.decision
    assert deployments.latest("staging", cwd=repo) is None

    # a rollback is a newer tag on an older commit: the newest name wins
    later = deployments.record(
        "production", commit="HEAD", now=datetime(2025, 2, 1, tzinfo=UTC), cwd=repo
    )
    assert deployments.latest("production", cwd=repo) == later


def test_recording_refuses_bad_names_and_digests(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="environment 'Prod uction'"):
        deployments.record("Prod uction", cwd=tmp_path)
    with pytest.raises(PipelineError, match="image digest 'latest'"):
        deployments.record("production", image_digest="latest", cwd=tmp_path)
