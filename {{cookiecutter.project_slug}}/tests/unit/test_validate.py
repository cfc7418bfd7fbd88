import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.io import load_table
from {{ cookiecutter.package_name }}.pipeline.curate import curate
from {{ cookiecutter.package_name }}.pipeline.validate import validate

pytestmark = pytest.mark.unit


@pytest.fixture
def curated(params) -> pd.DataFrame:
    table, _ = curate(
        load_table(params.data.source, params.data.query),
        params.curate.missing_tokens,
        params.data.drop_columns,
    )
    return table


def _first(schema, predicate):
    return next(column for column in schema.columns if predicate(column))


def test_project_data_passes_and_comes_back_typed(curated, schema, params) -> None:
    violations, typed = validate(curated, schema, params)
    assert violations == []
    assert typed is not None
    for name, dtype in schema.dtypes.items():
        assert str(typed[name].dtype) == dtype, name


def test_every_violation_is_listed_with_its_column(curated, schema, params) -> None:
    category = _first(schema, lambda c: c.type == "category")
    number = _first(schema, lambda c: c.type != "category" and c.max is not None)
    other_number = _first(schema, lambda c: c.type != "category" and c.name != number.name)
    required = _first(
        schema,
        lambda c: not c.nullable and c.name not in (category.name, number.name, other_number.name),
    )
    broken = curated.copy().astype(object)
    broken.loc[0, category.name] = "__no_such_category__"
    broken.loc[1, number.name] = number.max + 1000
    broken.loc[2, other_number.name] = "abc"
    broken.loc[3, required.name] = None
    broken["__surprise__"] = 1
    violations, typed = validate(broken, schema, params)
    assert typed is None
    text = "\n".join(violations)
    assert f"column '{category.name}': values outside the allowed set" in text
    assert "__no_such_category__" in text
    assert f"column '{number.name}': values above the maximum {number.max}" in text
    assert f"column '{other_number.name}': values of the wrong type" in text and "abc" in text
    assert f"column '{required.name}': missing values where none are allowed" in text
    assert "unexpected column (not in the schema): '__surprise__'" in text


def test_missing_column_is_named(curated, schema, params) -> None:
    column = schema.feature_names[0]
    violations, _ = validate(curated.drop(columns=[column]), schema, params)
    assert f"missing column: '{column}'" in violations


@pytest.mark.parametrize("table", [pd.DataFrame(), pd.DataFrame({"a": []})])
def test_empty_data_is_a_violation(table, schema, params) -> None:
    violations, typed = validate(table, schema, params)
    assert typed is None
    assert violations[0].startswith("the dataset is empty")


def test_quality_rules(curated, schema, params) -> None:
    rules = params.validate_
    column = schema.feature_names[0]
    sparse = curated.copy()
    sparse[column] = sparse[column].where(sparse.index % 10 == 0)  # 90% missing
    violations, _ = validate(
        sparse, schema, params, duplicate_share=rules.max_duplicate_share + 0.01
    )
    text = "\n".join(violations)
    assert "duplicate rows" in text and "validate.max_duplicate_share" in text
    assert f"column '{column}': 90.0% missing" in text
    assert f"add '{column}' to data.drop_columns" in text

    if not schema.target_values:
        return  # a number: no classes to balance
    labels = curated[schema.target].astype(str)
    rare_class = str(schema.target_values[0])
    rare, common = curated[labels == rare_class], curated[labels != rare_class]
    imbalanced = pd.concat([common, rare.head(max(1, int(len(common) * 0.01)))])
    violations, _ = validate(imbalanced, schema, params)
    assert any("the rarest class is" in violation for violation in violations), violations
    violations, _ = validate(common, schema, params)
    assert any(f"class '{rare_class}'" in v and "never occurs" in v for v in violations)
