"""The register stage: what lineage it records, and that it refuses a model that failed a gate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from sklearn.dummy import DummyClassifier

from {{ cookiecutter.package_name }}.bundle import load_bundle
from {{ cookiecutter.package_name }}.config import Paths, load_params
from {{ cookiecutter.package_name }}.errors import GateError
from {{ cookiecutter.package_name }}.git import UNCOMMITTED
from {{ cookiecutter.package_name }}.git import state as git_state
from {{ cookiecutter.package_name }}.io import read_json, write_json
from {{ cookiecutter.package_name }}.pipeline import register
from {{ cookiecutter.package_name }}.pipeline.register import lineage
from {{ cookiecutter.package_name }}.pipeline.train import make_bundle, model_inputs
from {{ cookiecutter.package_name }}.schema import load_schema
from {{ cookiecutter.package_name }}.serving.store import (
    BUNDLE_FILE,
    LINEAGE_FILE,
    MODEL_NAME,
    SCHEMA_FILE,
    SERVING_FILE,
)
from {{ cookiecutter.package_name }}.task import Decision

pytestmark = pytest.mark.unit

DATA_HASH = "ab" * 32
PINNED: dict[str, float | str] = {  # a pinned decision per task
    "binary": 0.6,
    "multiclass": "most_probable",
    "regression": 0.6,
}


def passed_gate() -> dict[str, Any]:
    return {"passed": True, "failures": []}


@pytest.fixture
def gated(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace holding what the earlier stages leave for register (a stand-in model)."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(workspace.parent))  # not inside any repo
    params = load_params()
    schema = load_schema(params.data.schema_file)
    inputs = model_inputs(schema, params.data)
    rows = pd.DataFrame({name: [0, 0] for name in inputs})
    stand_in = DummyClassifier(strategy="prior").fit(rows, [0, 1])
    Paths.model.parent.mkdir(parents=True)
    pinned = Decision(PINNED[params.data.task], "params")
    make_bundle(stand_in, schema, params, inputs, pinned, "stand-in", rows).save(Paths.model)
    write_json(
        {"sha256": DATA_HASH, "source": "data/external/x.csv", "kind": "file", "rows": 10},
        Paths.raw_manifest,
    )
    primary, measure = params.evaluate.primary_metric, next(iter(params.fairness.thresholds))
    write_json({"model": {primary: 0.81}, "gate": passed_gate()}, Paths.metrics)
    sensitive = params.data.sensitive_features[0]
    write_json(
        {"features": {sensitive: {measure: 0.1}}, "gate": passed_gate()},
        Paths.fairness,
    )
    return workspace


def test_lineage_records_code_data_params_and_results(gated: Path) -> None:
    params = load_params()

    record = lineage(params, load_bundle(Paths.model))

    assert record["git"] == {"commit": UNCOMMITTED, "dirty": True}
    assert record["data"]["sha256"] == DATA_HASH
    assert record["params"]["train"]["model"] == params.train.model
    assert record["params"]["serving"]["max_records"] == params.serving.max_records
    assert record["decision"] == {"threshold": PINNED[params.data.task], "chosen_by": "params"}
    assert record["evaluation"] == read_json(Paths.metrics)
    assert record["fairness"] == read_json(Paths.fairness)
    bundle = load_bundle(Paths.model)
    assert record["target"]["task"] == params.data.task
    for key, value in bundle.task.labels().items():  # binary: the labels; multiclass: classes
        assert str(record["target"][key]) == str(value), key


def test_git_state_names_the_commit_and_whether_the_tree_changed(gated: Path) -> None:
    def git(*args: str) -> str:
        identity = ["-c", "user.name=Test", "-c", "user.email=test@example.com"]
        return subprocess.run(
            ["git", *identity, *args], check=True, capture_output=True, text=True
        ).stdout

    git("init", "-q")
    assert git_state()["commit"] == UNCOMMITTED  # a repository without commits yet
    git("add", "params.yaml")
    git("commit", "-qm", "params")
    head = git("rev-parse", "HEAD").strip()
    assert git_state() == {"commit": head, "dirty": False}
    Path("params.yaml").write_text(Path("params.yaml").read_text() + "\n# edited\n")
    assert git_state() == {"commit": head, "dirty": True}


@pytest.mark.parametrize("gate_file", [Paths.metrics, Paths.fairness])
def test_refuses_a_model_that_failed_a_gate(gated: Path, gate_file: Path) -> None:
    result = read_json(gate_file)
    result["gate"] = {"passed": False, "failures": ["roc_auc 0.500 is below the threshold 0.700"]}
    write_json(result, gate_file)

    with pytest.raises(GateError, match=r"roc_auc 0\.500 is below") as refusal:
        register.run(load_params())

    assert str(gate_file) in str(refusal.value)
    assert not Paths.registry.exists()  # what the stage writes last, only after saving the model
    assert not (gated / ".bentoml" / "models").exists()  # and nothing reached the store


def test_refuses_when_a_gate_result_is_missing(gated: Path) -> None:
    write_json({"model": {"roc_auc": 0.81}}, Paths.metrics)  # written by an older evaluate stage
    with pytest.raises(GateError, match="evaluate gate did not pass"):
        lineage(load_params(), load_bundle(Paths.model))


def run_register_stage() -> None:
    """`python -m <package> register` in its own process, with the project's default store
    (BentoML fixes its store location when first imported)."""
    env = {key: value for key, value in os.environ.items() if key != "BENTOML_HOME"}
    env["BENTOML_DO_NOT_TRACK"] = "true"
    done = subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}", "register"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


def test_register_stage_saves_model_schema_and_lineage_in_the_project_store(gated: Path) -> None:
    params = load_params()
    run_register_stage()
    entry = read_json(Paths.registry)
    assert entry["tag"] == f"{MODEL_NAME}:{entry['version']}"
    assert entry["data"]["sha256"] == DATA_HASH
    stored = gated / ".bentoml" / "models" / MODEL_NAME / entry["version"]
    assert (stored / BUNDLE_FILE).read_bytes() == Paths.model.read_bytes()
    assert load_schema(stored / SCHEMA_FILE) == load_schema(params.data.schema_file)
    assert read_json(stored / SERVING_FILE) == params.serving.model_dump(mode="json")
    assert read_json(stored / LINEAGE_FILE)["git"]["commit"] == UNCOMMITTED
    info = yaml.safe_load((stored / "model.yaml").read_text())
    assert info["labels"]["data_sha256"] == DATA_HASH
    assert info["labels"]["git_commit"] == UNCOMMITTED
    assert info["metadata"]["evaluation"]["gate"]["passed"] is True
    pinned = PINNED[params.data.task]
    shown = f"{pinned:.4f}" if isinstance(pinned, float) else pinned
    assert info["labels"]["decision_threshold"] == shown


SECRET = "s3cr3t-t0ken"


def test_no_credential_of_the_source_reaches_the_store_or_the_registry(gated: Path) -> None:
    """Even a credential written into params.yaml (do not: use ${NAME}) is recorded redacted."""
    source = f"postgresql://app:{SECRET}@db.example/credit?sslpassword={SECRET}"
    settings = yaml.safe_load(Path("params.yaml").read_text())
    settings["data"]["source"] = source
    Path("params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    write_json(
        {"sha256": DATA_HASH, "source": source, "kind": "database", "rows": 10},
        Paths.raw_manifest,
    )
    run_register_stage()

    written = [Paths.registry, *(gated / ".bentoml" / "models").rglob("*")]
    assert any(path.is_file() for path in written)
    for path in written:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    assert "app:***@db.example" in Paths.registry.read_text()
