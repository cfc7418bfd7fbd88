"""The BentoML service: batch predictions and feedback, validated against the schema the model
was trained under and decided at the threshold train chose, both carried by the registered model
bundle, with every prediction logged. Attributes that are measured but not model inputs may be
sent (they are logged, for monitoring fairness) and never reach the model.

`/explain` answers, for up to `serving.max_explain_records` records, each input's contribution
to the decision (explanations.py). The decision it answers is logged like a prediction, marked
`explained` (monitoring can leave those out of its window), and the answer carries its
`prediction_id`, so feedback can label it. It imports shap on its first call: /predict never
waits for it.

Run it with `make serve` (project dir) or from the built bento/image. BentoML adds `/healthz`,
`/readyz`, `/livez` and `/metrics` (Prometheus) by itself.

Every API needs a token with the route's scope (guard.py, auth.py): the token's name is
recorded with each prediction (`caller`) and each label (`labeller`). The tokens file is read
when the service starts; without it the service does not start.

A 2xx means the answer is on record: a prediction or feedback is answered only once the
prediction log has it durably (in its sink, or in its spool while the sink fails). When it
cannot, or when the queue ahead holds more than `serving.max_queue_wait` seconds of scoring, the
request gets a 503 whose `error` says so and whose `Retry-After` says when to come back (the
reason's details go to the server log under the answer's `error_id`). Feedback for a prediction
the log never recorded gets 404, a second label for one 409.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import bentoml
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel, ConfigDict, Field, create_model

from {{ cookiecutter.package_name }}.bundle import ModelBundle, load_bundle
from {{ cookiecutter.package_name }}.config import ServingConfig
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.inference import records_scorer
from {{ cookiecutter.package_name }}.privacy import LogPolicy
from {{ cookiecutter.package_name }}.serving.auth import TokenVerifier, tokens_file
from {{ cookiecutter.package_name }}.serving.batching import Batcher, Overloaded
from {{ cookiecutter.package_name }}.serving.guard import (
    CALLER,
    Guard,
    derived_body_limit,
    error_body,
    new_error_id,
)
from {{ cookiecutter.package_name }}.serving.prediction_log import (
    AlreadyLabelled,
    FeedbackRefused,
    LogUnavailable,
    PredictionLog,
    Receipt,
    decided_records,
    feedback_record,
    open_sink,
    open_spool,
)
from {{ cookiecutter.package_name }}.serving.store import BUNDLE_FILE, MODEL_NAME, SERVING_FILE
from {{ cookiecutter.package_name }}.task import output_rows

LOG_RETRY_AFTER = 1  # seconds a client waits after a 503 from the log (it spools within that)
logger = logging.getLogger("bentoml")  # BentoML shows its own logger's records in its log


def limit_inference_threads(threads: int) -> None:
    """Cap the OpenMP and BLAS threads one prediction may use. Each HistGradientBoosting
    prediction would otherwise start a thread per core, competing with the worker's event loop
    and the other workers for the same cores (measured before requests were batched, when they
    were scored concurrently: 15 requests/s at concurrency 32 unlimited, 150 to 230 limited to
    1). Set before scikit-learn loads: the OpenMP runtime reads its variable once."""
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)  # the libraries already loaded (numpy's BLAS)


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


# The working directory when the service is imported: the project for `make serve`, the bento's
# `src` in a bento or image. A relative prediction log location is taken from there.
BASE_DIR = Path.cwd()
MODEL = registered_model(MODEL_NAME)
SETTINGS = ServingConfig.model_validate(
    json.loads(Path(MODEL.stored.path_of(SERVING_FILE)).read_text())
)
limit_inference_threads(SETTINGS.inference_threads)  # before the bundle loads scikit-learn
BUNDLE: ModelBundle = load_bundle(MODEL.stored.path_of(BUNDLE_FILE))
SCHEMA = BUNDLE.schema
TOKENS = TokenVerifier()  # loaded when the service starts (ModelService.__init__)
if sys.argv[1:2] == ["serve"]:
    # `bentoml serve` imports this module before it starts a worker: a missing tokens file
    # stops it here, with its message, rather than each worker, which its supervisor restarts.
    # (`bentoml build` imports it too, and needs no tokens.)
    TokenVerifier().load(tokens_file(SETTINGS.auth.tokens_file, BASE_DIR))
    LogPolicy.load(SCHEMA, SETTINGS.privacy.key_file, BASE_DIR)  # a missing key stops it too
MAX_BODY_BYTES = SETTINGS.max_body_bytes or derived_body_limit(
    SCHEMA, max(SETTINGS.max_records, SETTINGS.max_explain_records)
)

Record = SCHEMA.request_model("Record", optional=BUNDLE.measured_only)
# Built from the schema when the service starts: pydantic validates against these; a type checker
# sees their static shape.
if TYPE_CHECKING:
    Records = list[BaseModel]
    ExplainRecords = list[BaseModel]
    TargetLabel = int | str
else:
    Records = Annotated[list[Record], Field(min_length=1, max_length=SETTINGS.max_records)]
    ExplainRecords = Annotated[
        list[Record], Field(min_length=1, max_length=SETTINGS.max_explain_records)
    ]
    TargetLabel = SCHEMA.label_type()


PredictJob = tuple[Any, bool, str]  # a request's records, whether simulated, who asked
Answer = tuple[list["Prediction"], Receipt]  # a request's predictions, and their log receipt


class PredictRequest(bentoml.IODescriptor):
    """`{"records": [{...}, ...]}`; unknown keys are refused at every level, not ignored."""

    model_config = ConfigDict(extra="forbid")
    records: Records


class ExplainRequest(bentoml.IODescriptor):
    """As PredictRequest, with at most `serving.max_explain_records` records."""

    model_config = ConfigDict(extra="forbid")
    records: ExplainRecords


class FeedbackRequest(bentoml.IODescriptor):
    """`{"prediction_id": "<uuid from /predict>", "label": <the true label>}`."""

    model_config = ConfigDict(extra="forbid")
    prediction_id: uuid.UUID
    label: TargetLabel


if TYPE_CHECKING:  # its static shape: the fields every task's answer has

    class Prediction(BaseModel):
        prediction_id: str
        label: Any
        model_version: str

else:  # the decision, then what the task adds (task.py: a probability, each class's, nothing)
    Prediction = create_model(
        "Prediction",
        prediction_id=(str, Field(description="uuid4; quote it when sending feedback")),
        label=(
            TargetLabel,
            Field(description="the decision: one of the schema's target values, or the number"),
        ),
        **BUNDLE.task.response_fields(BUNDLE.decision),
        model_version=(str, Field(description="the BentoML model tag that answered")),
    )


class Explanation(BaseModel):
    prediction_id: str = Field(description="uuid4 of the logged decision; quote it for feedback")
    label: TargetLabel = Field(description="the decision, as /predict answers it")
    explains: str = Field(description="the model output the numbers explain, in words")
    scale: str = Field(description="log_odds, probability or estimate (explanations.py)")
    base: float = Field(description="the output for the training data on average")
    contributions: dict[str, float] = Field(
        description="each model input's, the largest (in size) first; base plus all of them"
        " is `output`"
    )
    output: float = Field(description="the output explained, for this record")
    model_version: str


class FeedbackReceipt(BaseModel):
    prediction_id: str
    label: TargetLabel  # documented as the schema's values (int | str would say integer only)
    recorded: bool


def refused(status: int, advice: str, reason: object, retry_after: int | None = None) -> Any:
    """An error answer with `advice` for the client and an `error_id`, under which the server
    log keeps `reason` (a log's failure may name hosts and paths: never sent). BentoML answers
    an exception with a generic message and no headers; a response object is sent as is."""
    from starlette.responses import Response

    error_id = new_error_id()
    detail = getattr(reason, "detail", "")  # LogUnavailable's: the sink's and spool's errors
    (logger.warning if status >= 500 else logger.info)(
        "error %s: %d %s%s", error_id, status, reason, f" ({detail})" if detail else ""
    )
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return Response(
        error_body(advice, error_id), status, headers=headers, media_type="application/json"
    )


def unavailable(reason: object, retry_after: int, what: str) -> Any:
    """A 503: `what` could not be done now; come back after `retry_after` seconds."""
    return refused(503, f"{what}: retry after {retry_after} s", reason, retry_after)


LOG_REFUSED = "the prediction log cannot record this request now"


# Records per batch: a histogram on /metrics (`batch_records`). prometheus_client directly, as
# BentoML 1.4 asks (bentoml.metrics is deprecated): `bentoml serve` sets PROMETHEUS_MULTIPROC_DIR
# before a worker imports this module, so /metrics adds up every worker's batches.
BATCH_RECORDS = Histogram(
    name="batch_records",
    documentation="Records scored together in one batch (one or more requests)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
# What the model decided, per model version: a canary's decisions can be compared with the
# primary's (the share of each label, the mean probability) on the service's own signals.
DECISIONS = Counter(
    name="predictions",
    documentation="Predictions answered (logged and returned), by model version and label",
    labelnames=("model_version", "label"),
)
PROBABILITY = Histogram(
    name="prediction_probability",
    documentation="Probability of the positive class of each answered prediction",
    labelnames=("model_version",),
    buckets=tuple(step / 10 for step in range(1, 11)),
)
# The spool (records waiting for the log's store while it fails): what the PrometheusRule of
# deploy/ alerts on when it stays full or its replays keep failing. Each worker its own value;
# a live worker's count is summed (a dead one's is gone: its file waits for a replay).
SPOOLED = Gauge(
    name="prediction_spool_records",
    documentation="Records this server spooled for the prediction log's store, not yet replayed",
    multiprocess_mode="livesum",
)
REPLAY_FAILURES = Counter(
    name="prediction_spool_replay_failures",
    documentation="Replays of the spool into the prediction log's store that failed",
)


class SpoolMetrics:
    """Keeps the spool's gauge and replay-failure counter up to date (the log's writer thread
    calls it after each group commit and replay)."""

    def __init__(self) -> None:
        self.failures_counted = 0

    def __call__(self, log: PredictionLog) -> None:
        SPOOLED.set(log.spool.waiting() if log.spool is not None else 0)
        REPLAY_FAILURES.inc(log.replay_failures - self.failures_counted)
        self.failures_counted = log.replay_failures


PREDICTED_VALUE = Histogram(  # its sum and count give a canary's mean predicted number
    name="predicted_value",
    documentation="The number each answered prediction decided (regression)",
    labelnames=("model_version",),
)


@bentoml.service(
    name="{{ cookiecutter.package_name }}",
    workers=SETTINGS.workers,
    traffic={"timeout": SETTINGS.timeout},
)
class ModelService:
    model_ref = MODEL  # a class attribute: `bentoml build` pins this model version into the bento

    def __init__(self) -> None:
        self.bundle = BUNDLE
        self.score, path = records_scorer(BUNDLE)
        logger.info("scoring with the %s", path)
        self.model_version = str(self.model_ref.tag)
        TOKENS.load(tokens_file(SETTINGS.auth.tokens_file, BASE_DIR))  # none: no start
        logger.info("%d API tokens from %s", len(TOKENS), TOKENS.path)
        # What the log keeps of each record (schema.yaml's `log:`): applied before the record
        # exists, so no raw pseudonymised or dropped value reaches the spool or the sink.
        self.log_policy = LogPolicy.load(SCHEMA, SETTINGS.privacy.key_file, BASE_DIR)
        self.log = PredictionLog(
            open_sink(SETTINGS.prediction_log, base_dir=BASE_DIR),
            open_spool(SETTINGS.prediction_spool, base_dir=BASE_DIR),
            on_change=SpoolMetrics(),
        )
        self.explainer: Any = None  # built at the first /explain: it imports shap
        self.explainer_lock = threading.Lock()
        self.batcher = Batcher(
            self._answer,
            size_of=lambda job: len(job[0]),
            max_size=SETTINGS.max_batch_size,
            max_wait=SETTINGS.max_queue_wait,
            on_batch=BATCH_RECORDS.observe,
        )

    @bentoml.api(input_spec=PredictRequest)
    async def predict(self, records: Records) -> list[Prediction]:
        """Score a batch of 1 to `serving.max_records` records, each with the schema's features."""
        return await self._predict(records, simulated=False)

    @bentoml.api(input_spec=PredictRequest)
    async def predict_simulated(self, records: Records) -> list[Prediction]:
        """As /predict, for the traffic `make simulate` sends: logged as simulated, so that
        monitoring can tell it from real traffic."""
        return await self._predict(records, simulated=True)

    async def _predict(self, records: Records, simulated: bool) -> Any:
        """The request's predictions once they are on record; else a 503 saying why."""
        try:
            predictions, receipt = await self.batcher.submit((records, simulated, CALLER.get()))
        except Overloaded as busy:
            return unavailable(busy, busy.retry_after, "the service is busy")
        try:
            await asyncio.wrap_future(receipt)
        except LogUnavailable as error:  # an answer that is not on record is not given
            return unavailable(error, LOG_RETRY_AFTER, LOG_REFUSED)
        self._count(predictions)
        return predictions

    def _count(self, predictions: list[Prediction]) -> None:
        probability = PROBABILITY.labels(self.model_version)
        number = PREDICTED_VALUE.labels(self.model_version)
        classes = bool(self.bundle.schema.target_values)  # a number is not counted by value
        for prediction in predictions:
            label = str(prediction.label) if classes else "number"
            DECISIONS.labels(self.model_version, label).inc()
            if not classes:
                number.observe(float(prediction.label))
            value = getattr(prediction, "probability", None)  # binary's
            if value is not None:
                probability.observe(value)

    def _answer(self, jobs: list[PredictJob]) -> list[Answer]:
        """Score, decide and log the records of the requests in one batch, in one go: each
        request's predictions, with the receipt of the batch's log records (awaited outside
        the batcher, so the next batch is scored while this one is written)."""
        rows = [record.model_dump() for records, _, _ in jobs for record in records]
        outputs = self.score(rows)  # measured-only attributes are logged, never used
        decisions = self.bundle.decide(outputs)
        simulated = [flag for records, flag, _ in jobs for _ in records]
        callers = [caller for records, _, caller in jobs for _ in records]
        by_row = output_rows(self.bundle.task.output_columns(outputs), len(rows))
        labels = [self.bundle.label(decision) for decision in decisions]
        logged = decided_records(
            rows,
            labels,
            by_row,
            self.model_version,
            simulated,
            callers=callers,
            redact=self.log_policy.apply,
        )
        task = self.bundle.task
        predictions = [
            Prediction(
                prediction_id=record["prediction_id"],
                label=self.bundle.label(decision),
                **task.response_values(own),
                model_version=self.model_version,
            )
            for record, own, decision in zip(logged, by_row, decisions, strict=True)
        ]
        receipt = self.log.log_predictions(logged)
        answers, start = [], 0
        for records, _, _ in jobs:
            answers.append((predictions[start : start + len(records)], receipt))
            start += len(records)
        return answers

    @bentoml.api(input_spec=ExplainRequest)
    def explain(self, records: ExplainRecords) -> list[Explanation]:
        """Each record's decision and every model input's contribution to it (SHAP values).
        Runs in BentoML's thread pool, beside /predict's event loop. The decisions are logged
        (marked explained) before the explanations are computed: a 503 when the log cannot."""
        with self.explainer_lock:
            if self.explainer is None:
                from {{ cookiecutter.package_name }}.explanations import Explainer

                self.explainer = Explainer(self.bundle)
        explainer = self.explainer
        rows = [record.model_dump() for record in records]
        matrix = explainer.records_matrix(rows)
        outputs = explainer.fast.scores(matrix)
        decisions = self.bundle.decide(outputs)  # as /predict decides
        by_row = output_rows(self.bundle.task.output_columns(outputs), len(rows))
        logged = decided_records(
            rows,
            [self.bundle.label(decision) for decision in decisions],
            by_row,
            self.model_version,
            [False] * len(rows),
            callers=[CALLER.get()] * len(rows),
            explained=True,
            redact=self.log_policy.apply,
        )
        receipt = self.log.log_predictions(logged)  # written while the explanation is computed
        found = explainer.explain(matrix, decisions)
        inputs = self.bundle.features
        answers = []
        for row, decision in enumerate(decisions):
            contributions = sorted(
                zip(inputs, found.contributions[row].tolist(), strict=True),
                key=lambda pair: -abs(pair[1]),
            )
            answers.append(
                Explanation(
                    prediction_id=logged[row]["prediction_id"],
                    label=self.bundle.label(decision),
                    explains=explainer.explains(None if found.codes is None else found.codes[row]),
                    scale=explainer.scale,
                    base=float(found.base[row]),
                    contributions=dict(contributions),
                    output=float(found.output[row]),
                    model_version=self.model_version,
                )
            )
        try:
            receipt.result()
        except LogUnavailable as error:  # an answer that is not on record is not given
            return unavailable(error, LOG_RETRY_AFTER, LOG_REFUSED)
        return answers

    @bentoml.api(input_spec=FeedbackRequest)
    async def feedback(self, prediction_id: uuid.UUID, label: TargetLabel) -> FeedbackReceipt:
        """Record the true label of an earlier prediction, with who sent it, for monitoring and
        the release gate. An id the log never recorded is refused (404), as is a second label
        for the same prediction (409: the log takes no corrections through the API)."""
        record = feedback_record(str(prediction_id), label, CALLER.get())
        try:
            await asyncio.wrap_future(self.log.log_feedback(record))
        except LogUnavailable as error:
            return unavailable(error, LOG_RETRY_AFTER, LOG_REFUSED)
        except FeedbackRefused as refusal:  # its str() is meant for the client
            status = 409 if isinstance(refusal, AlreadyLabelled) else 404
            return refused(status, str(refusal), f"feedback for {prediction_id}: {refusal}")
        return FeedbackReceipt(prediction_id=str(prediction_id), label=label, recorded=True)

    @bentoml.on_shutdown
    def close_log(self) -> None:
        self.log.close()


# @bentoml.service turns the class into a bentoml.Service, which its type does not show.
ModelService.add_asgi_middleware(  # type: ignore[attr-defined]
    Guard, tokens=TOKENS, max_body_bytes=MAX_BODY_BYTES
)
