import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.pipeline.curate import curate

pytestmark = pytest.mark.unit


def test_curate_normalises_missing_tokens_types_and_duplicates() -> None:
    raw = pd.DataFrame(
        {
            "id": [1, 2, 3, 3],
            "savings": [" little", "not_known", "?", "?"],
            "amount": ["100", " 250 ", "n/a", "n/a"],
            "risk": [1, 0, 1, 1],
        }
    )
    curated, report = curate(raw, ["not_known", "?", "n/a"], drop_columns=["id"])
    assert list(curated.columns) == ["savings", "amount", "risk"]
    assert curated["savings"].tolist()[0] == "little"
    assert curated["savings"].isna().sum() == 2
    assert pd.api.types.is_numeric_dtype(curated["amount"])
    assert curated["amount"].tolist()[:2] == [100, 250]
    assert report == {
        "rows_in": 4,
        "rows_out": 3,
        "duplicates_dropped": 1,
        "duplicate_share": 0.25,
        "missing_tokens_replaced": 5,
    }


def test_text_that_is_not_a_number_is_left_for_validation() -> None:
    curated, _ = curate(pd.DataFrame({"age": ["30", "abc"]}), [], [])
    assert curated["age"].tolist() == ["30", "abc"]


def test_unknown_drop_column_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"data\.drop_columns: \['customer_id'\]"):
        curate(pd.DataFrame({"age": [30]}), [], ["customer_id"])


def test_empty_table_passes_through() -> None:
    curated, report = curate(pd.DataFrame(), ["?"], [])
    assert curated.empty and report["rows_in"] == 0
