"""The model bundle: the one artifact the train stage writes and every later reader (evaluate,
fairness, register, the service, monitoring) loads. It carries what a decision needs (the fitted
pipeline, its inputs, its task with the labels and costs, the cost-based decision) and what
judging it needs (the schema it was trained under, the sensitive attributes), so nothing is
restated elsewhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from {{ cookiecutter.package_name }}.errors import ConfigError, PipelineError
from {{ cookiecutter.package_name }}.schema import Schema
from {{ cookiecutter.package_name }}.task import Decision, Task, output_rows

BUNDLE_FORMAT = 2  # bumped when the fields change: an older file is refused, not misread
UNKNOWN_GROUP = "unknown"  # a missing sensitive value is a group of its own, never dropped


@dataclass(frozen=True)
class DerivedGroup:
    """A sensitive attribute binned from a column, e.g. age groups from age."""

    source: str
    bins: tuple[float, ...]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class ModelBundle:
    """A fitted model and the contract every stage and the service decide by."""

    pipeline: Any  # a fitted scikit-learn estimator that takes `features` as columns
    schema: Schema
    features: tuple[str, ...]
    task: Task  # what the target is, how outputs become decisions, what mistakes cost
    decision: Decision  # the cut-off, rule or offset train chose (or params pinned)
    family: str
    sensitive_features: tuple[str, ...] = ()
    derived_groups: dict[str, DerivedGroup] = field(default_factory=dict)
    # the training rows' mean after preprocessing, where a linear model's explanations start
    # (explanations.py); None in bundles written before explanations, and for baselines
    background: np.ndarray | None = None
    format: int = BUNDLE_FORMAT

    @property
    def target(self) -> str:
        return self.schema.target

    @property
    def measured_only(self) -> tuple[str, ...]:
        """Schema columns that are never model inputs (kept for fairness measurement)."""
        return tuple(name for name in self.schema.feature_names if name not in self.features)

    def role(self, attribute: str) -> str:
        """Whether a sensitive attribute reaches the model, in words (for reports and the card)."""
        if attribute in self.derived_groups:
            source = self.derived_groups[attribute].source
            reaches = "a model input" if source in self.features else "not a model input"
            return f"derived from {source}, {reaches}"
        return "a model input" if attribute in self.features else "measured only, not a model input"

    def outputs(self, table: pd.DataFrame) -> np.ndarray:
        """The model's output for each row (binary: the positive class's probability); only the
        model's inputs are used."""
        return self.task.outputs(self.pipeline, table[list(self.features)])

    def decide(self, outputs: np.ndarray) -> np.ndarray:
        """The decisions, encoded as `encode` encodes true labels (binary: 1 positive, 0)."""
        return self.task.decide(outputs, self.decision)

    def label(self, decision: Any) -> Any:
        """The schema's label (or the number) for one decision."""
        return self.task.label(decision)

    def answers(self, table: pd.DataFrame) -> list[dict[str, Any]]:
        """What the service answers for each row, beside its id and version: the decision's
        label and the task's outputs (binary: `probability`; multiclass: `probabilities`;
        regression: nothing more). The offline side of every served-against-offline check."""
        outputs = self.outputs(table)
        by_row = output_rows(self.task.output_columns(outputs), len(table))
        return [
            {"label": self.label(decision), **self.task.response_values(own)}
            for own, decision in zip(by_row, self.decide(outputs), strict=True)
        ]

    def encode(self, labels: pd.Series) -> np.ndarray:
        """True labels encoded as decisions are (binary: 1 positive, 0)."""
        return self.task.encode(labels)

    def sensitive_groups(self, table: pd.DataFrame) -> dict[str, pd.Series]:
        """Each sensitive attribute's group per row (derived ones binned from their source)."""
        groups = {}
        for name in self.sensitive_features:
            if name in self.derived_groups:
                spec = self.derived_groups[name]
                if spec.source not in table.columns:
                    raise ConfigError(
                        f"data.derived_columns.{name}: source column '{spec.source}' is not in"
                        " the data"
                    )
                column = pd.cut(
                    table[spec.source], bins=list(spec.bins), labels=list(spec.labels), right=False
                )
            elif name in table.columns:
                column = table[name]
            else:
                raise ConfigError(
                    f"data.sensitive_features: '{name}' is neither a data column nor one of"
                    " data.derived_columns"
                )
            groups[name] = column.astype("string").fillna(UNKNOWN_GROUP).astype(str)
        return groups

    def save(self, path: Path | str) -> None:
        joblib.dump(self, path)


def load_bundle(path: Path | str) -> ModelBundle:
    """Read a bundle the train stage wrote; anything else is refused with the reason."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} is missing: run the train stage first (make pipeline)")
    return checked_bundle(joblib.load(path), str(path))


def checked_bundle(loaded: object, origin: str) -> ModelBundle:
    """`loaded` (what joblib read from `origin`) if it is a bundle this code reads, else
    PipelineError with the reason: also for bundles read from another git revision."""
    if not isinstance(loaded, ModelBundle):
        raise PipelineError(
            f"{origin} holds a {type(loaded).__name__}, not a model bundle: rerun the train stage"
        )
    if loaded.format != BUNDLE_FORMAT:
        raise PipelineError(
            f"{origin} is bundle format {loaded.format}, this code reads {BUNDLE_FORMAT}:"
            " rerun the train stage"
        )
    return loaded
