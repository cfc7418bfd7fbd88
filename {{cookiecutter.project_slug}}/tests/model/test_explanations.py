"""Each decision's explanation adds up: on every row of the test split, for every model family
of this task (each fitted here on the training split) and for the trained model, the base plus
the inputs' contributions is the model's own output: turned into probabilities (a sigmoid or a
softmax of log-odds) or taken as the estimate, it is what the service answers. One contribution
per model input: one-hot columns are summed back to their input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.bundle import ModelBundle
from {{ cookiecutter.package_name }}.config import ModelFamily, Params, Paths
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.explanations import Explainer
from {{ cookiecutter.package_name }}.pipeline.train import build_model, preprocessed_mean
from tests.conftest import frame_of_records

pytestmark = pytest.mark.model

TOLERANCE = 1e-6
# Smaller forests than the search's: a full forest takes up to a tenth of a second a row to
# explain (every class's tree paths), and the sum is the same check at any size.
SMALLER = {"random_forest": {"classifier__n_estimators": 25, "classifier__max_depth": 8}}


@pytest.fixture(scope="module")
def splits(pipeline_outputs: Path, bundle: ModelBundle) -> tuple[pd.DataFrame, pd.DataFrame]:
    read = bundle.schema.read_csv
    return read(pipeline_outputs / Paths.train_data), read(pipeline_outputs / Paths.test_data)


def fitted(bundle: ModelBundle, family: str, train: pd.DataFrame, seed: int) -> ModelBundle:
    """The bundle with a model of `family` fitted on the training split in its place."""
    schema = bundle.schema.subset(bundle.features)
    model = build_model(bundle.task, family, schema, seed)  # type: ignore[arg-type]
    model.set_params(**SMALLER.get(family, {}))
    features = train[list(bundle.features)]
    model.fit(features, bundle.encode(train[bundle.target]))
    return dataclasses.replace(
        bundle, pipeline=model, family=family, background=preprocessed_mean(model, features)
    )


def as_answered(explainer: Explainer, outputs: np.ndarray) -> np.ndarray:
    """Every output's base plus contributions (rows x outputs) as the task's outputs: the
    positive class's probability, each class's probability, or the estimate."""
    if explainer.scale == "log_odds" and outputs.shape[1] == 1:
        return 1 / (1 + np.exp(-outputs[:, 0]))
    if explainer.scale == "log_odds":
        exponent = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        return exponent / exponent.sum(axis=1, keepdims=True)
    if explainer.bundle.task.name == "binary":  # a forest's probability of each class
        return outputs[:, list(explainer.classes).index(1)]
    return outputs[:, 0] if explainer.classes is None else outputs


def answered(bundle: ModelBundle, explainer: Explainer, table: pd.DataFrame) -> np.ndarray:
    """The task's outputs, of the classes the model has an output for."""
    outputs = bundle.outputs(table)
    if outputs.ndim == 2:
        return outputs[:, np.asarray(explainer.classes, dtype=int)]
    return outputs


def assert_adds_up(bundle: ModelBundle, table: pd.DataFrame) -> Any:
    explainer = Explainer(bundle)
    base, contributions = explainer.every_output(explainer.table_matrix(table))
    assert contributions.shape[:2] == (len(table), len(bundle.features))
    outputs = base + contributions.sum(axis=1)
    expected = answered(bundle, explainer, table)
    assert np.abs(as_answered(explainer, outputs) - expected).max() <= TOLERANCE

    decisions = bundle.decide(bundle.outputs(table))
    found = explainer.explain(explainer.table_matrix(table), decisions)
    toward = explainer.bundle.task.explained_codes(decisions)
    if base.size == 1:
        column = np.zeros(len(table), dtype=int)
    else:  # each row toward its own class: the one decided
        assert toward is not None and found.codes is not None
        assert np.array_equal(found.codes, toward)
        column = np.searchsorted(explainer.classes, found.codes)
    assert np.abs(found.output - outputs[np.arange(len(table)), column]).max() <= TOLERANCE
    return explainer


@pytest.mark.parametrize("family", get_args(ModelFamily))
def test_contributions_add_up_to_the_model_output_for_each_family(
    family: str, bundle: ModelBundle, splits: tuple[pd.DataFrame, pd.DataFrame], params: Params
) -> None:
    train, test = splits
    assert_adds_up(fitted(bundle, family, train, params.split.seed), test)


def test_the_trained_model_explains_requests_as_tables(
    bundle: ModelBundle, splits: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    """The service explains JSON records, batch scoring explains tables: the same numbers, also
    for missing values and categories never seen in training."""
    _, test = splits
    explainer = assert_adds_up(bundle, test)
    records = json.loads(test.head(40)[bundle.schema.feature_names].to_json(orient="records"))
    for position, column in enumerate(bundle.schema.columns):
        record = records[position % len(records)]
        record[column.name] = "never-seen" if column.type == "category" else None
    table = frame_of_records(records, bundle.schema)
    decisions = bundle.decide(bundle.outputs(table))
    from_records = explainer.explain(explainer.records_matrix(records), decisions)
    from_table = explainer.explain(explainer.table_matrix(table), decisions)
    assert np.abs(from_records.contributions - from_table.contributions).max() <= TOLERANCE
    assert np.abs(from_records.base - from_table.base).max() <= TOLERANCE


def test_a_model_it_cannot_explain_is_refused_saying_why(
    bundle: ModelBundle, splits: tuple[pd.DataFrame, pd.DataFrame], params: Params
) -> None:
    with pytest.raises(ConfigError, match="no explanation for the model family 'stand-in'"):
        Explainer(dataclasses.replace(bundle, family="stand-in"))
    linear = fitted(bundle, "logistic_regression", splits[0], params.split.seed)
    with pytest.raises(ConfigError, match=r"predates explanations.*dvc repro -f train"):
        Explainer(dataclasses.replace(linear, background=None))
