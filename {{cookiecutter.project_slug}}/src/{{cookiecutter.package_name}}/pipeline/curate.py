"""Stage 2, curate: one spelling for missing values, numbers as numbers, no exact duplicates."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from {{ cookiecutter.package_name }}.config import Params, Paths
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.io import load_table, stage_outputs


def _as_numbers_if_possible(series: pd.Series) -> pd.Series:
    """Text columns that hold only numbers become numeric; anything else is left for validate."""
    if pd.api.types.is_numeric_dtype(series) or series.dropna().empty:
        return series
    try:
        return pd.to_numeric(series)
    except (ValueError, TypeError):
        return series


def clean_values(
    table: pd.DataFrame,
    missing_tokens: list[str],
    drop_columns: list[str],
    text_columns: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, int]:
    """Row by row, what curate does before dropping duplicates (batch scoring does it to new
    rows too): `drop_columns` gone, names stripped, missing tokens made missing, text of numbers
    made numbers (not in `text_columns`). The table and how many tokens were replaced."""
    table = table.drop(columns=[column for column in drop_columns if column in table.columns])
    table.columns = [str(column).strip() for column in table.columns]
    replaced = 0
    tokens = set(missing_tokens)
    for column in table.columns:
        if pd.api.types.is_numeric_dtype(table[column]):
            continue
        text = table[column].astype("string").str.strip()
        is_token = text.isin(tokens).fillna(False).astype(bool)
        replaced += int(is_token.sum())
        cleaned = text.astype(object).where(~is_token, np.nan)
        cleaned = cleaned.where(cleaned.notna(), np.nan)
        table[column] = cleaned if column in text_columns else _as_numbers_if_possible(cleaned)
    return table, replaced


def curate(
    table: pd.DataFrame, missing_tokens: list[str], drop_columns: list[str]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return the curated table and counts of what changed."""
    unknown = [column for column in drop_columns if column not in table.columns]
    if unknown and len(table.columns):
        raise ConfigError(
            f"data.drop_columns: {unknown} not in the data (columns: {list(table.columns)})"
        )
    table, replaced = clean_values(table, missing_tokens, drop_columns)
    rows_in = len(table)
    table = table.drop_duplicates(ignore_index=True)
    report = {
        "rows_in": rows_in,
        "rows_out": len(table),
        "duplicates_dropped": rows_in - len(table),
        "duplicate_share": (rows_in - len(table)) / rows_in if rows_in else 0.0,
        "missing_tokens_replaced": replaced,
    }
    return table, report


def run(params: Params) -> dict[str, Any]:
    raw = load_table(str(Paths.raw_data))
    table, report = curate(raw, params.curate.missing_tokens, params.data.drop_columns)
    with stage_outputs() as outputs:
        outputs.table(table, Paths.curated_data)
        outputs.json(report, Paths.curate_report)
    return report
