"""The one row layout monitoring compares: the schema's feature columns, the true label
(missing where nobody told us), the model's decision (a label, or a number) and its outputs as
the task names them (binary: `probability`, of the positive class). The reference stage writes
it; the current window is brought into it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from {{ cookiecutter.package_name }}.bundle import ModelBundle
from {{ cookiecutter.package_name }}.schema import Schema
from {{ cookiecutter.package_name }}.task import is_known

PREDICTION = "prediction"  # the decided label, as the service answers it
TIMESTAMP = "timestamp"
SIMULATED = "simulated"  # rows the traffic simulator made
LABELLER = "labeller"  # who supplied the true label (the feedback token's name)


def feature_dtypes(schema: Schema) -> dict[str, str]:
    """Types that also hold missing values: logged records may leave out optional columns."""
    kinds = {"integer": "Int64", "float": "float64", "category": "str"}
    return {column.name: kinds[column.type] for column in schema.columns}


def typed_features(table: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The schema's feature columns of `table`, with their types (absent ones all missing)."""
    features = table.reindex(columns=schema.feature_names)
    return features.astype(feature_dtypes(schema))


def scored_frame(
    bundle: ModelBundle, table: pd.DataFrame, target: pd.Series | None = None
) -> pd.DataFrame:
    """`table`'s features scored by the bundle, in monitoring's layout."""
    frame = typed_features(table, bundle.schema).reset_index(drop=True)
    outputs = bundle.outputs(frame) if len(frame) else np.array([], dtype=float)
    labels: Any = pd.NA if target is None else target.reset_index(drop=True)
    frame[bundle.target] = labels
    decisions: Any = bundle.decide(outputs) if len(frame) else []
    frame[PREDICTION] = [bundle.label(decision) for decision in decisions]
    for name, column in bundle.task.output_columns(outputs).items():
        frame[name] = column
    return frame


def labelled(frame: pd.DataFrame, bundle: ModelBundle) -> pd.Series:
    """Rows whose true label is known."""
    return is_known(frame[bundle.target])
