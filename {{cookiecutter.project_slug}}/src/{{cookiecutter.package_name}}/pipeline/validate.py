"""Stage 3, validate: the data against schema.yaml and the quality rules; every violation is
listed and the pipeline stops, so no model is ever trained on data that breaks the contract."""

from __future__ import annotations

from typing import Any

import pandas as pd

from {{ cookiecutter.package_name }}.config import DataConfig, Params, Paths, ValidateConfig
from {{ cookiecutter.package_name }}.errors import DataValidationError
from {{ cookiecutter.package_name }}.io import load_table, read_json, stage_outputs
from {{ cookiecutter.package_name }}.schema import Schema, load_schema

MAX_EXAMPLES = 5


def _describe(check: str, column: str, schema: Schema) -> str:
    """A pandera check name, such as `less_than_or_equal_to(72)`, in words."""
    name = check.split("(")[0]
    if name in ("coerce_dtype", "dtype"):
        expected = schema.column(column).type if column in schema.feature_names else "the target's"
        return f"values of the wrong type (expected {expected})"
    if name == "not_nullable":
        return "missing values where none are allowed"
    if name == "isin":
        return "values outside the allowed set"
    if name == "greater_than_or_equal_to":
        return f"values below the minimum {schema.column(column).min}"
    if name == "less_than_or_equal_to":
        return f"values above the maximum {schema.column(column).max}"
    return f"failed check {check}"


def schema_violations(table: pd.DataFrame, schema: Schema) -> tuple[list[str], pd.DataFrame | None]:
    """Every schema violation as a sentence, and the table with the schema's types if none."""
    import pandera.pandas as pa

    try:
        return [], schema.to_pandera().validate(table, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    violations = []
    type_checks = cases["check"].astype(str).str.match(r"(coerce_)?dtype\(")
    wrong_type = set(cases.loc[type_checks, "column"])
    reported: set[str] = set()
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        check_name = str(check).split("(")[0]
        if check_name == "column_in_dataframe":
            violations += [f"missing column: '{name}'" for name in group["failure_case"]]
            continue
        if check_name == "column_in_schema":
            unexpected = group["failure_case"]
            violations += [f"unexpected column (not in the schema): '{n}'" for n in unexpected]
            continue
        if column in wrong_type:
            if column in reported or check_name not in ("coerce_dtype", "dtype"):
                continue  # one complaint per mistyped column: its other checks cannot run
            reported.add(column)
        cases_shown = group["failure_case"].astype(str).drop_duplicates().head(MAX_EXAMPLES)
        rows = group["index"].dropna().head(MAX_EXAMPLES).astype(int).tolist()
        violations.append(
            f"column '{column}': {_describe(str(check), column, schema)}: {cases_shown.tolist()}"
            f" (rows {rows}, {len(group)} in all)"
        )
    return violations, None


def quality_violations(
    table: pd.DataFrame,
    data: DataConfig,
    rules: ValidateConfig,
    duplicate_share: float,
    classes: tuple[Any, ...] = (),
) -> list[str]:
    """Quality rules from params.yaml: duplicate share, missing share and, for a
    classification (`classes`: schema.yaml's target values), every class present and none too
    rare."""
    violations = []
    if duplicate_share > rules.max_duplicate_share:
        violations.append(
            f"duplicate rows: {duplicate_share:.1%} of the raw data, more than"
            f" validate.max_duplicate_share {rules.max_duplicate_share:.1%}"
        )
    for column, share in table.isna().mean().items():
        if share > rules.max_missing_share:
            violations.append(
                f"column '{column}': {share:.1%} missing, more than validate.max_missing_share"
                f" {rules.max_missing_share:.1%}: add '{column}' to data.drop_columns"
                " (or raise validate.max_missing_share)"
            )
    if data.target not in table.columns or not classes:
        return violations
    labels = table[data.target].dropna().astype(str)
    absent = [str(name) for name in classes if str(name) not in set(labels)]
    if absent:
        named = " (data.positive_label)" if str(data.positive_label) in absent else ""
        violations.append(
            f"target '{data.target}': class {', '.join(map(repr, absent))}{named} of schema.yaml"
            " never occurs"
        )
    elif len(labels):
        rarest = labels.value_counts(normalize=True).min()
        if rarest < rules.min_class_share:
            violations.append(
                f"target '{data.target}': the rarest class is {rarest:.1%} of rows, less than"
                f" validate.min_class_share {rules.min_class_share:.1%}"
            )
    return violations


def validate(
    table: pd.DataFrame, schema: Schema, params: Params, duplicate_share: float = 0.0
) -> tuple[list[str], pd.DataFrame | None]:
    """All violations (schema, then quality) and the typed table when there are none."""
    if table.empty:
        shape = "no rows" if len(table.columns) else "no rows and no columns"
        return [f"the dataset is empty: {shape}"], None
    violations, typed = schema_violations(table, schema)
    violations += quality_violations(
        table, params.data, params.validate_, duplicate_share, schema.target_values
    )
    return violations, (typed if not violations else None)


def run(params: Params) -> dict[str, Any]:
    schema = load_schema(params.data.schema_file)
    table = load_table(str(Paths.curated_data))
    duplicate_share = read_json(Paths.curate_report)["duplicate_share"]
    violations, typed = validate(table, schema, params, duplicate_share)
    report = {"passed": not violations, "rows": len(table), "violations": violations}
    with stage_outputs() as outputs:  # the report is the evidence, written even on failure
        outputs.json(report, Paths.validation_report)
        if typed is not None:
            outputs.table(typed, Paths.validated_data)
    if violations:
        raise DataValidationError(violations)
    return report
