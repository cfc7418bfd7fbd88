"""The explore stage's outputs, and notebooks/explore.ipynb executed headless on them."""

from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from {{ cookiecutter.package_name }}.config import Params, Paths
from {{ cookiecutter.package_name }}.io import read_json
from {{ cookiecutter.package_name }}.schema import Schema

pytestmark = pytest.mark.data

NOTEBOOK = Path("notebooks/explore.ipynb")


@pytest.fixture(scope="module")
def explored(pipeline_outputs: Path) -> dict:
    return read_json(pipeline_outputs / Paths.explore_summary)


def test_target_rates_match_the_validated_data(
    pipeline_outputs: Path, explored: dict, schema: Schema, params: Params
) -> None:
    """The target's mean columns (binary: the positive rate; multiclass: each class's share;
    regression: the mean) overall and per category, recomputed here from the data."""
    table = schema.read_csv(pipeline_outputs / Paths.validated_data)
    target = table[schema.target]
    columns = params.task(schema.target_values).target_columns(target)
    assert explored["rows"] == len(table) and explored["task"] == params.data.task
    if params.data.task == "binary":
        expected_rate = (target.astype(str) == str(params.data.positive_label)).mean()
        assert explored["positive_rate"] == pytest.approx(expected_rate, abs=1e-4)
    elif params.data.task == "regression":
        assert explored["target_mean"] == pytest.approx(target.mean(), abs=1e-3)
    for name in schema.categorical_features:
        groups = {row["group"]: row for row in explored["target_rate"][name]}
        expected = columns.groupby(table[name].astype("string").fillna("(missing)")).mean()
        assert set(groups) == set(expected.index)
        for group, means in expected.iterrows():
            for column, mean in means.items():
                assert groups[group][column] == pytest.approx(mean, abs=1e-3), (group, column)
        assert sum(row["rows"] for row in groups.values()) == len(table)
    assert set(explored["association_with_target"]) == set(schema.feature_names)
    assert all(0 <= value <= 1 for value in explored["association_with_target"].values())


def test_evidently_report_covers_every_column(
    pipeline_outputs: Path, schema: Schema, params: Params
) -> None:
    html = (pipeline_outputs / Paths.explore_report).read_text()
    for name in [*schema.feature_names, schema.target]:
        assert f'"header": "{name}"' in html, f"no summary of column {name} in the report"
    assert "Dataset Correlations" in html
    plot = pd.read_csv(pipeline_outputs / Paths.plots / "target_rate.csv")
    columns = params.task(schema.target_values).target_columns(pd.Series([], dtype=object))
    assert list(plot.columns) == ["group", *columns.columns]
    if schema.target_values:  # shares of rows
        shares = plot[list(columns.columns)].to_numpy(dtype=float)
        assert ((shares >= 0) & (shares <= 1)).all()
    assert set(plot["group"].str.split("=").str[0]) == set(schema.categorical_features)


def test_notebook_runs_headless_on_the_pipeline_outputs(
    pipeline_outputs: Path, explored: dict
) -> None:
    notebook = nbformat.read(pipeline_outputs / NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "commit notebooks without outputs: they would go stale against the data"
    )
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(pipeline_outputs / NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError naming the cell that failed
    printed = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert f"{explored['rows']} rows" in printed
    tables = "".join(
        output.get("data", {}).get("text/plain", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    strongest = next(iter(explored["association_with_target"]))
    assert strongest in tables
