"""What differs between supervised tasks, in one place. Each task is a small object that the
stages call: how the target is encoded, which estimators and baseline fit it, how the cost of
mistakes turns the model's output into a decision (chosen by cross-validation on the training
split), which metrics judge the decisions and in which direction, and which fairness measures
compare groups. The stages hold no `if task == ...`: a new task is a new class here.

- binary: decide the positive class when its probability reaches a cut-off; the cut-off with
  the lowest cross-validated cost of `evaluate.cost_matrix` (fp, fn).
- multiclass: decide the class with the lowest expected cost under `evaluate.cost_matrix`
  (actual class -> decided class -> cost), or the most probable one when that was cheaper in
  cross-validation.
- regression: predict the quantile of the costs (cost_under / (cost_under + cost_over)): the
  model's estimate shifted by that quantile of its cross-validated errors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

import numpy as np
import pandas as pd

from {{ cookiecutter.package_name }}.errors import ConfigError

MINIMIZE_COST: Final = "minimize_cost"
MOST_PROBABLE: Final = "most_probable"
# scikit-learn's scorers (train.scoring) of a number, and those of two classes only.
REGRESSION_SCORERS: Final = frozenset(
    {
        "d2_absolute_error_score", "explained_variance", "neg_max_error", "r2",
        "neg_mean_absolute_error", "neg_mean_absolute_percentage_error",
        "neg_mean_gamma_deviance", "neg_mean_poisson_deviance", "neg_mean_squared_error",
        "neg_mean_squared_log_error", "neg_median_absolute_error",
        "neg_root_mean_squared_error", "neg_root_mean_squared_log_error",
    }
)  # fmt: skip
BINARY_ONLY_SCORERS: Final = frozenset(
    {
        "roc_auc", "average_precision", "f1", "precision", "recall", "jaccard",
        "neg_brier_score", "d2_brier_score", "positive_likelihood_ratio",
        "neg_negative_likelihood_ratio",
    }
)  # fmt: skip
THRESHOLD_GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)  # binary cut-offs tried, 0.01 apart
TaskName = Literal["binary", "multiclass", "regression"]


@dataclass(frozen=True)
class Decision:
    """How a fitted model's output becomes a decision: `value` is the binary cut-off, the
    multiclass rule (minimize_cost or most_probable) or the regression offset; `source` says
    who chose it (minimize_cost: cross-validation on the training split; params: pinned)."""

    value: float | str
    source: str
    cv_cost_per_prediction: float | None = None

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"value": self.value, "source": self.source}
        if self.cv_cost_per_prediction is not None:
            record["cv_cost_per_prediction"] = self.cv_cost_per_prediction
        return record


def output_rows(columns: dict[str, Any], rows: int) -> list[dict[str, float]]:
    """A task's output columns (`Task.output_columns`: name -> one value per row) as one mapping
    per row, as the service answers and the log keeps them."""
    return [{name: float(values[i]) for name, values in columns.items()} for i in range(rows)]


class Task(ABC):
    """One kind of supervised problem; subclasses carry the target's classes and the costs."""

    name: ClassVar[str]
    # Metrics where smaller is better: a gate on them is a maximum, a gain is a fall.
    lower_is_better: ClassVar[frozenset[str]] = frozenset({"cost", "cost_per_prediction"})
    gate_metrics: ClassVar[tuple[str, ...]]  # what evaluate.thresholds may name
    disparities: ClassVar[tuple[str, ...]]  # what fairness.thresholds may name
    baselines: ClassVar[tuple[str, ...]]  # what train.baseline may name

    # -- the target and the estimators ---------------------------------------------------------
    @abstractmethod
    def encode(self, labels: pd.Series) -> np.ndarray:
        """The target as the estimators fit it and the metrics compare it."""

    @abstractmethod
    def estimator(self, family: str, seed: int) -> Any:
        """An unfitted estimator of `family` for this task."""

    @abstractmethod
    def baseline(self, strategy: str, seed: int) -> Any:
        """The product without ML: an estimator that ignores the features."""

    @abstractmethod
    def folds(self, count: int, seed: int) -> Any:
        """The cross-validation splitter (stratified for classes)."""

    @abstractmethod
    def outputs(self, estimator: Any, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The model's raw output: a probability, the class probabilities, or a number."""

    # -- the decision ------------------------------------------------------------------------
    scoring_hint: ClassVar[str]  # train.scoring's usual choices, for messages

    @classmethod
    def scores(cls, scoring: str) -> bool:
        """Whether scikit-learn's scorer `scoring` can score this task's models."""
        return scoring not in REGRESSION_SCORERS

    @classmethod
    @abstractmethod
    def check_pinned(cls, value: Any) -> str | None:
        """Why `train.decision_threshold`'s pinned `value` is wrong for this task, or None."""

    @abstractmethod
    def cost_of(self, y_true: np.ndarray, decisions: np.ndarray) -> float:
        """The total cost of `decisions` against the truth (evaluate.cost_matrix)."""

    @abstractmethod
    def decide(self, outputs: np.ndarray, decision: Decision) -> np.ndarray:
        """Decisions (encoded as `encode` encodes the target) from the model's outputs."""

    @abstractmethod
    def label(self, decision: Any) -> Any:
        """One decision as the schema's label (binary and multiclass) or the number."""

    def labels(self) -> dict[str, Any]:
        """What the decisions can be, for the registry's record (nothing for a number)."""
        return {}

    def explained_codes(self, decisions: np.ndarray) -> np.ndarray | None:
        """Per row, the class (as a decision code) a decision's explanation is toward; None
        for a number, whose only output is explained (explanations.py)."""
        return None

    def output_columns(self, outputs: np.ndarray) -> dict[str, np.ndarray]:
        """The model's outputs as named columns beside the decision, in monitoring's rows
        (a number's decision is its output: nothing more)."""
        return {}

    def output_names(self) -> list[str]:
        """The names of `output_columns`."""
        return list(self.output_columns(np.zeros(0)))

    def response_fields(self, decision: Decision) -> dict[str, Any]:
        """The service's answer beside the decision: field name -> (type, pydantic Field)."""
        return {}

    def response_values(self, columns: dict[str, float]) -> dict[str, Any]:
        """One answer's values of `response_fields`, from its row of `output_columns`."""
        return {}

    # -- monitoring ------------------------------------------------------------------------------
    def read_outputs(self, rows: pd.DataFrame, prediction: str) -> np.ndarray:
        """The model's outputs back from monitoring's rows (`output_columns`; a number's
        decision, in `prediction`, is what its metrics read)."""
        return np.asarray(rows[prediction], dtype=np.float64)

    @abstractmethod
    def evidently_rows(
        self, rows: pd.DataFrame, target: str, prediction: str
    ) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
        """Monitoring's rows as Evidently reads this task: the rows (labels and outputs as it
        wants them), the output columns among them, and DataDefinition's task arguments."""

    @abstractmethod
    def evidently_preset(self, decision: Decision) -> Any:
        """Evidently's performance preset for this task's labelled rows."""

    # The Evidently workspace dashboard's performance panels: (title, Evidently metric).
    evidently_panels: ClassVar[tuple[tuple[str, str], ...]]

    # -- the labels' provenance (monitor.labels) ---------------------------------------------
    label_shift_test: ClassVar[str] = "total variation distance of the class shares"

    def label_mix(self, labels: pd.Series) -> str:
        """Labels (or decisions) at a glance, for reports: each class's share."""
        shares = labels.astype(str).value_counts(normalize=True).sort_index()
        return ", ".join(f"{name} {share:.0%}" for name, share in shares.items())

    def label_shift(self, labels: pd.Series, history: pd.Series) -> float:
        """How far `labels` depart from `history` (the test split's), by `label_shift_test`:
        half the summed gaps between the class shares (0 the same mix, 1 no class in common)."""
        now = labels.astype(str).value_counts(normalize=True)
        before = history.astype(str).value_counts(normalize=True)
        return float(0.5 * now.sub(before, fill_value=0).abs().sum())

    # -- the canary --------------------------------------------------------------------------
    @abstractmethod
    def decision_shift(
        self, rate: Callable[..., str], canary: str, primary: str
    ) -> tuple[str, str]:
        """The canary's decision check (deploy.canary.max_decision_shift): what it measures and
        its PromQL, from the service's metrics; `rate(metric, *labels)` writes a rate over the
        check's interval, `canary` and `primary` select each side's pods."""

    def fit(
        self,
        estimator: Any,
        features: pd.DataFrame,
        target: np.ndarray,
        pinned: float | str,
        folds: int,
        seed: int,
    ) -> tuple[Any, Decision]:
        """`estimator` fitted on every row of `features` and its decision: pinned, or the
        candidate with the lowest cost on out-of-fold outputs of these (training) rows."""
        from sklearn.base import clone

        if pinned != MINIMIZE_COST:
            return clone(estimator).fit(features, target), Decision(pinned, "params")
        outputs = self._out_of_fold(estimator, features, target, folds, seed)
        value, cost = self.cheapest(outputs, target)
        fitted = clone(estimator).fit(features, target)
        return fitted, Decision(value, MINIMIZE_COST, cost / len(target))

    def _out_of_fold(
        self, estimator: Any, features: pd.DataFrame, target: np.ndarray, folds: int, seed: int
    ) -> np.ndarray:
        from sklearn.base import clone

        parts: list[np.ndarray] = []
        order: list[np.ndarray] = []
        for train_rows, held_out in self.folds(folds, seed).split(features, target):
            fitted = clone(estimator).fit(features.iloc[train_rows], target[train_rows])
            parts.append(self.outputs(fitted, features.iloc[held_out]))
            order.append(held_out)
        outputs = np.concatenate(parts)
        result = np.empty_like(outputs)
        result[np.concatenate(order)] = outputs
        return result

    @abstractmethod
    def cheapest(self, outputs: np.ndarray, target: np.ndarray) -> tuple[float | str, float]:
        """The decision value with the lowest total cost on these outputs, and that cost."""

    # -- exploring ---------------------------------------------------------------------------
    @abstractmethod
    def target_columns(self, labels: pd.Series) -> pd.DataFrame:
        """The target as numbers whose mean per group explore reports (binary: the positive
        rate; several classes: each one's share; a number: its mean)."""

    @abstractmethod
    def target_summary(self, labels: pd.Series) -> dict[str, Any]:
        """The target at a glance, for reports/explore.json."""

    # -- judging -----------------------------------------------------------------------------
    @property
    @abstractmethod
    def default_decision(self) -> Decision:
        """How the model would decide if nobody weighed the costs: for comparison."""

    @abstractmethod
    def plots(
        self, y_true: np.ndarray, outputs: np.ndarray, decisions: np.ndarray
    ) -> dict[str, pd.DataFrame]:
        """Tables for `dvc plots`, by file name (reports/plots/)."""

    @abstractmethod
    def metrics(
        self, y_true: np.ndarray, outputs: np.ndarray, decisions: np.ndarray
    ) -> dict[str, Any]:
        """The decisions' metrics (every gate metric among them) and their cost."""

    def gate_failures(
        self,
        model: dict[str, Any],
        baseline: dict[str, Any],
        thresholds: dict[str, float],
        primary: str,
        min_gain: float,
    ) -> list[str]:
        """Why the model must not ship: missed thresholds, no gain over the baseline, higher
        cost. Each reason names the params.yaml key that sets the limit."""
        failures = []
        for name, limit in thresholds.items():
            if name in self.lower_is_better and model[name] > limit:
                failures.append(
                    f"{name} {model[name]:.3f} is above evaluate.thresholds.{name} {limit:.3f}"
                    " (set it to what your problem needs)"
                )
            elif name not in self.lower_is_better and model[name] < limit:
                failures.append(
                    f"{name} {model[name]:.3f} is below evaluate.thresholds.{name} {limit:.3f}"
                    " (set it to what your problem needs)"
                )
        gain = model[primary] - baseline[primary]
        if primary in self.lower_is_better:
            gain = -gain
        if gain < min_gain:
            failures.append(
                f"{primary} gain over the baseline {gain:+.3f} is below"
                f" evaluate.min_gain_over_baseline {min_gain:+.3f}"
            )
        if model["cost"] > baseline["cost"]:
            failures.append(
                f"cost {model['cost']:g} is higher than the baseline's {baseline['cost']:g}"
                " (evaluate.cost_matrix): the model decides worse than a rule without features"
            )
        return failures

    @abstractmethod
    def fairness(
        self, y_true: pd.Series, decisions: pd.Series, groups: pd.Series
    ) -> dict[str, Any]:
        """Per-group metrics of the decisions and each of `disparities` between the groups."""

    # -- the model card ------------------------------------------------------------------------
    card_metrics: ClassVar[tuple[str, ...]]  # the rows of the card's performance table

    @abstractmethod
    def decision_summary(self, decisions: np.ndarray) -> dict[str, float]:
        """What a set of decisions amounts to, named for people (the model card's partial
        dependence): each class's share, or the mean decided number."""

    @abstractmethod
    def describe(self, value: float | str) -> str:
        """A decision value in a few words, e.g. `cut-off 0.63`."""

    @abstractmethod
    def predicts(self, target: str) -> str:
        """What the model answers, for the card."""

    @abstractmethod
    def card_decision(
        self, target: str, decision: dict[str, Any], metrics: dict[str, Any]
    ) -> list[str]:
        """The decision rule and what it costs, in business terms: the card's bullet points
        (`decision`: train's report of it; `metrics`: evaluate's)."""


def _chosen_how(decision: dict[str, Any], what: str) -> str:
    if decision["source"] != MINIMIZE_COST:
        return "pinned in params.yaml (`train.decision_threshold`)"
    return (
        f"chosen by {decision['cv_folds']}-fold cross-validation on the training split only"
        f" as the {what} with the lowest expected cost of mistakes"
        f" ({decision['cv_cost_per_prediction']:.3f} per decision in cross-validation)"
    )


def is_known(labels: pd.Series) -> pd.Series:
    """Which true labels are there: neither missing nor empty text (nobody told us)."""
    return labels.notna() & (labels.astype("string") != "")


def binary_target(labels: pd.Series, positive_label: Any) -> pd.Series:
    """1 where the label is the positive class, else 0 (labels compared as text)."""
    return (labels.astype(str) == str(positive_label)).astype(int)


def _labels_as_text(values: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(str(value) for value in values)


def _classifier(family: str, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    if family == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(random_state=seed)
    if family == "random_forest":
        return RandomForestClassifier(random_state=seed, n_jobs=1)
    return LogisticRegression(max_iter=2000)


def _class_folds(count: int, seed: int) -> Any:
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(n_splits=count, shuffle=True, random_state=seed)


@dataclass(frozen=True)
class BinaryClassification(Task):
    """Two classes; the model's output is the positive class's probability."""

    positive_label: Any
    negative_label: Any
    cost_fp: float  # deciding positive wrongly
    cost_fn: float  # deciding negative wrongly

    name: ClassVar[str] = "binary"
    gate_metrics: ClassVar[tuple[str, ...]] = ("roc_auc", "f1", "precision", "recall", "accuracy")
    disparities: ClassVar[tuple[str, ...]] = (
        "demographic_parity_difference",
        "equalized_odds_difference",
    )
    baselines: ClassVar[tuple[str, ...]] = ("most_frequent", "prior", "stratified")
    scoring_hint: ClassVar[str] = "roc_auc, neg_log_loss, f1, balanced_accuracy"

    def encode(self, labels: pd.Series) -> np.ndarray:
        return binary_target(labels, self.positive_label).to_numpy()

    def estimator(self, family: str, seed: int) -> Any:
        return _classifier(family, seed)

    def baseline(self, strategy: str, seed: int) -> Any:
        from sklearn.dummy import DummyClassifier

        return DummyClassifier(strategy=strategy, random_state=seed)

    def folds(self, count: int, seed: int) -> Any:
        return _class_folds(count, seed)

    def outputs(self, estimator: Any, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        return estimator.predict_proba(features)[:, 1]

    @classmethod
    def check_pinned(cls, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            return f"must be '{MINIMIZE_COST}' or a number between 0 and 1, got {value!r}"
        return None

    def cost_of(self, y_true: np.ndarray, decisions: np.ndarray) -> float:
        false_positives = int(((decisions == 1) & (y_true == 0)).sum())
        false_negatives = int(((decisions == 0) & (y_true == 1)).sum())
        return float(false_positives * self.cost_fp + false_negatives * self.cost_fn)

    def decide(self, outputs: np.ndarray, decision: Decision) -> np.ndarray:
        return (np.asarray(outputs) >= float(decision.value)).astype(int)

    def label(self, decision: Any) -> Any:
        return self.positive_label if decision else self.negative_label

    def explained_codes(self, decisions: np.ndarray) -> np.ndarray | None:
        return np.ones(len(decisions), dtype=int)  # toward the positive class, whatever decided

    def labels(self) -> dict[str, Any]:
        return {"positive_label": self.positive_label, "negative_label": self.negative_label}

    def output_columns(self, outputs: np.ndarray) -> dict[str, np.ndarray]:
        return {"probability": np.asarray(outputs, dtype=np.float64)}  # of the positive class

    def response_fields(self, decision: Decision) -> dict[str, Any]:
        from pydantic import Field

        description = (
            f"probability that the label is {self.positive_label!r}; the label is"
            f" {self.positive_label!r} when it is at least {float(decision.value):.4g}"
        )
        return {"probability": (float, Field(description=description))}

    def response_values(self, columns: dict[str, float]) -> dict[str, Any]:
        return {"probability": columns["probability"]}

    def read_outputs(self, rows: pd.DataFrame, prediction: str) -> np.ndarray:
        return np.asarray(rows["probability"], dtype=np.float64)

    def evidently_rows(
        self, rows: pd.DataFrame, target: str, prediction: str
    ) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
        """Labels as 1 (positive) / 0, the probability of 1 beside them."""
        from evidently import BinaryClassification

        out = rows.copy()
        known = is_known(out[target])
        out[target] = binary_target(out[target], self.positive_label).where(known)
        out[prediction] = binary_target(out[prediction], self.positive_label)
        if known.all():
            out[target] = out[target].astype(int)
        task = BinaryClassification(
            target=target,
            prediction_labels=prediction,
            prediction_probas="probability",
            pos_label=1,
        )
        return out, ["probability"], {"classification": [task]}

    def evidently_preset(self, decision: Decision) -> Any:
        from evidently.presets import ClassificationPreset

        return ClassificationPreset(probas_threshold=float(decision.value))

    evidently_panels: ClassVar[tuple[tuple[str, str], ...]] = (
        ("ROC AUC", "RocAuc"), ("Precision", "Precision"),
    )  # fmt: skip

    def decision_shift(
        self, rate: Callable[..., str], canary: str, primary: str
    ) -> tuple[str, str]:
        """The gap between the two sides' shares of positive decisions."""

        def share(pods: str) -> str:  # 0 when none is positive yet
            positive = rate("predictions_total", pods, f'label="{self.positive_label}"')
            decided = rate("predictions_total", pods)
            return f"  (sum({positive}) or vector(0))\n  /\n  sum({decided})"

        return (
            f"the canary's share of {str(self.positive_label)!r} decisions against the"
            " primary's (absolute)",
            f"abs(\n{share(canary)}\n-\n{share(primary)}\n)\n",
        )

    def cheapest(self, outputs: np.ndarray, target: np.ndarray) -> tuple[float | str, float]:
        costs = [self.cost_of(target, (outputs >= cut).astype(int)) for cut in THRESHOLD_GRID]
        best = int(np.argmin(costs))  # the lowest cut-off among equally cheap ones
        return float(THRESHOLD_GRID[best]), float(costs[best])

    def target_columns(self, labels: pd.Series) -> pd.DataFrame:
        return pd.DataFrame({"positive_rate": self.encode(labels)}, index=labels.index)

    def target_summary(self, labels: pd.Series) -> dict[str, Any]:
        rate = float(self.encode(labels).mean())
        return {"positive_label": self.positive_label, "positive_rate": round(rate, 4)}

    @property
    def default_decision(self) -> Decision:
        return Decision(0.5, "default")

    def plots(
        self, y_true: np.ndarray, outputs: np.ndarray, decisions: np.ndarray
    ) -> dict[str, pd.DataFrame]:
        """ROC and precision-recall curves of the probabilities; the decisions' confusion."""
        from sklearn import metrics as skm

        fpr, tpr, roc_cuts = skm.roc_curve(y_true, outputs)
        precision, recall, pr_cuts = skm.precision_recall_curve(y_true, outputs)
        return {
            "roc.csv": pd.DataFrame(
                {"fpr": fpr, "tpr": tpr, "threshold": np.minimum(roc_cuts, 1.0)}
            ),
            "precision_recall.csv": pd.DataFrame(
                {"recall": recall[:-1], "precision": precision[:-1], "threshold": pr_cuts}
            ),
            "confusion.csv": _confusion(self, y_true, decisions),
        }

    def metrics(
        self, y_true: np.ndarray, outputs: np.ndarray, decisions: np.ndarray
    ) -> dict[str, Any]:
        from sklearn import metrics as skm

        _, fp, fn, tp = skm.confusion_matrix(y_true, decisions, labels=[0, 1]).ravel()
        total_cost = self.cost_of(y_true, decisions)
        return {
            "accuracy": float(skm.accuracy_score(y_true, decisions)),
            "precision": float(skm.precision_score(y_true, decisions, zero_division=0)),
            "recall": float(skm.recall_score(y_true, decisions, zero_division=0)),
            "f1": float(skm.f1_score(y_true, decisions, zero_division=0)),
            "roc_auc": float(skm.roc_auc_score(y_true, outputs)),
            "false_positives": int(fp),
            "false_negatives": int(fn),
            "positive_rate": float((tp + fp) / len(y_true)),
            "cost": total_cost,
            "cost_per_prediction": total_cost / len(y_true),
        }

    card_metrics: ClassVar[tuple[str, ...]] = (
        "roc_auc", "f1", "precision", "recall", "accuracy", "positive_rate", "cost",
    )  # fmt: skip

    def decision_summary(self, decisions: np.ndarray) -> dict[str, float]:
        return {f"share decided {self.positive_label}": float(np.mean(np.asarray(decisions) == 1))}

    def describe(self, value: float | str) -> str:
        return f"cut-off {float(value):.2f}"

    def predicts(self, target: str) -> str:
        return f"Predicts `{target} = {self.positive_label!r}` (the positive class)."

    def card_decision(
        self, target: str, decision: dict[str, Any], metrics: dict[str, Any]
    ) -> list[str]:
        model, baseline = metrics["model"], metrics["baseline"]
        at_default = metrics["model_at_default_threshold"]
        positive = f"`{target} = {self.positive_label!r}`"
        fp, fn = self.cost_fp, self.cost_fn
        break_even = fp / (fp + fn) if fp + fn else 0.5
        return [
            f"- The model decides {positive} when its probability of it is at least"
            f" **{decision['value']:.2f}**, and the other class below;"
            f" {_chosen_how(decision, 'cut-off')}.",
            f"- Costs (`evaluate.cost_matrix`): deciding {positive} wrongly (a false positive)"
            f" costs {fp:g}, missing a true one (a false negative) costs {fn:g}. With perfectly"
            f" calibrated probabilities the break-even cut-off would be {fp:g}/({fp:g} +"
            f" {fn:g}) = {break_even:.2f}; the chosen one is where this model's probabilities"
            " give the lowest cost.",
            f"- On the test split it decides {positive} for {model['positive_rate']:.1%} of"
            f" cases at a cost of {model['cost']:g} ({model['false_positives']} false positives,"
            f" {model['false_negatives']} false negatives). At the default cut-off"
            f" {at_default['threshold']:.2f} the same model would cost {at_default['cost']:g}"
            f" ({at_default['false_positives']} false positives); the baseline costs"
            f" {baseline['cost']:g}.",
        ]

    def fairness(
        self, y_true: pd.Series, decisions: pd.Series, groups: pd.Series
    ) -> dict[str, Any]:
        from fairlearn import metrics as flm
        from sklearn.metrics import accuracy_score

        per_group = {
            "count": flm.count,
            "selection_rate": flm.selection_rate,
            "true_positive_rate": flm.true_positive_rate,
            "false_positive_rate": flm.false_positive_rate,
            "accuracy": accuracy_score,
        }
        measures = {
            "demographic_parity_difference": flm.demographic_parity_difference,
            "demographic_parity_ratio": flm.demographic_parity_ratio,
            "equalized_odds_difference": flm.equalized_odds_difference,
            "equalized_odds_ratio": flm.equalized_odds_ratio,
        }
        frame = flm.MetricFrame(
            metrics=per_group, y_true=y_true, y_pred=decisions, sensitive_features=groups
        )
        return {
            "groups": _by_group(frame),
            **{
                name: float(measure(y_true, decisions, sensitive_features=groups))
                for name, measure in measures.items()
            },
        }


def _confusion(task: Task, y_true: np.ndarray, decisions: np.ndarray) -> pd.DataFrame:
    """Each row's true and decided label, for DVC's confusion-matrix template."""
    return pd.DataFrame(
        {
            "actual": [str(task.label(value)) for value in y_true],
            "predicted": [str(task.label(value)) for value in decisions],
        }
    )


def _by_group(frame: Any) -> dict[str, dict[str, float]]:
    return {
        str(group): {metric: float(value) for metric, value in row.items()}
        for group, row in frame.by_group.iterrows()
    }


@dataclass(frozen=True)
class MulticlassClassification(Task):
    """Three or more classes; the model's output is each class's probability, in `classes`'
    order, and a decision is the index of the decided class."""

    classes: tuple[Any, ...]
    costs: tuple[tuple[float, ...], ...]  # costs[actual][decided], in `classes`' order

    name: ClassVar[str] = "multiclass"
    lower_is_better: ClassVar[frozenset[str]] = frozenset(
        {"cost", "cost_per_prediction", "log_loss"}
    )
    gate_metrics: ClassVar[tuple[str, ...]] = (
        "macro_f1",
        "balanced_accuracy",
        "accuracy",
        "log_loss",
    )
    disparities: ClassVar[tuple[str, ...]] = (
        "demographic_parity_difference",
        "accuracy_difference",
    )
    baselines: ClassVar[tuple[str, ...]] = ("most_frequent", "prior", "stratified")
    scoring_hint: ClassVar[str] = "f1_macro, neg_log_loss, balanced_accuracy, roc_auc_ovr"

    @classmethod
    def scores(cls, scoring: str) -> bool:
        return scoring not in REGRESSION_SCORERS | BINARY_ONLY_SCORERS

    def encode(self, labels: pd.Series) -> np.ndarray:
        index = {text: i for i, text in enumerate(_labels_as_text(self.classes))}
        codes = labels.astype(str).map(index)
        unknown = sorted(labels[codes.isna()].astype(str).unique())
        if unknown:
            raise ConfigError(
                f"target values {unknown[:10]} are not among the schema's classes"
                f" {list(self.classes)}: run `make schema` and review it"
            )
        return codes.astype(int).to_numpy()

    def estimator(self, family: str, seed: int) -> Any:
        return _classifier(family, seed)

    def baseline(self, strategy: str, seed: int) -> Any:
        from sklearn.dummy import DummyClassifier

        return DummyClassifier(strategy=strategy, random_state=seed)

    def folds(self, count: int, seed: int) -> Any:
        return _class_folds(count, seed)

    def outputs(self, estimator: Any, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Probabilities in `classes`' order, a class the fit never saw at 0."""
        raw = estimator.predict_proba(features)
        full = np.zeros((len(raw), len(self.classes)), dtype=np.float64)
        full[:, np.asarray(estimator.classes_, dtype=int)] = raw
        return full

    @classmethod
    def check_pinned(cls, value: Any) -> str | None:
        if value != MOST_PROBABLE:
            return f"must be '{MINIMIZE_COST}' or '{MOST_PROBABLE}', got {value!r}"
        return None

    def cost_of(self, y_true: np.ndarray, decisions: np.ndarray) -> float:
        return float(np.asarray(self.costs)[y_true, decisions].sum())

    def decide(self, outputs: np.ndarray, decision: Decision) -> np.ndarray:
        outputs = np.asarray(outputs)
        if decision.value == MOST_PROBABLE:
            return outputs.argmax(axis=1)
        return (outputs @ np.asarray(self.costs)).argmin(axis=1)  # lowest expected cost

    def label(self, decision: Any) -> Any:
        return self.classes[int(decision)]

    def explained_codes(self, decisions: np.ndarray) -> np.ndarray | None:
        return np.asarray(decisions, dtype=int)  # toward the class decided

    def labels(self) -> dict[str, Any]:
        return {"classes": list(self.classes)}

    def output_columns(self, outputs: np.ndarray) -> dict[str, np.ndarray]:
        outputs = np.asarray(outputs, dtype=np.float64).reshape(-1, len(self.classes))
        return {f"probability[{name}]": outputs[:, i] for i, name in enumerate(self.classes)}

    def response_fields(self, decision: Decision) -> dict[str, Any]:
        from pydantic import Field

        rule = self.describe(decision.value)
        description = f"each class's probability; the label is the class of the {rule}"
        return {"probabilities": (dict[str, float], Field(description=description))}

    def response_values(self, columns: dict[str, float]) -> dict[str, Any]:
        return {
            "probabilities": {str(name): columns[f"probability[{name}]"] for name in self.classes}
        }

    def read_outputs(self, rows: pd.DataFrame, prediction: str) -> np.ndarray:
        return rows[self.output_names()].to_numpy(dtype=np.float64).reshape(-1, len(self.classes))

    def evidently_rows(
        self, rows: pd.DataFrame, target: str, prediction: str
    ) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
        """Labels as text; each class's probability in a column named as the class (what
        Evidently matches them by), when no feature has that name."""
        from evidently import MulticlassClassification

        out = rows.copy()
        known = is_known(out[target])
        out[target] = out[target].astype("string").where(known)
        out[prediction] = out[prediction].astype("string")
        names = [str(name) for name in self.classes]
        if set(names) & set(out.columns):  # a class named like a column: labels only
            task = MulticlassClassification(target=target, prediction_labels=prediction)
            return out, self.output_names(), {"classification": [task]}
        out = out.rename(columns=dict(zip(self.output_names(), names, strict=True)))
        task = MulticlassClassification(
            target=target, prediction_labels=prediction, prediction_probas=names
        )
        return out, names, {"classification": [task]}

    def evidently_preset(self, decision: Decision) -> Any:
        from evidently.presets import ClassificationPreset

        return ClassificationPreset()

    evidently_panels: ClassVar[tuple[tuple[str, str], ...]] = (
        ("F1 (macro)", "F1Score"), ("Accuracy", "Accuracy"),
    )  # fmt: skip

    def decision_shift(
        self, rate: Callable[..., str], canary: str, primary: str
    ) -> tuple[str, str]:
        """The largest gap between the two sides' shares of any one class (a class only one
        side decided counts its whole share)."""

        def shares(pods: str) -> str:
            decided = rate("predictions_total", pods)
            return f"(sum by (label) ({decided}) / scalar(sum({decided})))"

        canary_shares, primary_shares = shares(canary), shares(primary)
        return (
            "the largest gap between the canary's and the primary's share of a class (absolute)",
            f"max(abs(\n  ({canary_shares}\n  - {primary_shares})\n"
            f"  or {canary_shares}\n  or -{primary_shares}\n))\n",
        )

    def cheapest(self, outputs: np.ndarray, target: np.ndarray) -> tuple[float | str, float]:
        costs = {
            rule: self.cost_of(target, self.decide(outputs, Decision(rule, MINIMIZE_COST)))
            for rule in (MINIMIZE_COST, MOST_PROBABLE)
        }
        rule = min(costs, key=lambda name: costs[name])  # the expected-cost rule on a tie
        return rule, costs[rule]

    def target_columns(self, labels: pd.Series) -> pd.DataFrame:
        codes = self.encode(labels)
        return pd.DataFrame(
            {f"share[{name}]": (codes == i).astype(int) for i, name in enumerate(self.classes)},
            index=labels.index,
        )

    def target_summary(self, labels: pd.Series) -> dict[str, Any]:
        codes = self.encode(labels)
        shares = {
            str(name): round(float((codes == i).mean()), 4) for i, name in enumerate(self.classes)
        }
        return {"class_shares": shares}

    @property
    def default_decision(self) -> Decision:
        return Decision(MOST_PROBABLE, "default")

    def plots(
        self, y_true: np.ndarray, outputs: np.ndarray, decisions: np.ndarray
    ) -> dict[str, pd.DataFrame]:
        return {"confusion.csv": _confusion(self, y_true, decisions)}

    def metrics(
        self, y_true: np.ndarray, outputs: np.ndarray, decisions: np.ndarray
    ) -> dict[str, Any]:
        from sklearn import metrics as skm

        indices = list(range(len(self.classes)))
        total_cost = self.cost_of(y_true, decisions)
        precision, recall, _, support = skm.precision_recall_fscore_support(
            y_true, decisions, labels=indices, zero_division=0
        )
        return {
            "accuracy": float(skm.accuracy_score(y_true, decisions)),
            "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, decisions)),
            "macro_f1": float(
                skm.f1_score(y_true, decisions, labels=indices, average="macro", zero_division=0)
            ),
            "log_loss": float(skm.log_loss(y_true, np.clip(outputs, 1e-15, 1), labels=indices)),
            "per_class": {
                str(name): {
                    "precision": float(precision[i]),
                    "recall": float(recall[i]),
                    "support": int(support[i]),
                    "decided_share": float((decisions == i).mean()),
                }
                for i, name in enumerate(self.classes)
            },
            "confusion_matrix": skm.confusion_matrix(y_true, decisions, labels=indices).tolist(),
            "cost": total_cost,
            "cost_per_prediction": total_cost / len(y_true),
        }

    card_metrics: ClassVar[tuple[str, ...]] = (
        "macro_f1", "balanced_accuracy", "accuracy", "log_loss", "cost",
    )  # fmt: skip

    def decision_summary(self, decisions: np.ndarray) -> dict[str, float]:
        decisions = np.asarray(decisions)
        return {
            f"share decided {name}": float(np.mean(decisions == i))
            for i, name in enumerate(self.classes)
        }

    def describe(self, value: float | str) -> str:
        return "lowest expected cost" if value == MINIMIZE_COST else "most probable class"

    def predicts(self, target: str) -> str:
        listed = ", ".join(f"`{name}`" for name in self.classes)
        return f"Predicts `{target}`: one of {listed}, with each one's probability."

    def card_decision(
        self, target: str, decision: dict[str, Any], metrics: dict[str, Any]
    ) -> list[str]:
        model, baseline = metrics["model"], metrics["baseline"]
        at_default = metrics["model_at_default_threshold"]
        costly = sorted(
            (
                (cost, actual, decided)
                for actual, row in zip(self.classes, self.costs, strict=True)
                for decided, cost in zip(self.classes, row, strict=True)
                if cost and actual != decided
            ),
            reverse=True,
        )[:3]
        rule = (
            "the class with the lowest expected cost: each class's cost weighted by the"
            " probability of each true class"
            if decision["value"] == MINIMIZE_COST
            else "the most probable class"
        )
        shares = ", ".join(
            f"`{name}` {row['decided_share']:.1%}" for name, row in model["per_class"].items()
        )
        return [
            f"- The model decides **{rule}**; {_chosen_how(decision, 'rule')}.",
            "- Costs (`evaluate.cost_matrix`, actual -> decided; a pair not listed costs 1):"
            " the costliest mistakes are "
            + "; ".join(f"`{a}` decided `{d}` {c:g}" for c, a, d in costly)
            + ".",
            f"- On the test split it decides {shares}, at a cost of {model['cost']:g}. Deciding"
            f" the most probable class the same model would cost {at_default['cost']:g}; the"
            f" baseline costs {baseline['cost']:g}.",
        ]

    def fairness(
        self, y_true: pd.Series, decisions: pd.Series, groups: pd.Series
    ) -> dict[str, Any]:
        """Each class's selection rate and the accuracy per group; the largest gap between two
        groups' selection rates of any one class, and between their accuracies."""
        from fairlearn import metrics as flm
        from sklearn.metrics import accuracy_score

        per_group: dict[str, Any] = {"count": flm.count, "accuracy": accuracy_score}
        for i, name in enumerate(self.classes):
            per_group[f"selection_rate[{name}]"] = _selection_rate_of(i)
        frame = flm.MetricFrame(
            metrics=per_group, y_true=y_true, y_pred=decisions, sensitive_features=groups
        )
        gaps = frame.difference(method="between_groups")
        shares = [f"selection_rate[{name}]" for name in self.classes]
        return {
            "groups": _by_group(frame),
            "demographic_parity_difference": float(gaps[shares].max()),
            "accuracy_difference": float(gaps["accuracy"]),
        }


def _selection_rate_of(index: int) -> Any:
    def selection_rate(y_true: Any, y_pred: Any) -> float:
        return float((np.asarray(y_pred) == index).mean())

    return selection_rate


@dataclass(frozen=True)
class Regression(Task):
    """A number; the model's output is its estimate, and the decision adds an offset: the
    cost quantile of the cross-validated errors, or a pinned number."""

    cost_under: float  # per unit predicted below the truth
    cost_over: float  # per unit predicted above it

    name: ClassVar[str] = "regression"
    lower_is_better: ClassVar[frozenset[str]] = frozenset(
        {"cost", "cost_per_prediction", "mae", "rmse"}
    )
    gate_metrics: ClassVar[tuple[str, ...]] = ("mae", "rmse", "r2")
    disparities: ClassVar[tuple[str, ...]] = ("mae_difference", "mean_error_difference")
    baselines: ClassVar[tuple[str, ...]] = ("median", "mean")
    scoring_hint: ClassVar[str] = "neg_mean_absolute_error, neg_root_mean_squared_error, r2"

    @classmethod
    def scores(cls, scoring: str) -> bool:
        return scoring in REGRESSION_SCORERS

    label_shift_test: ClassVar[str] = (
        "Wasserstein distance over the test split's standard deviation"
    )

    def label_mix(self, labels: pd.Series) -> str:
        values = pd.to_numeric(labels, errors="coerce").dropna()
        return f"mean {values.mean():.4g}, median {values.median():.4g}" if len(values) else ""

    def label_shift(self, labels: pd.Series, history: pd.Series) -> float:
        """The work to move one distribution onto the other, in the test split's standard
        deviations (0 the same numbers; a shift of the mean by one deviation is 1)."""
        from scipy.stats import wasserstein_distance

        now = pd.to_numeric(labels, errors="coerce").dropna().to_numpy(dtype=float)
        before = pd.to_numeric(history, errors="coerce").dropna().to_numpy(dtype=float)
        spread = float(before.std()) or 1.0
        return float(wasserstein_distance(now, before) / spread)

    @property
    def quantile(self) -> float:
        """The share of outcomes the decision should lie above: the costs' optimal quantile."""
        return self.cost_under / (self.cost_under + self.cost_over)

    def encode(self, labels: pd.Series) -> np.ndarray:
        return labels.astype(float).to_numpy()

    def estimator(self, family: str, seed: int) -> Any:
        from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
        from sklearn.linear_model import Ridge

        if family == "hist_gradient_boosting":
            return HistGradientBoostingRegressor(random_state=seed)
        if family == "random_forest":
            return RandomForestRegressor(random_state=seed, n_jobs=1)
        return Ridge()

    def baseline(self, strategy: str, seed: int) -> Any:
        from sklearn.dummy import DummyRegressor

        return DummyRegressor(strategy=strategy)

    def folds(self, count: int, seed: int) -> Any:
        from sklearn.model_selection import KFold

        return KFold(n_splits=count, shuffle=True, random_state=seed)

    def outputs(self, estimator: Any, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        return np.asarray(estimator.predict(features), dtype=np.float64)

    @classmethod
    def check_pinned(cls, value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return (
                f"must be '{MINIMIZE_COST}' or a number added to every prediction (0 keeps the"
                f" model's estimate), got {value!r}"
            )
        return None

    def cost_of(self, y_true: np.ndarray, decisions: np.ndarray) -> float:
        error = np.asarray(y_true, dtype=np.float64) - np.asarray(decisions, dtype=np.float64)
        under = np.clip(error, 0, None).sum()
        over = np.clip(-error, 0, None).sum()
        return float(under * self.cost_under + over * self.cost_over)

    def decide(self, outputs: np.ndarray, decision: Decision) -> np.ndarray:
        return np.asarray(outputs, dtype=np.float64) + float(decision.value)

    def label(self, decision: Any) -> Any:
        return float(decision)

    def evidently_rows(
        self, rows: pd.DataFrame, target: str, prediction: str
    ) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
        """The true number and the decided one, both numbers."""
        from evidently import Regression

        out = rows.copy()
        out[target] = pd.to_numeric(out[target], errors="coerce")
        out[prediction] = pd.to_numeric(out[prediction], errors="coerce")
        return out, [], {"regression": [Regression(target=target, prediction=prediction)]}

    def evidently_preset(self, decision: Decision) -> Any:
        from evidently.presets import RegressionPreset

        return RegressionPreset()

    evidently_panels: ClassVar[tuple[tuple[str, str], ...]] = (
        ("Mean absolute error", "MAE"), ("R2", "R2Score"),
    )  # fmt: skip

    def decision_shift(
        self, rate: Callable[..., str], canary: str, primary: str
    ) -> tuple[str, str]:
        """How far the canary's mean predicted number is from the primary's, relative."""

        def mean(pods: str) -> str:
            total, count = (rate(f"predicted_value_{part}", pods) for part in ("sum", "count"))
            return f"(sum({total}) / sum({count}))"

        return (
            "the canary's mean predicted number against the primary's (relative)",
            f"abs(\n  {mean(canary)}\n  /\n  {mean(primary)}\n  - 1\n)\n",
        )

    def cheapest(self, outputs: np.ndarray, target: np.ndarray) -> tuple[float | str, float]:
        offset = float(np.quantile(target - outputs, self.quantile))  # minimises the cost
        return offset, self.cost_of(target, outputs + offset)

    def target_columns(self, labels: pd.Series) -> pd.DataFrame:
        return pd.DataFrame({"mean": self.encode(labels)}, index=labels.index)

    def target_summary(self, labels: pd.Series) -> dict[str, Any]:
        values = pd.Series(self.encode(labels))
        return {
            f"target_{name}": round(float(getattr(values, name)()), 4)
            for name in ("mean", "std", "min", "median", "max")
        }

    @property
    def default_decision(self) -> Decision:
        return Decision(0.0, "default")

    def plots(
        self, y_true: np.ndarray, outputs: np.ndarray, decisions: np.ndarray
    ) -> dict[str, pd.DataFrame]:
        """Each row's true value against the decided one, for a scatter plot."""
        return {"predicted.csv": pd.DataFrame({"actual": y_true, "predicted": decisions})}

    def metrics(
        self, y_true: np.ndarray, outputs: np.ndarray, decisions: np.ndarray
    ) -> dict[str, Any]:
        from sklearn import metrics as skm

        total_cost = self.cost_of(y_true, decisions)
        return {
            "mae": float(skm.mean_absolute_error(y_true, decisions)),
            "rmse": float(np.sqrt(skm.mean_squared_error(y_true, decisions))),
            "r2": float(skm.r2_score(y_true, decisions)),
            "mean_prediction": float(np.mean(decisions)),
            "under_share": float((decisions < y_true).mean()),  # ~ the cost quantile
            "cost": total_cost,
            "cost_per_prediction": total_cost / len(y_true),
        }

    card_metrics: ClassVar[tuple[str, ...]] = (
        "mae", "rmse", "r2", "mean_prediction", "under_share", "cost",
    )  # fmt: skip

    def decision_summary(self, decisions: np.ndarray) -> dict[str, float]:
        return {"mean decided": float(np.mean(np.asarray(decisions, dtype=np.float64)))}

    def describe(self, value: float | str) -> str:
        return f"offset {float(value):+.4g}"

    def predicts(self, target: str) -> str:
        return f"Predicts `{target}`, a number."

    def card_decision(
        self, target: str, decision: dict[str, Any], metrics: dict[str, Any]
    ) -> list[str]:
        model, baseline = metrics["model"], metrics["baseline"]
        at_default = metrics["model_at_default_threshold"]
        return [
            f"- The model answers its estimate of `{target}` plus **{decision['value']:+.4g}**;"
            f" {_chosen_how(decision, 'offset')}.",
            f"- Costs (`evaluate.cost_matrix`): each unit predicted too low costs"
            f" {self.cost_under:g}, too high {self.cost_over:g}, so the cheapest answer is the"
            f" {self.quantile:.0%} quantile of the outcome: too low about"
            f" {1 - self.quantile:.0%} of the time.",
            f"- On the test split it is too low for {model['under_share']:.1%} of cases, at a"
            f" cost of {model['cost']:g}. Its plain estimate would cost {at_default['cost']:g};"
            f" the baseline costs {baseline['cost']:g}.",
        ]

    def fairness(
        self, y_true: pd.Series, decisions: pd.Series, groups: pd.Series
    ) -> dict[str, Any]:
        """The absolute error and the signed error (prediction minus truth) per group; the
        largest gap between two groups in each."""
        from fairlearn import metrics as flm
        from sklearn.metrics import mean_absolute_error

        def mean_error(truth: Any, predicted: Any) -> float:
            return float(np.mean(np.asarray(predicted) - np.asarray(truth)))

        frame = flm.MetricFrame(
            metrics={"count": flm.count, "mae": mean_absolute_error, "mean_error": mean_error},
            y_true=y_true,
            y_pred=decisions,
            sensitive_features=groups,
        )
        gaps = frame.difference(method="between_groups")
        return {
            "groups": _by_group(frame),
            "mae_difference": float(gaps["mae"]),
            "mean_error_difference": float(gaps["mean_error"]),
        }


TASK_CLASSES: Final[dict[str, type[Task]]] = {
    task.name: task for task in (BinaryClassification, MulticlassClassification, Regression)
}


def task_for(name: str, positive_label: Any, costs: Any, target_values: tuple[Any, ...]) -> Task:
    """The task `data.task` names, with the schema's classes and `evaluate.cost_matrix` (as
    params.yaml holds it: fp/fn, a class-by-class mapping, or under/over); ConfigError naming
    the key that does not fit the task."""
    if name == "binary":
        others = [value for value in target_values if str(value) != str(positive_label)]
        if len(target_values) != 2 or len(others) != 1:
            raise ConfigError(
                f"data.positive_label {positive_label!r} is not one of the schema's two target"
                f" values {list(target_values)}"
            )
        return BinaryClassification(positive_label, others[0], costs.fp, costs.fn)
    if name == "multiclass":
        return MulticlassClassification(
            tuple(target_values), class_costs(costs, _labels_as_text(target_values))
        )
    return Regression(costs.under, costs.over)


def class_costs(
    matrix: dict[str, dict[str, float]], classes: tuple[str, ...]
) -> tuple[tuple[float, ...], ...]:
    """`evaluate.cost_matrix` of a multiclass task as costs[actual][decided], in `classes`'
    order: a pair it leaves out costs 1 when the classes differ and 0 when they agree."""
    unknown = [
        f"{actual}.{decided}" if decided else actual
        for actual, row in matrix.items()
        for decided in ([None] if actual not in classes else row)
        if actual not in classes or decided not in classes
    ]
    if unknown:
        raise ConfigError(
            f"evaluate.cost_matrix: {unknown} name no class of the schema ({list(classes)})"
        )
    return tuple(
        tuple(
            float(matrix.get(actual, {}).get(decided, 0.0 if actual == decided else 1.0))
            for decided in classes
        )
        for actual in classes
    )
