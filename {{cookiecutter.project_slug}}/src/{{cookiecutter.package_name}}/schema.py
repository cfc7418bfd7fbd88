"""The one data schema, read from the reviewed schema.yaml. Data validation (pandera), the
serving API's request model (pydantic), Evidently's column types and typed reading of the
pipeline's files all come from it, and `infer_schema` drafts it for a new dataset."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from {{ cookiecutter.package_name }}.config import naming_bad_keys, read_yaml
from {{ cookiecutter.package_name }}.errors import ConfigError

ColumnType = Literal["integer", "float", "category"]
# What the prediction log keeps of a column (privacy.py applies it): the value, an HMAC of it
# under a secret key (a category stays comparable, never readable), or nothing.
LogAction = Literal["keep", "pseudonymise", "drop"]
LOG_ACTIONS: tuple[LogAction, ...] = ("keep", "pseudonymise", "drop")


@dataclass(frozen=True)
class ColumnSpec:
    """What one feature column may hold."""

    name: str
    type: ColumnType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] = ()
    log: LogAction = "keep"

    @property
    def pandas_dtype(self) -> str:
        if self.type == "integer":
            return "Int64" if self.nullable else "int64"
        return "float64" if self.type == "float" else "str"

    def to_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"type": self.type, "nullable": self.nullable}
        if self.type == "category":
            spec["categories"] = list(self.categories)
        else:
            spec.update(
                {
                    key: getattr(self, key)
                    for key in ("min", "max")
                    if getattr(self, key) is not None
                }
            )
        spec["log"] = self.log
        return spec


@dataclass(frozen=True)
class Schema:
    """The feature columns and the target of one dataset."""

    target: str
    target_values: tuple[Any, ...]  # the classes; none for a number (regression)
    columns: tuple[ColumnSpec, ...]

    @property
    def feature_names(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def numeric_features(self) -> list[str]:
        return [column.name for column in self.columns if column.type != "category"]

    @property
    def categorical_features(self) -> list[str]:
        return [column.name for column in self.columns if column.type == "category"]

    def subset(self, names: tuple[str, ...] | list[str]) -> Schema:
        """The same schema restricted to the named feature columns (the model's inputs)."""
        return Schema(
            self.target, self.target_values, tuple(c for c in self.columns if c.name in names)
        )

    def column(self, name: str) -> ColumnSpec:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def dtypes(self) -> dict[str, str]:
        """pandas dtypes of every column, target included, for reading the pipeline's CSVs."""
        target_is_int = all(isinstance(value, int) for value in self.target_values)
        dtypes = {column.name: column.pandas_dtype for column in self.columns}
        if not self.target_values:
            dtypes[self.target] = "float64"
        else:
            dtypes[self.target] = "int64" if target_is_int else "str"
        return dtypes

    def read_csv(self, path: Path | str) -> pd.DataFrame:
        """Read a CSV written by a stage after validate, with the schema's types."""
        return pd.read_csv(path, dtype=self.dtypes)

    def evidently_dataset(
        self,
        frame: pd.DataFrame,
        *,
        with_target: bool = True,
        prediction: str | None = None,
        outputs: Sequence[str] = (),
        task: dict[str, Any] | None = None,
    ) -> Any:
        """`frame` as Evidently's Dataset with the column types from the schema, never guessed
        from the data: the features; monitoring's decided `prediction` (a label, or a number)
        and the model's `outputs` (numbers); the target. `task` is DataDefinition's task
        arguments (the task's `evidently_rows` gives them), used with the target."""
        from evidently import DataDefinition, Dataset

        target = [self.target] if with_target else []
        scored = [prediction] if prediction else []
        is_number = not self.target_values  # a regression's target and decision are numbers
        definition = DataDefinition(
            numerical_columns=[
                *self.numeric_features,
                *outputs,
                *(target + scored if is_number else []),
            ],
            categorical_columns=[
                *self.categorical_features,
                *([] if is_number else scored + target),
            ],
            **(task if task and with_target else {}),
        )
        columns = [*self.feature_names, *scored, *outputs, *target]
        typed = frame[columns].astype({name: "float64" for name in self.numeric_features})
        return Dataset.from_pandas(typed, data_definition=definition)

    def to_pandera(self) -> Any:
        """The pandera schema: types, ranges, categories, nullability, target values; strict."""
        import pandera.pandas as pa  # imported here: serving never validates with pandera

        columns = {}
        for spec in self.columns:
            checks = []
            if spec.type == "category":
                checks.append(pa.Check.isin(list(spec.categories)))
            if spec.min is not None:
                checks.append(pa.Check.ge(spec.min))
            if spec.max is not None:
                checks.append(pa.Check.le(spec.max))
            columns[spec.name] = pa.Column(spec.pandas_dtype, checks=checks, nullable=spec.nullable)
        classes = [pa.Check.isin(list(self.target_values))] if self.target_values else []
        columns[self.target] = pa.Column(self.dtypes[self.target], checks=classes, nullable=False)
        return pa.DataFrameSchema(columns, strict=True, coerce=True, ordered=False)

    def request_model(self, name: str = "Record", optional: tuple[str, ...] = ()) -> Any:
        """A pydantic model of one request record: the feature columns, their types and bounds;
        the `optional` ones (measured, not model inputs) may be left out. Numbers are strict: a
        JSON `false` or `"2"` is not an integer (an integer is a float, as JSON has it)."""
        from pydantic import ConfigDict, Field, StrictFloat, StrictInt, create_model

        fields: dict[str, Any] = {}
        for spec in self.columns:
            annotation: Any
            if spec.type == "category":
                annotation = Literal[tuple(spec.categories)]
            else:
                annotation = StrictInt if spec.type == "integer" else StrictFloat
            if spec.nullable or spec.name in optional:
                annotation = annotation | None
            field = Field(
                None if spec.nullable or spec.name in optional else ...,
                ge=spec.min if spec.type != "category" else None,
                le=spec.max if spec.type != "category" else None,
                allow_inf_nan=False if spec.type == "float" else None,  # no NaN/inf to the model
            )
            fields[spec.name] = (annotation, field)
        config = ConfigDict(extra="forbid")
        return create_model(name, __config__=config, **fields)

    def checked_rows(
        self, frame: pd.DataFrame, optional: tuple[str, ...] = ()
    ) -> tuple[pd.DataFrame, pd.Series]:
        """The feature columns of `frame` as the model reads them (numbers as floats, categories
        as text, NaN where missing), and each row's problems in words ('' for none): the rules
        of `request_model`, column by column for a whole table, so that batch scoring refuses
        the rows the service would. Columns the schema does not name are left out; a missing
        `optional` column is all missing; KeyError names a missing column that is not. A
        file's text that reads as a number counts as one."""
        typed: dict[str, pd.Series] = {}
        problems = pd.Series("", index=frame.index, dtype=object)

        def refuse(mask: pd.Series, words: pd.Series | str) -> None:
            if mask.any():
                problems[mask] = problems[mask] + words + "; "

        for spec in self.columns:
            if spec.name not in frame.columns:
                if spec.name not in optional:
                    raise KeyError(spec.name)
                typed[spec.name] = pd.Series(np.nan, index=frame.index, dtype=object)
                continue
            values = frame[spec.name]
            missing = values.isna()
            shown = spec.name + ": " + values.astype("string").fillna("").astype(str)
            if spec.type == "category":
                text = values.astype("string")
                refuse(~missing & ~text.isin(spec.categories), shown + " is not a known category")
                typed[spec.name] = text.astype(object).where(~missing, np.nan)
            else:
                if pd.api.types.is_bool_dtype(values):
                    numbers = pd.Series(np.nan, index=frame.index)
                else:
                    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
                not_number = ~missing & numbers.isna()
                refuse(not_number, shown + " is not a number")
                finite = pd.Series(np.isfinite(numbers.to_numpy()), index=frame.index)
                refuse(~missing & ~not_number & ~finite, shown + " is not finite")
                if spec.type == "integer":
                    refuse(finite & (numbers % 1 != 0), shown + " is not a whole number")
                if spec.min is not None:
                    refuse(finite & (numbers < spec.min), shown + f" is below {spec.min:g}")
                if spec.max is not None:
                    refuse(finite & (numbers > spec.max), shown + f" is above {spec.max:g}")
                typed[spec.name] = numbers.where(finite)
            if not (spec.nullable or spec.name in optional):
                refuse(missing, f"{spec.name}: missing")
        return pd.DataFrame(typed, index=frame.index), problems.str.removesuffix("; ")

    def label_type(self) -> Any:
        """The target's values as a request field type: one of the classes, or a finite number
        (a regression's). A JSON boolean is refused, not read as 0 or 1 (pydantic's Literal
        would match `false` to 0 even in strict mode)."""
        from pydantic import BeforeValidator, Field

        expected = f"one of {list(self.target_values)}" if self.target_values else "a number"

        def not_boolean(value: Any) -> Any:
            if isinstance(value, bool):
                raise ValueError(f"must be {expected}, not a boolean")
            return value

        if not self.target_values:
            return Annotated[float, Field(allow_inf_nan=False), BeforeValidator(not_boolean)]
        return Annotated[Literal[tuple(self.target_values)], BeforeValidator(not_boolean)]

    def to_yaml(self, log_reasons: dict[str, str] | None = None) -> str:
        """The schema file's text; `log_reasons` (column -> why) comment each `log:` line."""
        target: dict[str, Any] = {"name": self.target}
        if self.target_values:
            target["values"] = list(self.target_values)
        document = {
            "target": target,
            "columns": {column.name: column.to_dict() for column in self.columns},
        }
        text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        if not log_reasons:
            return text
        lines, column = [], None
        for line in text.splitlines():
            if line.startswith("  ") and not line.startswith("    ") and line.endswith(":"):
                column = line.strip()[:-1].strip("'\"")
            if line.startswith("    log: ") and column in log_reasons:
                line = f"{line}  # {log_reasons[column]}"
            lines.append(line)
        return "\n".join(lines) + "\n"


class _ColumnFile(BaseModel):
    """One column of schema.yaml as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: ColumnType
    nullable: bool = False
    min: int | float | None = None
    max: int | float | None = None
    categories: tuple[str, ...] = ()
    log: str = "keep"  # checked below, so that a wrong value names the choices

    @field_validator("log")
    @classmethod
    def _log_action(cls, value: str) -> str:
        if value not in LOG_ACTIONS:
            raise ValueError(
                f"'{value}' is not what the log may do with a column: one of"
                f" {', '.join(LOG_ACTIONS)} (absent: keep)"
            )
        return value

    @field_validator("categories", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        """Categories are text, even those YAML reads as numbers or booleans."""
        if value is None:
            return ()
        return [str(item) for item in value] if isinstance(value, list | tuple) else value

    @model_validator(mode="after")
    def _category_has_categories(self) -> _ColumnFile:
        if self.type == "category" and not self.categories:
            raise ValueError("a category column needs a list of categories")
        if self.log == "pseudonymise" and self.type != "category":
            raise ValueError(
                "log: pseudonymise is for a category (its pseudonyms stay comparable); a"
                f" {self.type}'s pseudonym would lose its order and distribution: keep or drop it"
            )
        return self


class _TargetFile(BaseModel):
    """The target: its classes, or no `values` for a number (a regression's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    values: tuple[Any, ...] = ()

    @field_validator("values")
    @classmethod
    def _classes(cls, values: tuple[Any, ...]) -> tuple[Any, ...]:
        if len(values) == 1 or len(set(map(str, values))) != len(values):
            raise ValueError(f"must list two or more distinct classes, got {list(values)}")
        return values


class SchemaFile(BaseModel):
    """schema.yaml as written: the target and every feature column, each checked by type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: _TargetFile
    columns: dict[str, _ColumnFile]

    def to_schema(self) -> Schema:
        columns = tuple(
            ColumnSpec(name=name, **column.model_dump()) for name, column in self.columns.items()
        )
        return Schema(target=self.target.name, target_values=self.target.values, columns=columns)


def load_schema(path: Path | str) -> Schema:
    """Read schema.yaml; a malformed file raises ConfigError naming the key, as params.yaml's do."""
    path = Path(path)
    document = read_yaml(path, missing=f"schema file not found: {path} (run `make schema`)")
    with naming_bad_keys(path):
        return SchemaFile.model_validate(document).to_schema()


def target_problem(target: pd.Series, task: str, max_classes: int = 50) -> str | None:
    """Why the target column does not fit `data.task`, naming the key to change; or None."""
    values = target.dropna().unique()
    number = pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target)
    shown = sorted(map(str, values))[:10]
    if task == "regression":
        if not number:
            return (
                f"data.target: '{target.name}' holds text ({shown}), not a number a regression"
                " predicts: set data.task to binary or multiclass"
            )
        if len(values) < 3:
            return (
                f"data.target: '{target.name}' takes {len(values)} values ({shown}): set"
                " data.task: binary for two classes"
            )
        return None
    if number and len(values) > max_classes:
        return (
            f"data.target: '{target.name}' is a number with {len(values)} distinct values, not"
            f" classes: set data.task: regression (or bin it into classes)"
        )
    if task == "binary" and len(values) != 2:
        other = "multiclass" if len(values) > 2 else None
        change = f": set data.task: {other}" if other else ""
        return (
            f"data.target: '{target.name}' has {len(values)} classes ({shown}), a binary task"
            f" needs two{change}"
        )
    if task == "multiclass" and not 3 <= len(values) <= max_classes:
        change = "set data.task: binary" if len(values) == 2 else "choose another data.target"
        return (
            f"data.target: '{target.name}' has {len(values)} classes ({shown}), a multiclass"
            f" task needs 3 to {max_classes}: {change}"
        )
    return None


def infer_schema(
    table: pd.DataFrame, target: str, task: str = "binary", max_categories: int = 50
) -> tuple[Schema, list[str]]:
    """Draft a schema from data (observed types, ranges, categories), for a person to review,
    and the problems found on the way (a target that does not fit data.task, free-text or id
    columns, left out of the draft), each with the params.yaml change that solves it."""
    if target not in table.columns:
        raise ConfigError(
            f"data.target: column '{target}' is not in the data (columns: {list(table.columns)})"
        )
    problem = target_problem(table[target], task, max_categories)
    problems = [problem] if problem else []
    classes = task != "regression" and not problem
    values = sorted(table[target].dropna().unique().tolist(), key=str) if classes else []
    columns = []
    for name in table.columns.drop(target):
        series = table[name]
        nullable = bool(series.isna().any())
        present = series.dropna()
        if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
            categories = sorted(present.astype(str).unique().tolist())
            if len(categories) > max_categories:
                problems.append(
                    f"column '{name}' has {len(categories)} distinct text values (free text or"
                    f" an id?), more than a category may hold: add '{name}' to data.drop_columns"
                )
                continue
            columns.append(ColumnSpec(name, "category", nullable, categories=tuple(categories)))
            continue
        integral = bool((present == present.round()).all())
        kind: ColumnType = "integer" if integral else "float"
        low = present.min() if len(present) else None
        high = present.max() if len(present) else None
        cast = int if kind == "integer" else float
        columns.append(
            ColumnSpec(
                name,
                kind,
                nullable,
                min=None if low is None else cast(low),
                max=None if high is None else cast(high),
            )
        )
    target_values = tuple(value.item() if hasattr(value, "item") else value for value in values)
    return Schema(target=target, target_values=target_values, columns=tuple(columns)), problems
