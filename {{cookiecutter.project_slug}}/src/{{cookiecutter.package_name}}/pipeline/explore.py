"""Stage 4, explore: the validated data against the target, before any model sees it. Evidently's
data summary (distributions, missing values) and correlations as reports/explore.html, and the
figures a reader checks first as reports/explore.json: the positive rate of the target by category
and by numeric quartile, each feature's association with the target, and missing shares.
notebooks/explore.ipynb reads these outputs; it never keeps a copy of the data."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats.contingency import association  # scipy comes with scikit-learn

from {{ cookiecutter.package_name }}.bundle import binary_target
from {{ cookiecutter.package_name }}.config import Params, Paths
from {{ cookiecutter.package_name }}.io import stage_outputs
from {{ cookiecutter.package_name }}.progress import step
from {{ cookiecutter.package_name }}.schema import Schema, load_schema

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


def _rate_table(groups: pd.Series, positive: pd.Series) -> list[dict[str, Any]]:
    """Rows and positive rate per group, missing values as their own group, largest first."""
    frame = pd.DataFrame({"group": groups.astype("string").fillna("(missing)"), "y": positive})
    table = frame.groupby("group", sort=False)["y"].agg(["size", "mean"])
    return [
        {"group": str(group), "rows": int(row["size"]), "positive_rate": round(row["mean"], 4)}
        for group, row in table.sort_values("size", ascending=False).iterrows()
    ]


def target_rates(table: pd.DataFrame, schema: Schema, positive: pd.Series) -> dict[str, Any]:
    """The positive rate per category of each category column and per quartile of each number
    column (a number with few values: per value)."""
    rates: dict[str, Any] = {}
    for name in schema.categorical_features:
        rates[name] = _rate_table(table[name], positive)
    for name in schema.numeric_features:
        values = table[name].astype("float64")
        if values.nunique() <= QUARTILES * 2:
            rates[name] = _rate_table(values, positive)
            continue
        bins = pd.qcut(values, QUARTILES, duplicates="drop")
        rates[name] = _rate_table(bins.astype("string"), positive)
    return rates


def associations(table: pd.DataFrame, schema: Schema, positive: pd.Series) -> dict[str, float]:
    """Each feature's association with the target, 0 (none) to 1: |Pearson| for a number (the
    point-biserial correlation), Cramér's V for a category."""
    result: dict[str, float] = {}
    for name in schema.numeric_features:
        values = table[name].astype("float64")
        known = values.notna()
        corr = np.corrcoef(values[known], positive[known])[0, 1] if known.sum() > 2 else np.nan
        result[name] = round(float(abs(corr)), 4) if np.isfinite(corr) else 0.0
    for name in schema.categorical_features:
        counts = pd.crosstab(table[name].astype("string").fillna("(missing)"), positive)
        result[name] = round(_cramers_v(counts.to_numpy()), 4)
    return dict(sorted(result.items(), key=lambda item: -item[1]))


def _cramers_v(counts: np.ndarray) -> float:
    """Cramér's V of a contingency table, without bias correction; 0 for a table with one row or
    one column (a constant column or target says nothing), where scipy's answer is NaN."""
    if counts.shape[0] < 2 or counts.shape[1] < 2:
        return 0.0
    return float(association(counts, method="cramer"))


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


def figures(
    table: pd.DataFrame, schema: Schema, positive: pd.Series, params: Params
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The summary of reports/explore.json and the target-rate plot's rows."""
    rates = target_rates(table, schema, positive)
    summary = {
        "rows": len(table),
        "target": schema.target,
        "positive_label": params.data.positive_label,
        "positive_rate": round(float(positive.mean()), 4),
        "association_with_target": associations(table, schema, positive),
        "missing_share": {
            name: round(float(table[name].isna().mean()), 4) for name in schema.feature_names
        },
        "target_rate": rates,
    }
    plot = pd.DataFrame(
        [
            {"group": f"{name}={row['group']}", "positive_rate": row["positive_rate"]}
            for name in schema.categorical_features
            for row in rates[name]
        ],
        columns=["group", "positive_rate"],
    )
    return summary, plot


def run(params: Params) -> dict[str, Any]:
    schema = load_schema(params.data.schema_file)
    table = schema.read_csv(Paths.validated_data)
    positive = binary_target(table[schema.target], params.data.positive_label)
    progress_name = f"explore: {len(table):,} rows (figures, then Evidently's report)"
    with step(progress_name, 2, "parts") as progress:
        summary, plot = figures(table, schema, positive, params)
        progress.advance()
        snapshot = evidently_report(table, schema)
        progress.advance()
    with stage_outputs() as outputs:
        snapshot.save_html(str(outputs.path(Paths.explore_report)))
        outputs.json(summary, Paths.explore_summary)
        outputs.table(plot, Paths.plots / "target_rate.csv")
    return summary
