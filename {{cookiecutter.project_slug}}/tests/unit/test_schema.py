from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.schema import infer_schema, load_schema
from tests.conftest import valid_record

pytestmark = pytest.mark.unit


def _first(schema, predicate):
    return next(column for column in schema.columns if predicate(column))


def test_schema_types_cover_every_feature(schema) -> None:
    assert set(schema.categorical_features) | set(schema.numeric_features) == set(
        schema.feature_names
    )
    assert schema.target not in schema.feature_names
    assert set(schema.dtypes) == {*schema.feature_names, schema.target}


def test_request_model_accepts_a_valid_record(schema) -> None:
    record = schema.request_model()(**valid_record(schema))
    assert record.model_dump() == valid_record(schema)


def test_nullable_fields_may_be_left_out(schema) -> None:
    nullable = [column.name for column in schema.columns if column.nullable]
    record = {k: v for k, v in valid_record(schema).items() if k not in nullable}
    dumped = schema.request_model()(**record).model_dump()
    assert all(dumped[name] is None for name in nullable)


def _bad_records(schema):
    category = _first(schema, lambda c: c.type == "category")
    number = _first(schema, lambda c: c.type != "category")
    bounded = _first(schema, lambda c: c.type != "category" and c.max is not None)
    required = _first(schema, lambda c: not c.nullable)
    return {
        "unknown category": ({category.name: "__no_such_category__"}, category.name),
        "out of range": ({bounded.name: bounded.max + 1}, bounded.name),
        "wrong type": ({number.name: "not a number"}, number.name),
        "null where required": ({required.name: None}, required.name),
        "unknown field": ({"__unknown_field__": 1}, "__unknown_field__"),
    }


@pytest.mark.parametrize(
    "case",
    ["unknown category", "out of range", "wrong type", "null where required", "unknown field"],
)
def test_request_model_names_the_bad_field(schema, case: str) -> None:
    change, field = _bad_records(schema)[case]
    with pytest.raises(ValidationError) as caught:
        schema.request_model()(**{**valid_record(schema), **change})
    assert {error["loc"][0] for error in caught.value.errors()} == {field}


def test_missing_field_is_refused(schema) -> None:
    required = _first(schema, lambda c: not c.nullable).name
    record = {k: v for k, v in valid_record(schema).items() if k != required}
    with pytest.raises(ValidationError, match=required):
        schema.request_model()(**record)


def _edge_values(column) -> list[object]:
    """Values on both sides of each rule of one column's request field."""
    if column.type == "category":
        return [column.categories[0], column.categories[-1], "__no_such_category__", None]
    values: list[object] = [None, float("inf"), float("nan"), "not a number", 2.5, 3]
    for bound in (column.min, column.max):
        if bound is not None:
            values += [bound, bound - 1, bound + 1, bound - 0.5, bound + 0.5]
    return values


def test_batch_checks_refuse_exactly_the_records_the_request_model_refuses(schema) -> None:
    """Every column's values around each of its rules, one changed field per record: a batch
    row gets a problem naming that column if and only if the service refuses the record."""
    Record = schema.request_model()
    changes = [
        (column.name, value)
        for column in schema.columns
        for value in _edge_values(column)
        if not (isinstance(value, float) and value != value)  # NaN: JSON cannot carry it
    ]
    records = [{**valid_record(schema), name: value} for name, value in changes]
    _, problems = schema.checked_rows(pd.DataFrame(records, dtype=object))
    refused = []
    for record in records:
        try:
            Record(**record)
            refused.append(False)
        except ValidationError:
            refused.append(True)
    assert (problems != "").tolist() == refused
    assert sum(refused) >= len(schema.columns)  # each column had something to refuse
    for (name, value), problem in zip(changes, problems, strict=True):
        assert not problem or problem.startswith(f"{name}: "), (name, value, problem)


def test_batch_checks_type_the_columns_as_the_model_reads_them(schema) -> None:
    numbers = schema.numeric_features
    frame = pd.DataFrame([valid_record(schema)] * 3, dtype=object)
    typed, problems = schema.checked_rows(frame.assign(__extra__=1))
    assert list(typed.columns) == schema.feature_names  # columns the schema does not name: left
    assert (problems == "").all()
    assert all(typed[name].dtype == "float64" for name in numbers)
    with pytest.raises(KeyError):
        schema.checked_rows(frame.drop(columns=schema.feature_names[0]))


def test_inferred_schema_round_trips_through_yaml(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            "income": [1200.5, 3400.0, None, 2100.25],
            "children": [0, 2, 1, 3],
            "region": ["north", "south", "north", None],
            "churned": ["yes", "no", "no", "yes"],
        }
    )
    schema, _ = infer_schema(table, "churned")
    (tmp_path / "schema.yaml").write_text(schema.to_yaml())
    assert load_schema(tmp_path / "schema.yaml") == schema
    assert schema.column("income").type == "float" and schema.column("income").nullable
    assert schema.column("children").type == "integer" and schema.column("children").max == 3
    assert schema.column("region").categories == ("north", "south")
    assert schema.target_values == ("no", "yes")


def test_inference_lists_free_text_columns() -> None:
    table = pd.DataFrame(
        {
            "note": [f"text {i}" for i in range(60)],
            "code": [f"id-{i}" for i in range(60)],
            "region": ["north", "south"] * 30,
            "y": [0, 1] * 30,
        }
    )
    schema, problems = infer_schema(table, "y")
    assert schema.feature_names == ["region"]  # the free-text columns are left out of the draft
    assert [problem.split(":")[-1].strip() for problem in problems] == [
        "add 'note' to data.drop_columns",
        "add 'code' to data.drop_columns",
    ]
    with pytest.raises(ConfigError, match=r"data\.target: column 'label' is not in the data"):
        infer_schema(pd.DataFrame({"x": [1]}), "label")


def test_request_model_may_leave_out_the_optional_columns(schema) -> None:
    required = _first(schema, lambda c: not c.nullable).name
    record = {k: v for k, v in valid_record(schema).items() if k != required}
    with pytest.raises(ValidationError):
        schema.request_model()(**record)
    assert schema.request_model(optional=(required,))(**record).model_dump()[required] is None


def test_subset_keeps_the_named_columns_and_the_target(schema) -> None:
    names = schema.feature_names[:2]
    subset = schema.subset(names)
    assert subset.feature_names == names
    assert (subset.target, subset.target_values) == (schema.target, schema.target_values)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("columns: {}\n", "schema.yaml: target: Field required"),
        (
            "target: {name: y, values: [0]}\ncolumns: {}\n",
            "target.values: Value error, must list two or more distinct classes, got [0]",
        ),
        (
            "target: {name: y, values: [0, 1]}\ncolumns: {x: {type: text}}\n",
            "columns.x.type: Input should be 'integer', 'float' or 'category'",
        ),
        (
            "target: {name: y, values: [0, 1]}\ncolumns: {x: {type: category}}\n",
            "columns.x: Value error, a category column needs a list of categories",
        ),
        (
            "target: {name: y, values: [0, 1]}\ncolumns: {x: {type: float, maximum: 3}}\n",
            "columns.x.maximum: Extra inputs are not permitted",
        ),
        ("target: {name: y, values: [0, 1]\n", "is not valid YAML"),
        ("[]\n", "(top level): Input should be a valid dictionary"),
    ],
)
def test_malformed_schema_files_are_refused_naming_the_key(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "schema.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_schema(tmp_path / "schema.yaml")
    assert message in str(caught.value)


def test_a_missing_schema_file_says_how_to_draft_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run `make schema`"):
        load_schema(tmp_path / "schema.yaml")


def test_categories_are_read_as_text(tmp_path: Path) -> None:
    (tmp_path / "schema.yaml").write_text(
        "target: {name: y, values: [0, 1]}\n"
        "columns: {grade: {type: category, categories: [1, 2, A]}, n: {type: integer, max: 3}}\n"
    )
    schema = load_schema(tmp_path / "schema.yaml")
    assert schema.column("grade").categories == ("1", "2", "A")
    assert schema.column("n").max == 3 and isinstance(schema.column("n").max, int)


@pytest.mark.parametrize(
    ("task", "target", "change"),
    [
        ("binary", ["a", "b", "c"] * 20, "set data.task: multiclass"),
        ("binary", [float(i) for i in range(60)], "set data.task: regression"),
        ("multiclass", ["a", "b"] * 30, "set data.task: binary"),
        ("multiclass", list(range(60)), "set data.task: regression"),
        ("regression", ["low", "high", "mid"] * 20, "set data.task to binary or multiclass"),
        ("regression", [0, 1] * 30, "set data.task: binary"),
    ],
)
def test_a_target_that_does_not_fit_the_task_names_the_key(
    task: str, target: list, change: str
) -> None:
    table = pd.DataFrame({"x": range(60), "y": target})
    schema, problems = infer_schema(table, "y", task)
    assert len(problems) == 1 and problems[0].startswith("data.target: 'y' ")
    assert problems[0].endswith(change) or change in problems[0]
    assert schema.feature_names == ["x"]  # the rest is still drafted, in the same pass


def test_each_task_drafts_its_target(tmp_path: Path) -> None:
    table = pd.DataFrame({"x": range(60), "grade": ["a", "b", "c"] * 20, "price": range(60)})
    classes, problems = infer_schema(table.drop(columns="price"), "grade", "multiclass")
    assert not problems and classes.target_values == ("a", "b", "c")
    number, problems = infer_schema(table.drop(columns="grade"), "price", "regression")
    assert not problems and number.target_values == ()
    (tmp_path / "schema.yaml").write_text(number.to_yaml())
    assert "values" not in (tmp_path / "schema.yaml").read_text()
    assert load_schema(tmp_path / "schema.yaml") == number
    assert number.dtypes["price"] == "float64"
    frame = number.to_pandera().validate(table.drop(columns="grade"))
    assert frame["price"].dtype == "float64"
