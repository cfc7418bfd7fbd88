"""The log's records: their fields (the layout in the package docstring) and how to build them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

Table = Literal["predictions", "feedback"]
TABLES: tuple[Table, ...] = ("predictions", "feedback")
COLUMNS: dict[Table, list[str]] = {
    "predictions": [
        "prediction_id",
        "timestamp",
        "model_version",
        "features",
        "label",
        "probability",
        "outputs",
        "simulated",
        "batch",
        "caller",
        "explained",
    ],
    "feedback": ["prediction_id", "timestamp", "label", "labeller"],
}
# What makes a record the same record when a replay meets it again.
IDENTITY: dict[Table, list[str]] = {
    "predictions": ["prediction_id"],
    "feedback": ["prediction_id", "timestamp", "label"],
}
Redact = Callable[[dict[str, Any]], dict[str, Any]]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def record_time(record: dict[str, Any]) -> datetime:
    """A record's timestamp as a UTC datetime."""
    return datetime.fromisoformat(record["timestamp"]).astimezone(UTC)


def prediction_record(
    features: dict[str, Any],
    label: object,
    probability: float | None,
    model_version: str,
    *,
    outputs: dict[str, float] | None = None,
    simulated: bool = False,
    batch: bool = False,
    caller: str = "",
    explained: bool = False,
    prediction_id: str | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """One `predictions` record in the layout above (a new id and the time now by default)."""
    return {
        "prediction_id": prediction_id or str(uuid.uuid4()),
        "timestamp": timestamp or utc_now(),
        "model_version": model_version,
        "features": features,
        "label": str(label),
        "probability": None if probability is None else float(probability),
        "outputs": outputs or None,
        "simulated": simulated,
        "batch": batch,
        "caller": caller,
        "explained": explained,
    }


def decided_records(
    features: list[dict[str, Any]],
    labels: list[object],
    outputs: list[dict[str, float]],
    model_version: str,
    simulated: list[bool],
    batch: bool = False,
    prediction_ids: list[str] | None = None,
    callers: list[str] | None = None,
    explained: bool = False,
    redact: Redact | None = None,
) -> list[dict[str, Any]]:
    """`prediction_record`s of a batch: each row's decision (`labels`) and the model's
    outputs as the task names them (`probability` gets its own field, the others `outputs`);
    `batch` marks rows of batch scoring, which bring their own `prediction_ids`; `callers`
    names who asked for each row; `explained` marks answers of /explain. `redact` maps each
    request row to what the log keeps, before the record exists: raw values of a pseudonymised
    or dropped column never reach the spool or the sink."""
    kept = features if redact is None else [redact(row) for row in features]
    return [
        prediction_record(
            row,
            label,
            own.get("probability"),
            model_version,
            outputs={name: value for name, value in own.items() if name != "probability"},
            simulated=flag,
            batch=batch,
            caller=callers[i] if callers else "",
            explained=explained,
            prediction_id=prediction_ids[i] if prediction_ids else None,
        )
        for i, (row, label, own, flag) in enumerate(
            zip(kept, labels, outputs, simulated, strict=True)
        )
    ]


def feedback_record(prediction_id: str, label: object, labeller: str = "") -> dict[str, Any]:
    """One `feedback` record: the true label of an earlier prediction, received now from
    `labeller` (the token name that sent it)."""
    return {
        "prediction_id": prediction_id,
        "timestamp": utc_now(),
        "label": str(label),
        "labeller": labeller,
    }
