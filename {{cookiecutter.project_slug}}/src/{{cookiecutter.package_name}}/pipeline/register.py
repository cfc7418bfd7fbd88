"""Stage 11, register: put the gated model bundle into the project's BentoML model store with its
lineage (code version, data hash, params, evaluation and fairness results) and the serving
settings, so that any served prediction can be traced back to exactly what produced it. Data
source credentials never reach the store: sources are recorded redacted."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from {{ cookiecutter.package_name }} import git
from {{ cookiecutter.package_name }}.bundle import ModelBundle, load_bundle
from {{ cookiecutter.package_name }}.config import Params, Paths
from {{ cookiecutter.package_name }}.errors import GateError, PipelineError
from {{ cookiecutter.package_name }}.io import read_json, redact, stage_outputs
from {{ cookiecutter.package_name }}.serving.store import (
    BUNDLE_FILE,
    LINEAGE_FILE,
    MODEL_NAME,
    SCHEMA_FILE,
    SERVING_FILE,
    use_project_store,
)


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


def public_params(params: Params) -> dict[str, Any]:
    """params.yaml as recorded in lineage: every source and log location redacted."""
    dump = params.model_dump(mode="json", by_alias=True)
    dump["data"]["source"] = redact(params.data.source)
    dump["serving"]["prediction_log"] = redact(params.serving.prediction_log)
    return dump


def lineage(params: Params, bundle: ModelBundle) -> dict[str, Any]:
    """Everything needed to reproduce and judge the model, read from the pipeline's own outputs."""
    for path in (Paths.raw_manifest, Paths.metrics, Paths.fairness):
        if not Path(path).is_file():
            raise PipelineError(f"{path} is missing: run the earlier stages first (make pipeline)")
    metrics, fairness = read_json(Paths.metrics), read_json(Paths.fairness)
    failures = gate_failures(metrics, fairness)
    if failures:
        raise GateError("register", [*failures, "refusing to register a model that failed a gate"])
    manifest = read_json(Paths.raw_manifest)
    return {
        "git": git.state(),
        "data": {
            "sha256": manifest.get("sha256"),
            "source": redact(str(manifest.get("source", ""))),
            "kind": manifest.get("kind"),
            "rows": manifest.get("rows"),
        },
        "params": public_params(params),
        "evaluation": metrics,
        "fairness": fairness,
        "target": {"name": bundle.target, "task": bundle.task.name, **bundle.task.labels()},
        "decision": {"threshold": bundle.decision.value, "chosen_by": bundle.decision.source},
        "inputs": list(bundle.features),
        "registered_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _without_nulls(value: Any) -> Any:
    """BentoML metadata refuses None; a missing key says the same thing."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value if item is not None]
    return value


def _short(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else str(value)


def labels_for(record: dict[str, Any]) -> dict[str, str]:
    """Short string labels for `bentoml models list` and filtering; the full lineage is metadata."""
    primary = record["params"]["evaluate"]["primary_metric"]
    return {
        "git_commit": record["git"]["commit"],
        "git_dirty": str(record["git"]["dirty"]).lower(),
        "data_sha256": str(record["data"]["sha256"]),
        "model_family": record["params"]["train"]["model"],
        "decision_threshold": _short(record["decision"]["threshold"]),
        primary: f"{record['evaluation']['model'][primary]:.4f}",
        "gates": "passed",
    }


def register(params: Params) -> dict[str, Any]:
    """Save the bundle, its schema, the serving settings and the lineage as a new version."""
    bundle = load_bundle(Paths.model)
    record = lineage(params, bundle)
    serving = params.serving.model_dump(mode="json")
    serving["prediction_log"] = params.serving.prediction_log  # used as is: ${NAME} stays a name
    use_project_store()
    import bentoml  # after use_project_store: BentoML reads BENTOML_HOME when first used

    metadata = _without_nulls(
        {**record, "serving": {**serving, "prediction_log": redact(serving["prediction_log"])}}
    )
    with (
        bentoml.models.create(MODEL_NAME, labels=labels_for(record), metadata=metadata) as model,
        stage_outputs() as files,  # in place before BentoML saves the model
    ):
        shutil.copyfile(Paths.model, files.path(model.path_of(BUNDLE_FILE)))
        files.text(bundle.schema.to_yaml(), model.path_of(SCHEMA_FILE))
        files.json(serving, model.path_of(SERVING_FILE))
        files.json(record, model.path_of(LINEAGE_FILE))
    return {"tag": str(model.tag), "name": MODEL_NAME, "version": model.tag.version, **record}


def run(params: Params) -> dict[str, Any]:
    entry = register(params)
    with stage_outputs() as outputs:
        outputs.json(entry, Paths.registry)
    return entry
