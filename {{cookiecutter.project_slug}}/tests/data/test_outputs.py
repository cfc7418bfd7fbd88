"""Checks on the data the pipeline produced: contract, quality, and no train/test leakage."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.config import Paths
from {{ cookiecutter.package_name }}.io import file_sha256, read_json
from {{ cookiecutter.package_name }}.pipeline.validate import validate

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def splits(pipeline_outputs: Path, schema) -> dict[str, pd.DataFrame]:
    return {
        name: schema.read_csv(pipeline_outputs / path)
        for name, path in (
            ("validated", Paths.validated_data),
            ("train", Paths.train_data),
            ("test", Paths.test_data),
        )
    }


def test_manifest_matches_the_raw_snapshot(pipeline_outputs: Path) -> None:
    manifest = read_json(pipeline_outputs / Paths.raw_manifest)
    assert manifest["sha256"] == file_sha256(pipeline_outputs / Paths.raw_data)
    assert manifest["rows"] == len(pd.read_csv(pipeline_outputs / Paths.raw_data))


@pytest.mark.parametrize("name", ["validated", "train", "test"])
def test_every_split_honours_the_schema(splits, schema, params, name: str) -> None:
    violations, _ = validate(splits[name], schema, params)
    assert violations == []


def test_no_duplicates_and_missing_within_limits(splits, params) -> None:
    table = splits["validated"]
    assert not table.duplicated().any()
    assert table.isna().mean().max() <= params.validate_.max_missing_share


def test_no_row_in_both_train_and_test(splits) -> None:
    train_rows = set(pd.util.hash_pandas_object(splits["train"], index=False))
    test_rows = set(pd.util.hash_pandas_object(splits["test"], index=False))
    assert train_rows.isdisjoint(test_rows)
    assert len(splits["train"]) + len(splits["test"]) == len(splits["validated"])


def test_split_is_stratified_with_the_configured_share(splits, schema, params) -> None:
    train, test = splits["train"], splits["test"]
    assert len(test) / (len(train) + len(test)) == pytest.approx(params.split.test_size, abs=0.01)
    if not schema.target_values:  # a number: a random split, so like means (within 0.15 sd)
        values = [part[schema.target].astype(float) for part in (train, test)]
        spread = pd.concat(values).std()
        assert abs(values[0].mean() - values[1].mean()) <= 0.15 * spread
        return
    shares = [
        part[schema.target].value_counts(normalize=True).sort_index() for part in (train, test)
    ]
    pd.testing.assert_series_equal(
        shares[0], shares[1], check_exact=False, atol=0.02, check_names=False
    )


def test_reference_is_the_test_split_scored_by_the_model(
    pipeline_outputs: Path, splits, bundle
) -> None:
    """Monitoring's reference: rows the model never trained on, with its decisions."""
    reference = pd.read_csv(pipeline_outputs / Paths.reference_data)
    test = splits["test"]
    assert len(reference) == len(test)
    features = bundle.schema.feature_names
    pd.testing.assert_frame_equal(
        reference[features].astype(str), test[features].reset_index(drop=True).astype(str)
    )
    outputs = bundle.task.read_outputs(reference, "prediction")
    if bundle.schema.target_values:  # probabilities
        assert ((outputs >= 0) & (outputs <= 1)).all()
    decided = [bundle.label(d) for d in bundle.decide(bundle.outputs(test))]
    if bundle.schema.target_values:
        assert reference["prediction"].astype(str).tolist() == [str(d) for d in decided]
    else:  # a number, through a CSV file
        np.testing.assert_allclose(reference["prediction"].astype(float), decided, rtol=1e-12)
    if bundle.task.output_names():  # the logged outputs are the model's, to 1e-9
        np.testing.assert_allclose(outputs, bundle.outputs(test), atol=1e-9)
