"""`make simulate`: realistic traffic for a newcomer's first monitoring runs. Requests are
sampled from the held-out rows (the test split); a share of them get their true label back as
feedback. They go to a running service (`URL=http://127.0.0.1:3000`, its /predict_simulated
route, with the token in `API_TOKEN` or else the one `make serve` made: scopes `simulate` and
`feedback`) or, when none runs, straight into the prediction log. Every simulated row
is marked `simulated` in the log. With drift, the columns in `monitor.simulate.drift` shift:
numbers are multiplied (within the schema's range), a category takes over half the rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from {{ cookiecutter.package_name }}.bundle import ModelBundle, load_bundle
from {{ cookiecutter.package_name }}.config import Params, Paths
from {{ cookiecutter.package_name }}.errors import ConfigError, PipelineError
from {{ cookiecutter.package_name }}.privacy import LogPolicy
from {{ cookiecutter.package_name }}.serving.auth import LOCAL_TOKEN_FILE
from {{ cookiecutter.package_name }}.serving.client import (
    UNREACHABLE,
    client_token,
    refused_caller,
    request,
)
from {{ cookiecutter.package_name }}.serving.prediction_log import (
    LogUnavailable,
    PredictionLog,
    Receipt,
    decided_records,
    feedback_record,
    open_sink,
)
from {{ cookiecutter.package_name }}.task import output_rows

BATCH = 50  # records per request
CALLER = "simulator"  # who asked and labelled, in the log, when it writes there itself


def shifted(
    rows: pd.DataFrame, drift: dict[str, float | str], bundle: ModelBundle, seed: int
) -> pd.DataFrame:
    """`rows` with the named columns moved, staying valid for the schema."""
    rows = rows.copy()
    rng = np.random.default_rng(seed)
    for name, change in drift.items():
        if name not in bundle.schema.feature_names:
            raise ConfigError(f"monitor.simulate.drift: '{name}' is not a column of the schema")
        column = bundle.schema.column(name)
        if column.type == "category":
            if str(change) not in column.categories:
                allowed = list(column.categories)
                raise ConfigError(
                    f"monitor.simulate.drift.{name}: '{change}' is not one of {allowed}"
                )
            rows[name] = rows[name].where(rng.random(len(rows)) >= 0.5, str(change))
        else:
            if isinstance(change, str):
                raise ConfigError(f"monitor.simulate.drift.{name}: a number column needs a factor")
            moved = rows[name].astype(float) * float(change)
            moved = moved.clip(column.min, column.max)
            rows[name] = moved.round() if column.type == "integer" else moved
    return rows


def records_of(rows: pd.DataFrame, bundle: ModelBundle) -> list[dict[str, Any]]:
    return json.loads(rows[bundle.schema.feature_names].to_json(orient="records"))


def _post(url: str, body: Any, token: str | None) -> Any:
    status, answer = request(url, body, token=token, timeout=60)
    if status == UNREACHABLE:
        raise PipelineError(f"cannot reach the service at {url}: {answer}")
    if refusal := refused_caller(status, token):
        raise PipelineError(f"{url} {refusal} (scopes simulate and feedback)")
    if not 200 <= status < 300:
        raise PipelineError(f"{url} answered {status}: {answer[:300]}")
    return json.loads(answer)


def _to_service(url: str, records: list[dict[str, Any]], token: str | None) -> list[dict[str, Any]]:
    route = f"{url.rstrip('/')}/predict_simulated"
    answers: list[dict[str, Any]] = []
    for start in range(0, len(records), BATCH):
        answers += _post(route, {"records": records[start : start + BATCH]}, token)
    return answers


def _to_log(
    params: Params, bundle: ModelBundle, rows: pd.DataFrame, records: list[dict[str, Any]]
) -> tuple[PredictionLog, list[dict[str, Any]]]:
    """Score in-process and log straight into the prediction log, as the service would."""
    log = PredictionLog(open_sink(params.serving.prediction_log, base_dir=Path.cwd()))
    outputs = bundle.outputs(rows)
    labels = [bundle.label(decision) for decision in bundle.decide(outputs)]
    columns = output_rows(bundle.task.output_columns(outputs), len(rows))
    version = f"simulated ({bundle.family})"
    policy = LogPolicy.load(bundle.schema, params.serving.privacy.key_file, base_dir=Path.cwd())
    logged = decided_records(
        records,
        labels,
        columns,
        version,
        [True] * len(records),
        callers=[CALLER] * len(records),
        redact=policy.apply,  # what the log keeps, as the service's log does
    )
    _recorded(log.log_predictions(logged))
    return log, logged


def _recorded(receipt: Receipt) -> None:
    try:
        receipt.result(timeout=60)
    except LogUnavailable as error:
        raise PipelineError(f"simulated traffic could not be logged: {error}") from error


def run(params: Params, url: str | None = None, drift: bool = False) -> dict[str, Any]:
    settings = params.monitor.simulate
    bundle = load_bundle(Paths.model)
    held_out = bundle.schema.read_csv(Paths.test_data)
    seed = params.monitor.seed + (1 if drift else 0)
    rows = held_out.sample(n=settings.rows, replace=True, random_state=seed).reset_index(drop=True)
    if drift:
        rows = shifted(rows, settings.drift, bundle, seed)
    records = records_of(rows, bundle)
    log = None
    token = client_token(LOCAL_TOKEN_FILE) if url else None
    if url:
        answers = _to_service(url, records, token)
    else:
        log, answers = _to_log(params, bundle, rows, records)
    told = round(len(answers) * settings.feedback_share)
    for answer, label in zip(answers[:told], rows[bundle.target].iloc[:told], strict=True):
        feedback = {
            "prediction_id": answer["prediction_id"],
            "label": label.item() if hasattr(label, "item") else label,
        }
        if url:
            _post(f"{url.rstrip('/')}/feedback", feedback, token)
        else:
            assert log is not None
            record = feedback_record(feedback["prediction_id"], feedback["label"], CALLER)
            _recorded(log.log_feedback(record))
    if log is not None:
        log.close()
    return {
        "requests": len(answers),
        "feedback": told,
        "drift": sorted(settings.drift) if drift else [],
        "to": url or "the prediction log",
    }
