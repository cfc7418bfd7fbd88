"""Checks on the data the pipeline produced: contract, quality, and no train/test leakage."""

from pathlib import Path

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
            ("reference", Paths.reference_data),
        )
    }


def test_manifest_matches_the_raw_snapshot(pipeline_outputs: Path) -> None:
    manifest = read_json(pipeline_outputs / Paths.raw_manifest)
    assert manifest["sha256"] == file_sha256(pipeline_outputs / Paths.raw_data)
    assert manifest["rows"] == len(pd.read_csv(pipeline_outputs / Paths.raw_data))


@pytest.mark.parametrize("name", ["validated", "train", "test", "reference"])
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
    shares = [
        part[schema.target].value_counts(normalize=True).sort_index() for part in (train, test)
    ]
    pd.testing.assert_series_equal(
        shares[0], shares[1], check_exact=False, atol=0.02, check_names=False
    )


def test_reference_is_a_sample_of_train(splits, params) -> None:
    reference, train = splits["reference"], splits["train"]
    assert len(reference) == min(params.split.reference_size, len(train))
    train_rows = set(pd.util.hash_pandas_object(train, index=False))
    assert set(pd.util.hash_pandas_object(reference, index=False)) <= train_rows
