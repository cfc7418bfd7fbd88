"""A typed view of params.yaml, so a bad value fails early with the key that holds it (schema.yaml
is read the same way, by schema.py)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from {{ cookiecutter.package_name }}.errors import ConfigError

PARAMS_FILE = Path("params.yaml")
ModelFamily = Literal["hist_gradient_boosting", "random_forest", "logistic_regression"]


class Paths:
    """Where each stage writes; dvc.yaml names the same files (a unit test keeps them in step)."""

    raw_data = Path("data/raw/data.csv")
    raw_manifest = Path("data/raw/manifest.json")
    curated_data = Path("data/interim/curated.csv")
    curate_report = Path("reports/curate.json")
    validated_data = Path("data/interim/validated.csv")
    validation_report = Path("reports/validation.json")
    explore_report = Path("reports/explore.html")  # Evidently's data summary and correlations
    explore_summary = Path("reports/explore.json")
    train_data = Path("data/processed/train.csv")
    test_data = Path("data/processed/test.csv")
    reference_data = Path("data/reference/reference.csv")  # the test split, scored by the bundle
    baseline_model = Path("models/baseline.joblib")
    model = Path("models/model.joblib")
    train_report = Path("reports/train.json")
    metrics = Path("reports/metrics.json")
    plots = Path("reports/plots")
    fairness = Path("reports/fairness.json")
    model_card = Path("docs/model_card.md")
    problem = Path("docs/problem.md")
    registry = Path("reports/registry.json")
    bentoml_home = Path(".bentoml")  # the project's model store, unless BENTOML_HOME is set
    monitoring = Path("reports/monitoring")  # one folder per monitoring run, and index.html


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DerivedColumn(_Strict):
    """A column binned from another one, e.g. age groups for fairness analysis."""

    source: str
    bins: list[float] = Field(min_length=2)
    labels: list[str]

    @model_validator(mode="after")
    def _labels_match_bins(self) -> DerivedColumn:
        if len(self.labels) != len(self.bins) - 1:
            raise ValueError(
                f"needs one label per bin interval: {len(self.bins) - 1} labels,"
                f" got {len(self.labels)}"
            )
        if sorted(self.bins) != self.bins:
            raise ValueError("bins must be increasing")
        return self


class DataConfig(_Strict):
    source: str = Field(min_length=1)
    query: str | None = None
    schema_file: str = Field("schema.yaml", alias="schema")
    target: str
    positive_label: int | str
    drop_columns: list[str] = []
    sensitive_features: list[str] = []
    not_model_inputs: list[str] = []  # measured for fairness, never given to the model
    derived_columns: dict[str, DerivedColumn] = {}


class CurateConfig(_Strict):
    missing_tokens: list[str] = []


class ValidateConfig(_Strict):
    max_duplicate_share: float = Field(ge=0, le=1)
    max_missing_share: float = Field(ge=0, le=1)
    min_class_share: float = Field(ge=0, le=0.5)


class SplitConfig(_Strict):
    test_size: float = Field(gt=0, lt=1)
    seed: int


MINIMIZE_COST: Final = "minimize_cost"


# The metrics evaluate can gate on (evaluate.thresholds).
GateMetric = Literal["roc_auc", "f1", "precision", "recall", "accuracy"]


class TrainConfig(_Strict):
    model: ModelFamily
    baseline: Literal["most_frequent", "prior", "stratified"] = "prior"
    cv_folds: int = Field(ge=2, le=20)
    scoring: str
    search: dict[ModelFamily, dict[str, list[Any]]]
    # "minimize_cost": chosen by cross-validation on the training split to minimise the expected
    # cost of evaluate.cost_matrix; or a number in (0, 1) to pin the cut-off.
    decision_threshold: float | Literal["minimize_cost"] = MINIMIZE_COST

    @field_validator("decision_threshold", mode="before")
    @classmethod
    def _threshold_or_minimize_cost(cls, value: Any) -> Any:
        if value == MINIMIZE_COST:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise ValueError(
                f"must be '{MINIMIZE_COST}' or a number between 0 and 1, got {value!r}"
            )
        return float(value)

    @model_validator(mode="after")
    def _search_for_model(self) -> TrainConfig:
        if self.model not in self.search:
            raise ValueError(f"search has no grid for model '{self.model}'")
        return self


class CostMatrix(_Strict):
    fp: float = Field(ge=0)
    fn: float = Field(ge=0)


class EvaluateConfig(_Strict):
    primary_metric: GateMetric
    thresholds: dict[GateMetric, float]
    min_gain_over_baseline: float
    cost_matrix: CostMatrix


class FairnessConfig(_Strict):
    thresholds: dict[
        Literal["demographic_parity_difference", "equalized_odds_difference"],
        float,
    ]


class ServingConfig(_Strict):
    max_records: int = Field(gt=0, le=10_000)
    prediction_log: str = Field(min_length=1)
    # Defaults for models registered before these settings existed.
    workers: int = Field(1, ge=1, le=64)
    inference_threads: int = Field(1, ge=1, le=64)
    timeout: float = Field(30.0, gt=0, le=3600)
    max_batch_size: int = Field(100, ge=1, le=100_000)
    max_queue_wait: float = Field(5.0, gt=0, le=3600)
    prediction_spool: str = Field("logs/spool", min_length=1)

    @model_validator(mode="after")
    def _queue_wait_within_timeout(self) -> ServingConfig:
        if self.max_queue_wait >= self.timeout:
            raise ValueError(
                f"serving.max_queue_wait ({self.max_queue_wait:g} s) must be shorter than"
                f" serving.timeout ({self.timeout:g} s): a request queued that long would time out"
                " before it is scored"
            )
        return self


P_VALUE_METHODS = ("ks", "chisquare")  # drifted below the threshold; distances at or above it


class DriftConfig(_Strict):
    num_method: Literal["wasserstein", "ks", "psi", "hellinger"]
    num_threshold: float = Field(gt=0)
    cat_method: Literal["jensenshannon", "chisquare", "psi", "hellinger"]
    cat_threshold: float = Field(gt=0)


class WindowConfig(_Strict):
    last_days: float | None = Field(None, gt=0)
    last_rows: int | None = Field(None, gt=0)


class MonitorThresholds(_Strict):
    min_rows: int = Field(ge=1)
    drift_share: float = Field(ge=0, le=1)
    key_features: list[str] = []
    prediction_drift: bool = True
    missing_share_increase: float = Field(ge=0, le=1)
    min_labelled_rows: int = Field(ge=1)
    performance_drop: float = Field(ge=0, le=1)


class SimulateConfig(_Strict):
    rows: int = Field(gt=0, le=1_000_000)
    feedback_share: float = Field(ge=0, le=1)
    drift: dict[str, float | str] = {}


class MonitorConfig(_Strict):
    current: str = Field(min_length=1)  # "prediction_log", or a source the ingest loader reads
    query: str | None = None
    window: WindowConfig
    max_rows: int = Field(gt=0)
    seed: int
    drift: DriftConfig
    thresholds: MonitorThresholds
    workspace: str = Field(min_length=1)
    simulate: SimulateConfig


# Kubernetes quantities (deploy.resources): a number with an optional unit suffix.
QUANTITY_UNITS: Final = {
    "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40,
}  # fmt: skip
QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?")
# Durations as Flagger's analysis takes them: a whole number of seconds or minutes.
DURATION = re.compile(r"([1-9]\d*)(s|m)")
DURATION_SECONDS: Final = {"s": 1, "m": 60}


def quantity_value(quantity: str) -> float:
    """`500m` -> 0.5, `1Gi` -> 2**30: to compare a request with its limit."""
    number, unit = QUANTITY.fullmatch(quantity).groups()  # type: ignore[union-attr]
    return float(number) * QUANTITY_UNITS[unit or ""]


def duration_seconds(duration: str) -> int:
    number, unit = DURATION.fullmatch(duration).groups()  # type: ignore[union-attr]
    return int(number) * DURATION_SECONDS[unit]


class ComputeResources(_Strict):
    """Kubernetes quantities: cpu `500m` or `1`, memory `512Mi` or `2Gi`."""

    cpu: str
    memory: str

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _positive_quantity(cls, value: Any) -> str:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        text = str(value) if number else value
        if not isinstance(text, str) or not QUANTITY.fullmatch(text) or not quantity_value(text):
            raise ValueError(
                "must be a positive Kubernetes quantity such as 500m, 1, 512Mi or 2Gi,"
                f" got {value!r}"
            )
        return text


class DeployResources(_Strict):
    requests: ComputeResources
    limits: ComputeResources

    @model_validator(mode="after")
    def _requests_within_limits(self) -> DeployResources:
        for name in ("cpu", "memory"):
            requested, limit = getattr(self.requests, name), getattr(self.limits, name)
            if quantity_value(requested) > quantity_value(limit):
                raise ValueError(f"requests.{name} ({requested}) is above limits.{name} ({limit})")
        return self


class DeployEnvironment(_Strict):
    """One cluster namespace the service runs in (an overlay of deploy/)."""

    namespace: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    host: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")  # the HTTPRoute's hostname
    min_replicas: int = Field(ge=1, le=1000)
    max_replicas: int = Field(ge=1, le=1000)

    @model_validator(mode="after")
    def _max_at_least_min(self) -> DeployEnvironment:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        return self


class DeployEnvironments(_Strict):
    staging: DeployEnvironment
    production: DeployEnvironment


class GatewayRef(_Strict):
    name: str = Field(min_length=1)
    namespace: str = Field(min_length=1)


class CanaryConfig(_Strict):
    """Flagger's analysis of a new production version: traffic steps and the limits that roll
    it back."""

    step_weights: list[int] = Field(min_length=1)
    interval: str
    failed_checks: int = Field(ge=1, le=100)
    max_error_rate: float = Field(ge=0, le=1)
    max_latency_p99: float = Field(gt=0)
    max_decision_shift: float = Field(gt=0, le=1)
    decision_window: str

    @field_validator("interval", "decision_window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if not isinstance(value, str) or not DURATION.fullmatch(value):
            raise ValueError(f"must be a duration such as 30s or 5m, got {value!r}")
        return value

    @field_validator("step_weights")
    @classmethod
    def _weights_rise_within_1_to_99(cls, weights: list[int]) -> list[int]:
        outside = [weight for weight in weights if not 1 <= weight <= 99]
        if outside:
            raise ValueError(
                f"weights are percentages of traffic from 1 to 99 (100 is the promotion),"
                f" got {outside}"
            )
        if any(later <= earlier for earlier, later in itertools.pairwise(weights)):
            raise ValueError(f"weights must rise strictly, got {weights}")
        return weights

    @model_validator(mode="after")
    def _decision_window_spans_an_interval(self) -> CanaryConfig:
        if duration_seconds(self.decision_window) < duration_seconds(self.interval):
            raise ValueError(
                f"decision_window ({self.decision_window}) is shorter than interval"
                f" ({self.interval}): each check would miss part of the step's traffic"
            )
        return self


class ChampionConfig(_Strict):
    """How much worse than the model in production a candidate may be (`make challenge`), on
    the test split and on the prediction log's labelled window alike."""

    # Cost of mistakes per prediction (evaluate.cost_matrix units), absolute: a relative limit
    # means nothing when production's cost is near zero, and the cost matrix's units are
    # the business's own.
    max_cost_increase: float = Field(ge=0)
    max_metric_drop: float = Field(ge=0, le=1)  # evaluate.primary_metric, absolute
    min_labelled_rows: int = Field(ge=1)  # a smaller labelled window is shown, not judged


class DeployConfig(_Strict):
    # The Kubernetes name of the service's resources (a DNS label starting with a letter).
    name: str = Field(pattern=r"^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$")
    image: str = Field(pattern=r"^[a-z0-9][a-z0-9._/-]*[a-z0-9]$")  # no tag: deployed by digest
    environments: DeployEnvironments
    gateway: GatewayRef
    prometheus: str = Field(pattern=r"^https?://\S+$")
    target_cpu_utilization: int = Field(ge=1, le=100)
    resources: DeployResources
    canary: CanaryConfig
    champion: ChampionConfig


class Params(_Strict):
    data: DataConfig
    curate: CurateConfig
    validate_: ValidateConfig = Field(alias="validate")
    split: SplitConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    fairness: FairnessConfig
    serving: ServingConfig
    monitor: MonitorConfig
    deploy: DeployConfig

    @model_validator(mode="after")
    def _columns_are_usable(self) -> Params:
        data = self.data
        for name, column in data.derived_columns.items():
            if name in data.drop_columns or column.source == data.target:
                raise ValueError(
                    f"data.derived_columns.{name}: cannot derive from '{column.source}'"
                )
        misplaced = [
            name
            for name in data.not_model_inputs
            if name == data.target or name in data.drop_columns or name in data.derived_columns
        ]
        if misplaced:
            raise ValueError(
                f"data.not_model_inputs: {misplaced} must be data columns the model could use"
                " (not the target, a dropped column or a derived one)"
            )
        return self

    @model_validator(mode="after")
    def _canary_latency_within_timeout(self) -> Params:
        latency = self.deploy.canary.max_latency_p99
        if latency >= self.serving.timeout:
            raise ValueError(
                f"deploy.canary.max_latency_p99 ({latency:g} s) must be shorter than"
                f" serving.timeout ({self.serving.timeout:g} s), which ends a request first"
            )
        return self


def read_yaml(path: Path, missing: str) -> Any:
    """The YAML document in `path`; ConfigError saying `missing` when there is no such file."""
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError as error:
        raise ConfigError(missing) from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error


@contextmanager
def naming_bad_keys(path: Path) -> Iterator[None]:
    """A pydantic ValidationError inside becomes a ConfigError naming the file and every bad key."""
    try:
        yield
    except ValidationError as error:
        problems = []
        for item in error.errors():
            key = ".".join(str(part) for part in item["loc"]) or "(top level)"
            problems.append(f"{key}: {item['msg']}")
        raise ConfigError(f"{path}: {'; '.join(problems)}") from error


def load_params(path: Path | str = PARAMS_FILE) -> Params:
    """Read and check params.yaml; a bad value raises ConfigError naming its key."""
    path = Path(path)
    raw = read_yaml(path, missing=f"{path} not found: run from the project root")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of stage names to settings")
    with naming_bad_keys(path):
        return Params.model_validate(raw)
