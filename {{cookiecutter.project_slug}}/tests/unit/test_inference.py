"""The fast inference path of every model family equals its scikit-learn pipeline, missing
values and unseen categories included, and a pipeline of another shape falls back to it."""

import json
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from {{ cookiecutter.package_name }}.bundle import ModelBundle
from {{ cookiecutter.package_name }}.config import ModelFamily, load_params
from {{ cookiecutter.package_name }}.inference import compile_fast_path, records_scorer
from {{ cookiecutter.package_name }}.io import load_table, write_table
from {{ cookiecutter.package_name }}.pipeline.curate import curate
from {{ cookiecutter.package_name }}.pipeline.train import build_model
from {{ cookiecutter.package_name }}.schema import load_schema
from {{ cookiecutter.package_name }}.task import (
    BinaryClassification,
    MulticlassClassification,
    Regression,
    Task,
    binary_target,
    class_costs,
)
from tests.conftest import frame_of_records

pytestmark = pytest.mark.unit
BINARY = BinaryClassification(positive_label=1, negative_label=0, cost_fp=5, cost_fn=1)
CLASSES = ("short", "medium", "long")
TASKS: dict[str, Task] = {
    "binary": BINARY,
    "multiclass": MulticlassClassification(CLASSES, class_costs({}, CLASSES)),
    "regression": Regression(cost_under=1, cost_over=1),
}


def target_of(task: str, table: pd.DataFrame, binary: pd.Series | None, schema: Any) -> np.ndarray:
    """The binary target (a binary project's own), or one of another task made from the table:
    its last number column (whatever the data) above its median, as three classes, or as a
    number."""
    if task == "binary" and binary is not None:
        return binary.to_numpy()
    number = table[schema.numeric_features[-1]].astype("float64")
    number = number.fillna(number.median())
    if task == "binary":
        return (number > number.median()).astype(int).to_numpy()
    if task == "regression":
        return number.to_numpy()
    return pd.qcut(number.rank(method="first"), 3, labels=False).astype(int).to_numpy()


def training_table(workspace: Path) -> tuple[pd.DataFrame, pd.Series | None, Any]:
    """The shipped data, curated and typed by the schema, a few values knocked out."""
    params = load_params()
    schema = load_schema(params.data.schema_file)
    curated, _ = curate(
        load_table(params.data.source, params.data.query),
        params.curate.missing_tokens,
        params.data.drop_columns,
    )
    write_table(curated, workspace / "curated.csv")
    table = schema.read_csv(workspace / "curated.csv")
    table[schema.numeric_features[0]] = table[schema.numeric_features[0]].astype("float64")
    table.loc[table.index[::7], schema.numeric_features[0]] = np.nan
    if params.data.task != "binary":
        return table, None, schema
    return table, binary_target(table[schema.target], params.data.positive_label), schema


def bundle_of(pipeline: Any, schema: Any, task: Task = BINARY) -> ModelBundle:
    return ModelBundle(
        pipeline=pipeline,
        schema=schema,
        features=tuple(schema.feature_names),
        task=task,
        decision=task.default_decision,
        family="test",
    )


def client_records(table: pd.DataFrame, schema: Any) -> list[dict]:
    records = json.loads(table[schema.feature_names].to_json(orient="records"))
    category = schema.categorical_features[0]
    for record in records[::5]:
        record[category] = "never-seen-in-training"
    for record in records[1::5]:
        record[category] = None
    return records


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("family", get_args(ModelFamily))
def test_fast_path_equals_the_pipeline(workspace: Path, family: ModelFamily, task: str) -> None:
    table, binary, schema = training_table(workspace)
    target = target_of(task, table, binary, schema)
    model = build_model(TASKS[task], family, schema, seed=0)
    bundle = bundle_of(model.fit(table[schema.feature_names], target), schema, TASKS[task])
    records = client_records(table, schema)
    scorer, path = records_scorer(bundle)
    assert path.startswith("fast path")
    expected = bundle.outputs(frame_of_records(records, schema))
    assert scorer(records).shape == expected.shape == (len(records), *expected.shape[1:])
    if task == "multiclass":
        assert expected.shape[1] == len(CLASSES)
    assert np.abs(scorer(records) - expected).max() <= 1e-6 * max(1.0, np.abs(expected).max())


def test_another_pipeline_shape_falls_back_to_scikit_learn(workspace: Path) -> None:
    table, binary, schema = training_table(workspace)
    target = target_of("binary", table, binary, schema)
    model = build_model(BINARY, "logistic_regression", schema, seed=0)
    custom = Pipeline([("identity", FunctionTransformer()), *model.steps])
    custom.fit(table[schema.feature_names], target)
    assert compile_fast_path(custom, BINARY) is None
    bundle = bundle_of(custom, schema)
    scorer, path = records_scorer(bundle)
    assert path == "scikit-learn pipeline"
    complete = table.dropna(subset=schema.numeric_features).head(20)  # valid requests
    records = json.loads(complete[schema.feature_names].to_json(orient="records"))
    assert np.abs(scorer(records) - bundle.outputs(complete)).max() <= 1e-12
