"""The service's fast inference path answers exactly as the trained pipeline does: every row of
the test split, sent as the JSON records a client sends, plus rows with missing values and
categories never seen in training."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.bundle import ModelBundle
from {{ cookiecutter.package_name }}.config import Paths
from {{ cookiecutter.package_name }}.inference import compile_fast_path, records_scorer
from tests.conftest import frame_of_records

pytestmark = pytest.mark.model

TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def test_split(pipeline_outputs: Path, bundle: ModelBundle) -> pd.DataFrame:
    return bundle.schema.read_csv(pipeline_outputs / Paths.test_data)


def records_of(table: pd.DataFrame, bundle: ModelBundle) -> list[dict]:
    """Rows as a client's JSON records: missing values as null."""
    return json.loads(table[bundle.schema.feature_names].to_json(orient="records"))


def assert_same_answers(bundle: ModelBundle, table: pd.DataFrame, records: list[dict]) -> None:
    scorer, _ = records_scorer(bundle)
    fast = scorer(records)
    reference = bundle.outputs(table)
    assert np.abs(fast - reference).max() <= TOLERANCE
    assert (bundle.decide(fast) == bundle.decide(reference)).all()


def test_the_trained_model_gets_the_fast_path(bundle: ModelBundle) -> None:
    assert compile_fast_path(bundle.pipeline, bundle.task) is not None, (
        "train.build_model's pipeline changed shape: inference.compile_fast_path no longer"
        " recognises it, so the service falls back to the slower scikit-learn path"
    )


def test_fast_path_matches_the_pipeline_on_the_whole_test_split(
    bundle: ModelBundle, test_split: pd.DataFrame
) -> None:
    assert_same_answers(bundle, test_split, records_of(test_split, bundle))


def test_fast_path_matches_with_missing_values_and_unseen_categories(
    bundle: ModelBundle, test_split: pd.DataFrame
) -> None:
    records = records_of(test_split.head(60), bundle)
    for position, column in enumerate(bundle.schema.columns):
        for row, record in enumerate(records[position::3]):
            unseen = column.type == "category" and row % 2 == 0
            record[column.name] = "never-seen-in-training" if unseen else None
    assert_same_answers(bundle, frame_of_records(records, bundle.schema), records)
