"""Stage 4, explore: the validated data against the target, before any model sees it. Evidently's
data summary (distributions, missing values) and correlations as reports/explore.html, and the
figures a reader checks first as reports/explore.json: the target by category and by numeric
quartile (the positive rate, each class's share or the mean: task.py), each feature's association
with the target, and missing shares.
notebooks/explore.ipynb reads these outputs; it never keeps a copy of the data."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from {{ cookiecutter.package_name }}.config import Params, Paths
from {{ cookiecutter.package_name }}.io import stage_outputs
from {{ cookiecutter.package_name }}.progress import step
from {{ cookiecutter.package_name }}.schema import Schema, load_schema
from {{ cookiecutter.package_name }}.task import Task

# Evidently's DataSummaryPreset without its auto-generated tests: exploring is not a gate (and
# monitoring's gate is its own, in monitor.thresholds).
SUMMARY_WITHOUT_TESTS: dict[str, Any] = {
    name: []
    for name in (
        "row_count_tests",
        "column_count_tests",
        "duplicated_row_count_tests",
        "duplicated_column_count_tests",
        "almost_duplicated_column_count_tests",
        "almost_constant_column_count_tests",
        "empty_row_count_tests",
        "empty_column_count_tests",
        "constant_columns_count_tests",
        "dataset_missing_value_count_tests",
    )
}
QUARTILES = 4


def _rate_table(groups: pd.Series, target: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows and the target's mean columns per group (the positive rate of a binary target),
    missing values as their own group, largest first."""
    frame = target.assign(group=groups.astype("string").fillna("(missing)"))
    grouped = frame.groupby("group", sort=False)
    table = grouped[list(target.columns)].mean().assign(rows=grouped.size())
    return [
        {
            "group": str(group),
            "rows": int(row["rows"]),
            **{name: round(float(row[name]), 4) for name in target.columns},
        }
        for group, row in table.sort_values("rows", ascending=False, kind="stable").iterrows()
    ]


def target_rates(table: pd.DataFrame, schema: Schema, target: pd.DataFrame) -> dict[str, Any]:
    """The target's mean columns per category of each category column and per quartile of each
    number column (a number with few values: per value)."""
    rates: dict[str, Any] = {}
    for name in schema.categorical_features:
        rates[name] = _rate_table(table[name], target)
    for name in schema.numeric_features:
        values = table[name].astype("float64")
        if values.nunique() <= QUARTILES * 2:
            rates[name] = _rate_table(values, target)
            continue
        bins = pd.qcut(values, QUARTILES, duplicates="drop")
        rates[name] = _rate_table(bins.astype("string"), target)
    return rates


def associations(table: pd.DataFrame, schema: Schema, target: pd.DataFrame) -> dict[str, float]:
    """Each feature's association with the target, 0 (none) to 1, the strongest over the
    target's columns (task.target_columns): |Pearson| for a number (the point-biserial
    correlation for a class), the correlation ratio for a category (Cramér's V for a class)."""
    result: dict[str, float] = {}
    for name in schema.numeric_features:
        values = table[name].astype("float64")
        known = values.notna()
        result[name] = max(_pearson(values[known], target[c][known]) for c in target)
    for name in schema.categorical_features:
        groups = table[name].astype("string").fillna("(missing)")
        result[name] = max(_correlation_ratio(groups, target[c]) for c in target)
    return dict(sorted(result.items(), key=lambda item: -item[1]))


def _pearson(values: pd.Series, target: pd.Series) -> float:
    """|Pearson|, 0 when either side is constant or too short to say."""
    if len(values) <= 2 or values.nunique() < 2 or target.nunique() < 2:
        return 0.0
    return round(float(abs(np.corrcoef(values, target)[0, 1])), 4)


def _correlation_ratio(groups: pd.Series, target: pd.Series) -> float:
    """How much of the target's variance the groups explain, as a root (0 to 1); for a 0/1
    target it equals Cramér's V of the two-column table. 0 for one group or a constant."""
    total = float(((target - target.mean()) ** 2).sum())
    if groups.nunique() < 2 or total == 0:
        return 0.0
    by_group = target.groupby(groups)
    between = float((by_group.size() * (by_group.mean() - target.mean()) ** 2).sum())
    return round(float(np.sqrt(between / total)), 4)


def evidently_report(table: pd.DataFrame, schema: Schema) -> Any:
    """Evidently's data summary and correlations of the features and the target, with the
    column types from the schema (never guessed from the data)."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    from evidently import Report
    from evidently.metrics import ColumnCorrelations, DatasetCorrelations
    from evidently.presets import DataSummaryPreset

    report = Report(
        [
            DataSummaryPreset(**SUMMARY_WITHOUT_TESTS, column_tests={}),
            DatasetCorrelations(),
            ColumnCorrelations(column_name=schema.target),
        ]
    )
    return report.run(schema.evidently_dataset(table), None)


def figures(table: pd.DataFrame, schema: Schema, task: Task) -> tuple[dict[str, Any], pd.DataFrame]:
    """The summary of reports/explore.json and the target-rate plot's rows."""
    target = task.target_columns(table[schema.target])
    rates = target_rates(table, schema, target)
    summary = {
        "rows": len(table),
        "target": schema.target,
        "task": task.name,
        **task.target_summary(table[schema.target]),
        "association_with_target": associations(table, schema, target),
        "missing_share": {
            name: round(float(table[name].isna().mean()), 4) for name in schema.feature_names
        },
        "target_rate": rates,
    }
    plot = pd.DataFrame(
        [
            {"group": f"{name}={row['group']}", **{column: row[column] for column in target}}
            for name in schema.categorical_features
            for row in rates[name]
        ],
        columns=["group", *target.columns],
    )
    return summary, plot


def run(params: Params) -> dict[str, Any]:
    schema = load_schema(params.data.schema_file)
    table = schema.read_csv(Paths.validated_data)
    task = params.task(schema.target_values)
    progress_name = f"explore: {len(table):,} rows (figures, then Evidently's report)"
    with step(progress_name, 2, "parts") as progress:
        summary, plot = figures(table, schema, task)
        progress.advance()
        snapshot = evidently_report(table, schema)
        progress.advance()
    with stage_outputs() as outputs:
        snapshot.save_html(str(outputs.path(Paths.explore_report)))
        outputs.json(summary, Paths.explore_summary)
        outputs.table(plot, Paths.plots / "target_rate.csv")
    return summary
