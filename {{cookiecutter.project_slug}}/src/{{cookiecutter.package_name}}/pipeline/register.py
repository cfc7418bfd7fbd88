"""Stage 9, register: put the gated model into the project's BentoML model store with its lineage
(code version, data hash, params, evaluation and fairness results) and its schema, so that any
served prediction can be traced back to exactly what produced it."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from {{ cookiecutter.package_name }}.config import Params, Paths
from {{ cookiecutter.package_name }}.errors import GateError, PipelineError
from {{ cookiecutter.package_name }}.io import read_json, write_json
from {{ cookiecutter.package_name }}.schema import load_schema
from {{ cookiecutter.package_name }}.serving.store import (
    LINEAGE_FILE,
    MODEL_FILE,
    SCHEMA_FILE,
    use_project_store,
)

UNCOMMITTED = "uncommitted"


def git_state(cwd: Path | str = ".") -> dict[str, Any]:
    """The commit the code came from and whether the work tree differed from it.

    A project without commits (or without git) is recorded as "uncommitted" rather than refused:
    the first `make pipeline` of a freshly generated project must work.
    """

    def git(*args: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None

    head = git("rev-parse", "--verify", "--quiet", "HEAD")
    commit = head.stdout.strip() if head is not None and head.returncode == 0 else UNCOMMITTED
    status = git("status", "--porcelain", "--untracked-files=no")
    dirty = (
        commit == UNCOMMITTED
        or status is None
        or status.returncode != 0
        or bool(status.stdout.strip())
    )
    return {"commit": commit, "dirty": dirty}


def gate_failures(metrics: dict[str, Any], fairness: dict[str, Any]) -> list[str]:
    """Why the model must not be registered: a gate that did not pass, or no gate recorded."""
    failures = []
    for name, path, result in (
        ("evaluate", Paths.metrics, metrics),
        ("fairness", Paths.fairness, fairness),
    ):
        gate = result.get("gate")
        if not isinstance(gate, dict) or gate.get("passed") is not True:
            reasons = (
                "; ".join(gate.get("failures") or [])
                if isinstance(gate, dict)
                else "no gate result"
            )
            failures.append(
                f"the {name} gate did not pass ({path}): {reasons or 'no reason recorded'}"
            )
    return failures


def negative_label(target_values: tuple[Any, ...], positive_label: Any) -> Any:
    """The schema's other target value: what class 0 means when the service answers."""
    others = [value for value in target_values if str(value) != str(positive_label)]
    if len(others) != 1:
        raise PipelineError(
            f"data.positive_label {positive_label!r} is not one of the schema's target values"
            f" {list(target_values)}"
        )
    return others[0]


def lineage(params: Params) -> dict[str, Any]:
    """Everything needed to reproduce and judge the model, read from the pipeline's own outputs."""
    for path in (Paths.model, Paths.raw_manifest, Paths.metrics, Paths.fairness):
        if not Path(path).is_file():
            raise PipelineError(f"{path} is missing: run the earlier stages first (make pipeline)")
    metrics, fairness = read_json(Paths.metrics), read_json(Paths.fairness)
    failures = gate_failures(metrics, fairness)
    if failures:
        raise GateError("register", [*failures, "refusing to register a model that failed a gate"])
    schema = load_schema(params.data.schema_file)
    manifest = read_json(Paths.raw_manifest)
    return {
        "git": git_state(),
        "data": {key: manifest.get(key) for key in ("sha256", "source", "kind", "rows")},
        "params": params.model_dump(mode="json", by_alias=True),
        "evaluation": metrics,
        "fairness": fairness,
        "target": {
            "name": schema.target,
            "positive_label": params.data.positive_label,
            "negative_label": negative_label(schema.target_values, params.data.positive_label),
        },
        "registered_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _without_nulls(value: Any) -> Any:
    """BentoML metadata refuses None; a missing key says the same thing."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value if item is not None]
    return value


def labels_for(record: dict[str, Any]) -> dict[str, str]:
    """Short string labels for `bentoml models list` and filtering; the full lineage is metadata."""
    primary = record["params"]["evaluate"]["primary_metric"]
    return {
        "git_commit": record["git"]["commit"],
        "git_dirty": str(record["git"]["dirty"]).lower(),
        "data_sha256": str(record["data"]["sha256"]),
        "model_family": record["params"]["train"]["model"],
        primary: f"{record['evaluation']['model'][primary]:.4f}",
        "gates": "passed",
    }


def register(params: Params) -> dict[str, Any]:
    """Save the model, its schema and its lineage as a new version in the BentoML store."""
    record = lineage(params)
    use_project_store()
    import bentoml  # after use_project_store: BentoML reads BENTOML_HOME when first used

    name = params.serving.model_name
    with bentoml.models.create(
        name, labels=labels_for(record), metadata=_without_nulls(record)
    ) as model:
        shutil.copyfile(Paths.model, model.path_of(MODEL_FILE))
        shutil.copyfile(params.data.schema_file, model.path_of(SCHEMA_FILE))
        write_json(record, model.path_of(LINEAGE_FILE))
    return {"tag": str(model.tag), "name": name, "version": model.tag.version, **record}


def run(params: Params) -> dict[str, Any]:
    entry = register(params)
    write_json(entry, Paths.registry)
    return entry
