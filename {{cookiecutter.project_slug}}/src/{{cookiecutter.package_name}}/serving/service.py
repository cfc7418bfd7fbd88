"""The BentoML service: batch predictions and feedback, validated against the schema the model
was trained under (carried inside the registered model), with every prediction logged.

Run it with `make serve` (project dir) or from the built bento/image. BentoML adds `/healthz`,
`/readyz`, `/livez` and `/metrics` (Prometheus) by itself.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import bentoml
import joblib
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from {{ cookiecutter.package_name }}.config import PARAMS_FILE, Params, load_params
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.schema import Schema, load_schema
from {{ cookiecutter.package_name }}.serving.prediction_log import PredictionLog, open_sink, utc_now
from {{ cookiecutter.package_name }}.serving.store import MODEL_FILE, SCHEMA_FILE

DECISION_THRESHOLD = 0.5  # the cut-off the evaluate stage scored the model at
JSON_ROUTES = ("/predict", "/feedback")


def find_project() -> Path:
    """The directory holding params.yaml: the working directory (the project, or the bento's
    `src` while BentoML imports the service), else beside the package (project `src/` layout,
    or the bento's flat `src/`)."""
    package_dir = Path(__file__).resolve().parents[1]
    for directory in (Path.cwd(), package_dir.parent, package_dir.parent.parent):
        if (directory / PARAMS_FILE).is_file():
            return directory.resolve()
    raise ConfigError(f"{PARAMS_FILE} not found in the working directory or beside {package_dir}")


def registered_model(name: str) -> Any:
    """The newest registered model, or a clear error saying how to get one (not a remote lookup)."""
    reference = bentoml.models.BentoModel(f"{name}:latest")
    if reference.stored is None:
        raise ConfigError(
            f"no model '{name}' in the BentoML store $BENTOML_HOME/models: run `make pipeline`"
            " (the Makefile sets BENTOML_HOME=<project>/.bentoml); if the pipeline is up to date"
            " but the store was emptied, `dvc repro -f register`"
        )
    return reference


PROJECT_DIR = find_project()
PARAMS: Params = load_params(PROJECT_DIR / PARAMS_FILE)
MODEL = registered_model(PARAMS.serving.model_name)
SCHEMA: Schema = load_schema(MODEL.stored.path_of(SCHEMA_FILE))
TARGET = MODEL.stored.info.metadata["target"]

Record = SCHEMA.request_model("Record")
Records = Annotated[list[Record], Field(min_length=1, max_length=PARAMS.serving.max_records)]  # type: ignore[valid-type]
TargetLabel = Literal[tuple(SCHEMA.target_values)]  # type: ignore[valid-type]


class PredictRequest(bentoml.IODescriptor):
    """`{"records": [{...}, ...]}`; unknown keys are refused at every level, not ignored."""

    model_config = ConfigDict(extra="forbid")
    records: Records


class FeedbackRequest(bentoml.IODescriptor):
    """`{"prediction_id": "<uuid from /predict>", "label": <the true label>}`."""

    model_config = ConfigDict(extra="forbid")
    prediction_id: uuid.UUID
    label: TargetLabel


class Prediction(BaseModel):
    prediction_id: str = Field(description="uuid4; quote it when sending feedback")
    label: int | str = Field(description="the predicted label, one of the schema's target values")
    probability: float = Field(
        description=f"probability that the label is {TARGET['positive_label']!r}"
    )
    model_version: str = Field(description="the BentoML model tag that answered")


class FeedbackReceipt(BaseModel):
    prediction_id: str
    label: int | str
    recorded: bool


class JsonOnly:
    """Answer 415 to a POST whose body is declared as anything but JSON (a request without a
    Content-Type is read as JSON, as BentoML does), before BentoML tries another parser."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in JSON_ROUTES:
            headers = dict(scope["headers"])
            media_type = headers.get(b"content-type", b"application/json").split(b";")[0].strip()
            if media_type.lower() != b"application/json":
                from starlette.responses import JSONResponse

                message = (
                    f"Content-Type must be application/json, got {media_type.decode('latin-1')!r}"
                )
                await JSONResponse({"error": message}, status_code=415)(scope, receive, send)
                return
        await self.app(scope, receive, send)


@bentoml.service(name="{{ cookiecutter.package_name }}", traffic={"timeout": 30})
class ModelService:
    model_ref = MODEL  # a class attribute: `bentoml build` pins this model version into the bento

    def __init__(self) -> None:
        stored = self.model_ref
        self.model = joblib.load(stored.path_of(MODEL_FILE))
        self.model_version = str(stored.tag)
        self.log = PredictionLog(open_sink(PARAMS.serving.prediction_log, base_dir=PROJECT_DIR))

    @bentoml.api(input_spec=PredictRequest)
    def predict(self, records: Records) -> list[Prediction]:
        """Score a batch of 1 to `serving.max_records` records, each with the schema's features."""
        rows = [record.model_dump() for record in records]
        features = pd.DataFrame(rows, columns=SCHEMA.feature_names).astype(
            {name: SCHEMA.dtypes[name] for name in SCHEMA.feature_names}
        )
        probabilities = self.model.predict_proba(features)[:, 1]
        timestamp = utc_now()
        predictions = [
            Prediction(
                prediction_id=str(uuid.uuid4()),
                label=TARGET["positive_label"]
                if p >= DECISION_THRESHOLD
                else TARGET["negative_label"],
                probability=float(p),
                model_version=self.model_version,
            )
            for p in probabilities
        ]
        self.log.log_predictions(
            [
                {
                    "prediction_id": prediction.prediction_id,
                    "timestamp": timestamp,
                    "model_version": prediction.model_version,
                    "features": row,
                    "label": str(prediction.label),
                    "probability": prediction.probability,
                }
                for prediction, row in zip(predictions, rows, strict=True)
            ]
        )
        return predictions

    @bentoml.api(input_spec=FeedbackRequest)
    def feedback(self, prediction_id: uuid.UUID, label: TargetLabel) -> FeedbackReceipt:  # type: ignore[valid-type]
        """Record the true label of an earlier prediction, for monitoring to compare."""
        self.log.log_feedback(
            {"prediction_id": str(prediction_id), "timestamp": utc_now(), "label": str(label)}
        )
        return FeedbackReceipt(prediction_id=str(prediction_id), label=label, recorded=True)

    @bentoml.on_shutdown
    def close_log(self) -> None:
        self.log.close()


ModelService.add_asgi_middleware(JsonOnly)
