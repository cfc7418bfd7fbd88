"""The explore stage's outputs, and notebooks/explore.ipynb executed headless on them."""

from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from {{ cookiecutter.package_name }}.bundle import binary_target
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
    table = schema.read_csv(pipeline_outputs / Paths.validated_data)
    positive = binary_target(table[schema.target], params.data.positive_label)
    assert explored["rows"] == len(table)
    assert explored["positive_rate"] == pytest.approx(positive.mean(), abs=1e-4)
    for name in schema.categorical_features:
        groups = {row["group"]: row for row in explored["target_rate"][name]}
        expected = positive.groupby(table[name].astype("string").fillna("(missing)")).mean()
        assert set(groups) == set(expected.index)
        for group, rate in expected.items():
            assert groups[group]["positive_rate"] == pytest.approx(rate, abs=1e-4)
        assert sum(row["rows"] for row in groups.values()) == len(table)
    assert set(explored["association_with_target"]) == set(schema.feature_names)
    assert all(0 <= value <= 1 for value in explored["association_with_target"].values())


def test_evidently_report_covers_every_column(pipeline_outputs: Path, schema: Schema) -> None:
    html = (pipeline_outputs / Paths.explore_report).read_text()
    for name in [*schema.feature_names, schema.target]:
        assert f'"header": "{name}"' in html, f"no summary of column {name} in the report"
    assert "Dataset Correlations" in html
    plot = pd.read_csv(pipeline_outputs / Paths.plots / "target_rate.csv")
    assert plot["positive_rate"].between(0, 1).all()
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
