"""A typed view of params.yaml, so a bad value fails early with the key that holds it (schema.yaml
is read the same way, by schema.py)."""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    field_validator,
    model_validator,
)

from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.task import (
    MINIMIZE_COST,
    TASK_CLASSES,
    Task,
    TaskName,
    task_for,
)

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
    evaluation_plots = plots / "evaluate"  # the task's own (task.py: plots)
    fairness = Path("reports/fairness.json")
    explanations = Path("reports/explain.json")  # which inputs drive the decisions
    importance_plot = plots / "importance.csv"
    importance_chart = Path("docs/importance.svg")  # the model card shows it
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
    # binary | multiclass | regression: what the target is (task.py says what each decides)
    task: TaskName = "binary"
    target: str
    positive_label: int | str | None = None  # binary only: the class a positive decision means
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


class TrainConfig(_Strict):
    model: ModelFamily
    baseline: str = "prior"  # one of the task's baselines (task.py)
    cv_folds: int = Field(ge=2, le=20)
    scoring: str
    search: dict[ModelFamily, dict[str, list[Any]]]
    # "minimize_cost": chosen by cross-validation on the training split to minimise the cost
    # of evaluate.cost_matrix; or pinned: a binary cut-off in (0, 1), `most_probable` for
    # several classes, a number added to every regression estimate.
    decision_threshold: float | str = MINIMIZE_COST

    @model_validator(mode="after")
    def _search_for_model(self) -> TrainConfig:
        if self.model not in self.search:
            raise ValueError(f"search has no grid for model '{self.model}'")
        return self


class CostMatrix(_Strict):
    """Binary: the cost of a false positive and of a false negative."""

    fp: float = Field(ge=0)
    fn: float = Field(ge=0)


class RegressionCosts(_Strict):
    """Regression: the cost of each unit predicted below the truth and above it."""

    under: float = Field(gt=0)
    over: float = Field(gt=0)


class ClassCosts(RootModel[dict[str, dict[str, Annotated[float, Field(ge=0)]]]]):
    """Multiclass: actual class -> decided class -> cost; a pair left out costs 1 (0 when the
    classes agree)."""

    model_config = ConfigDict(frozen=True)


COSTS_OF_TASK: Final[dict[str, type[CostMatrix | ClassCosts | RegressionCosts]]] = {
    "binary": CostMatrix,
    "multiclass": ClassCosts,
    "regression": RegressionCosts,
}


class EvaluateConfig(_Strict):
    primary_metric: str  # one of the task's gate metrics (task.py)
    thresholds: dict[str, float]
    min_gain_over_baseline: float
    cost_matrix: dict[str, Any]  # read by the task's own type (COSTS_OF_TASK): Params.costs


class FairnessConfig(_Strict):
    thresholds: dict[str, float]  # the task's disparities (task.py), each a maximum
    # Groups with fewer test rows are reported but left out of the disparities: a gap measured
    # on a handful of rows is noise. (A default for params written before the key existed.)
    min_group_rows: int = Field(30, ge=1)


class AuthConfig(_Strict):
    tokens_file: str = Field(default="secrets/tokens.json", min_length=1)  # API_TOKENS_FILE wins


class PrivacyConfig(_Strict):
    # The pseudonymisation key file (privacy.py), relative to the project; LOG_KEY_FILE wins.
    key_file: str = Field(default="secrets/log-key", min_length=1)


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
    max_explain_records: int = Field(10, gt=0, le=1000)
    auth: AuthConfig = AuthConfig()
    max_body_bytes: int | None = Field(None, ge=1024)  # None: derived (serving/guard.py)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)

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
    performance_drop: float = Field(ge=0)  # in the primary metric's units (MAE: the target's)


class SimulateConfig(_Strict):
    rows: int = Field(gt=0, le=1_000_000)
    feedback_share: float = Field(ge=0, le=1)
    drift: dict[str, float | str] = {}


class ExplainConfig(_Strict):
    repeats: int = Field(ge=1, le=100)
    top_inputs: int = Field(ge=0)
    grid_points: int = Field(ge=2, le=100)


class BatchConfig(_Strict):
    chunk_rows: int = Field(gt=0, le=10_000_000)
    max_reject_share: float = Field(ge=0, le=1)
    key_columns: list[str]
    log_predictions: bool


class LabelsConfig(_Strict):
    """When the feedback labels are not to be judged with (monitoring's performance check and
    `make challenge`'s labelled window): one labeller's share, or a label mix far from history."""

    max_labeller_share: float = Field(default=1.0, gt=0, le=1)
    max_label_shift: float = Field(default=0.2, gt=0)  # in the task's label_shift_test's units


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
    # Days the prediction log keeps a record (`make purge`); a default for older params.
    retention_days: int = Field(762, ge=1)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)


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


def _a_duration(value: Any) -> Any:
    if not isinstance(value, str) or not DURATION.fullmatch(value):
        raise ValueError(f"must be a duration such as 30s or 5m, got {value!r}")
    return value


Duration = Annotated[str, BeforeValidator(_a_duration)]  # as DURATION reads it


def _a_quantity(value: Any) -> str:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    text = str(value) if number else value
    if not isinstance(text, str) or not QUANTITY.fullmatch(text) or not quantity_value(text):
        raise ValueError(
            f"must be a positive Kubernetes quantity such as 500m, 1, 512Mi or 2Gi, got {value!r}"
        )
    return text


Quantity = Annotated[str, BeforeValidator(_a_quantity)]  # as QUANTITY reads it, above zero


class ComputeResources(_Strict):
    """Kubernetes quantities: cpu `500m` or `1`, memory `512Mi` or `2Gi`."""

    cpu: Quantity
    memory: Quantity


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


K8S_NAMESPACE: Final = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"  # a DNS label
K8S_SECRET_NAME: Final = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"  # a DNS subdomain


class DeployEnvironment(_Strict):
    """One cluster namespace the service runs in (an overlay of deploy/)."""

    namespace: str = Field(pattern=K8S_NAMESPACE)
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
    """The Gateway the routes attach to, and the controller behind it, which decides how the
    canary's errors and latency can be measured (deploy/manifests.py: metric_queries)."""

    name: str = Field(min_length=1)
    namespace: str = Field(min_length=1)
    implementation: Literal["contour", "envoy_gateway"] = "contour"


class CanaryConfig(_Strict):
    """Flagger's analysis of a new production version: traffic steps and the limits that roll
    it back."""

    step_weights: list[int] = Field(min_length=1)
    interval: Duration
    failed_checks: int = Field(ge=1, le=100)
    max_error_rate: float = Field(ge=0, le=1)
    max_latency_p99: float = Field(gt=0)
    max_decision_shift: float = Field(gt=0, le=1)
    decision_window: Duration
    # Fewer canary decisions than this in decision_window: the decision check is neutral and
    # the canary's weight holds (the enough-decisions webhook, run by Flagger's load tester).
    min_decisions: int = Field(ge=1)
    loadtester: str = Field(pattern=r"^https?://\S+$")  # Flagger's load tester's URL

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
    max_metric_drop: float = Field(ge=0)  # evaluate.primary_metric's units, absolute
    min_labelled_rows: int = Field(ge=1)  # a smaller labelled window is shown, not judged


class DeploySecrets(_Strict):
    """The Secrets (created by hand in each namespace) the pod mounts read-only as files."""

    prediction_log: str = Field(pattern=K8S_SECRET_NAME)  # key `url`: the log's location
    api_tokens: str = Field(pattern=K8S_SECRET_NAME)  # key `tokens.json`: the tokens' digests
    log_key: str = Field(pattern=K8S_SECRET_NAME)  # key `log-key`: the pseudonymisation key


class LogDatabase(_Strict):
    """Where the pods may connect for the prediction log: an address range or a namespace."""

    cidr: str | None = None
    namespace: str | None = Field(default=None, pattern=K8S_NAMESPACE)
    port: int = Field(ge=1, le=65535)

    @field_validator("cidr")
    @classmethod
    def _network(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_network(value)  # ValueError names what is wrong with it
        return value

    @model_validator(mode="after")
    def _one_destination(self) -> LogDatabase:
        if (self.cidr is None) == (self.namespace is None):
            raise ValueError("give exactly one of cidr (an address range) and namespace")
        return self


class DeployNetwork(_Strict):
    """The NetworkPolicy: who may call the pods (the Gateway's proxies, Prometheus) and whom
    they may call (DNS, the log's database; none when null: a directory log)."""

    gateway_namespace: str = Field(pattern=K8S_NAMESPACE)
    prometheus_namespace: str = Field(pattern=K8S_NAMESPACE)
    log_database: LogDatabase | None


K8S_LABEL_NAME: Final = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
K8S_LABEL_KEY: Final = rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{K8S_LABEL_NAME}$"
K8S_LABEL_VALUE: Final = rf"^({K8S_LABEL_NAME})?$"


class DeployMetrics(_Strict):
    """How Prometheus finds the pods' /metrics. The `prometheus.io/*` annotations are always on
    the pods (a plain Prometheus's kubernetes-pods job reads them); `pod_monitor` adds a
    PodMonitor for the Prometheus Operator (kube-prometheus-stack), which ignores them."""

    scrape: Literal["pod_monitor", "annotations"]
    # the labels your Prometheus selects PodMonitors by (kube-prometheus-stack: its release)
    pod_monitor_labels: dict[
        Annotated[str, Field(pattern=K8S_LABEL_KEY)], Annotated[str, Field(pattern=K8S_LABEL_VALUE)]
    ] = Field(default_factory=dict)
    interval: Duration = "15s"


class DeploySpool(_Strict):
    """Where a pod keeps the prediction log's records while the log's database fails: its own
    emptyDir (lost with the pod), or a ReadWriteMany claim its replicas share (outlives them:
    any replica replays what another left). The service refuses with 503 at
    SPOOL_FULL_SHARE of `size`, before the volume fills."""

    volume: Literal["empty_dir", "persistent_volume_claim"]
    size: Quantity
    storage_class: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


SPOOL_FULL_SHARE: Final = 0.9  # of deploy.spool.size: where the service starts refusing


class DeployConfig(_Strict):
    # The Kubernetes name of the service's resources (a DNS label starting with a letter).
    name: str = Field(pattern=r"^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$")
    image: str = Field(pattern=r"^[a-z0-9][a-z0-9._/-]*[a-z0-9]$")  # no tag: deployed by digest
    # docker-registry Secrets the kubelet pulls a private image with (GHCR: docs/deploying.md)
    image_pull_secrets: list[Annotated[str, Field(pattern=K8S_SECRET_NAME)]] = Field(
        default_factory=list
    )
    metrics: DeployMetrics
    spool: DeploySpool
    environments: DeployEnvironments
    gateway: GatewayRef
    prometheus: str = Field(pattern=r"^https?://\S+$")
    target_cpu_utilization: int = Field(ge=1, le=100)
    resources: DeployResources
    canary: CanaryConfig
    champion: ChampionConfig
    secrets: DeploySecrets
    network: DeployNetwork


COST_HINTS: Final = {
    "binary": "fp and fn: the cost of a false positive and of a false negative",
    "multiclass": "actual class -> decided class -> cost",
    "regression": "under and over: the cost per unit predicted too low and too high",
}


class Params(_Strict):
    data: DataConfig
    curate: CurateConfig
    validate_: ValidateConfig = Field(alias="validate")
    split: SplitConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    fairness: FairnessConfig
    explain: ExplainConfig
    serving: ServingConfig
    batch: BatchConfig
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

    @property
    def costs(self) -> CostMatrix | ClassCosts | RegressionCosts:
        """evaluate.cost_matrix read as data.task's costs."""
        return COSTS_OF_TASK[self.data.task].model_validate(self.evaluate.cost_matrix)

    def task(self, target_values: tuple[Any, ...]) -> Task:
        """data.task with the schema's classes (`target_values`) and evaluate.cost_matrix."""
        costs = self.costs
        matrix = costs.root if isinstance(costs, ClassCosts) else costs
        return task_for(self.data.task, self.data.positive_label, matrix, target_values)

    @model_validator(mode="after")
    def _settings_fit_the_task(self) -> Params:
        """Keys whose meaning depends on data.task, each checked against the task's own list."""
        task = TASK_CLASSES[self.data.task]
        problems = []
        if (self.data.positive_label is None) == (task.name == "binary"):
            problems.append(
                "data.positive_label: a binary task needs the class a positive decision means"
                if task.name == "binary"
                else f"data.positive_label: a {task.name} task has no positive class: set it"
                " to null"
            )
        try:
            self.costs  # noqa: B018 - read by the task's own type
        except ValidationError as error:
            problems += [
                ".".join(["evaluate.cost_matrix", *(str(part) for part in item["loc"])])
                + f": {item['msg']} ({COST_HINTS[task.name]})"
                for item in error.errors()
            ]
        named = (
            ("evaluate.primary_metric", [self.evaluate.primary_metric], task.gate_metrics),
            ("evaluate.thresholds", list(self.evaluate.thresholds), task.gate_metrics),
            ("fairness.thresholds", list(self.fairness.thresholds), task.disparities),
            ("train.baseline", [self.train.baseline], task.baselines),
        )
        for key, names, allowed in named:
            problems += [
                f"{key}{'' if key.endswith(('metric', 'baseline')) else '.' + name}: '{name}' is"
                f" not one of a {task.name} task's {list(allowed)}"
                for name in names
                if name not in allowed
            ]
        if not task.scores(self.train.scoring):
            problems.append(
                f"train.scoring: '{self.train.scoring}' does not score a {task.name} model: one"
                f" of scikit-learn's scorers for it, e.g. {task.scoring_hint}"
            )
        pinned = self.train.decision_threshold
        why = None if pinned == MINIMIZE_COST else task.check_pinned(pinned)
        if why:
            problems.append(f"train.decision_threshold: {why}")
        if problems:
            raise ValueError("; ".join(problems))
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
