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

from {{ cookiecutter.package_name }}.bundle import ModelBundle, binary_target
from {{ cookiecutter.package_name }}.config import ModelFamily, load_params
from {{ cookiecutter.package_name }}.inference import compile_fast_path, records_scorer
from {{ cookiecutter.package_name }}.io import load_table, write_table
from {{ cookiecutter.package_name }}.pipeline.curate import curate
from {{ cookiecutter.package_name }}.pipeline.train import build_model
from {{ cookiecutter.package_name }}.schema import load_schema
from {{ cookiecutter.package_name }}.task import BinaryClassification, Decision
from tests.conftest import frame_of_records

pytestmark = pytest.mark.unit
BINARY = BinaryClassification(positive_label=1, negative_label=0, cost_fp=5, cost_fn=1)


def training_table(workspace: Path) -> tuple[pd.DataFrame, pd.Series, Any]:
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
    target = binary_target(table[schema.target], params.data.positive_label)
    return table, target, schema


def bundle_of(pipeline: Any, schema: Any) -> ModelBundle:
    return ModelBundle(
        pipeline=pipeline,
        schema=schema,
        features=tuple(schema.feature_names),
        task=BINARY,
        decision=Decision(0.5, "params"),
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


@pytest.mark.parametrize("family", get_args(ModelFamily))
def test_fast_path_equals_the_pipeline(workspace: Path, family: ModelFamily) -> None:
    table, target, schema = training_table(workspace)
    pipeline = build_model(BINARY, family, schema, seed=0).fit(table[schema.feature_names], target)
    bundle = bundle_of(pipeline, schema)
    records = client_records(table, schema)
    scorer, path = records_scorer(bundle)
    assert path.startswith("fast path")
    expected = bundle.outputs(frame_of_records(records, schema))
    assert np.abs(scorer(records) - expected).max() <= 1e-6


def test_another_pipeline_shape_falls_back_to_scikit_learn(workspace: Path) -> None:
    table, target, schema = training_table(workspace)
    model = build_model(BINARY, "logistic_regression", schema, seed=0)
    custom = Pipeline([("identity", FunctionTransformer()), *model.steps])
    custom.fit(table[schema.feature_names], target)
    assert compile_fast_path(custom) is None
    bundle = bundle_of(custom, schema)
    scorer, path = records_scorer(bundle)
    assert path == "scikit-learn pipeline"
    complete = table.dropna(subset=schema.numeric_features).head(20)  # valid requests
    records = json.loads(complete[schema.feature_names].to_json(orient="records"))
    assert np.abs(scorer(records) - bundle.outputs(complete)).max() <= 1e-12
