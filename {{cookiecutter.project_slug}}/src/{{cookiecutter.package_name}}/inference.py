"""The fast inference path for small requests. scikit-learn's ColumnTransformer spends
milliseconds on a one-row DataFrame, most of a request's time; this replays the fitted
preprocessing (imputation, scaling, one-hot encoding) in numpy straight from the request's
records, then calls the same fitted estimator (a classifier or a regressor: the task, task.py,
reads its output). The estimator being the very same object, the answers are the pipeline's
(tests/model/test_fast_path.py checks every row of the test split).

Why not ONNX: converting the tree models faithfully needs double-precision thresholds that
skl2onnx 1.20 does not write, and a 70 MB runtime without Intel-Mac wheels. A pipeline of another
shape than train.build_model's (a custom step, an indicator column, dropped categories) gets no
fast path: `records_scorer` falls back to the scikit-learn pipeline, and says which it chose."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from {{ cookiecutter.package_name }}.bundle import ModelBundle
from {{ cookiecutter.package_name }}.task import Task

Records = Sequence[Mapping[str, Any]]
Scorer = Callable[[Records], np.ndarray]


@dataclass(frozen=True)
class FastPath:
    """The fitted preprocessing as arrays, and the fitted estimator (`classifier`, whatever the
    task: the pipeline's step keeps that name)."""

    numeric: tuple[str, ...]
    fill: np.ndarray  # the numeric imputer's statistics
    mean: np.ndarray  # the scaler's mean_ and scale_
    scale: np.ndarray
    categorical: tuple[str, ...]
    missing_category: Any  # the categorical imputer's fill value
    positions: tuple[dict[Any, int], ...]  # per category column: category -> output column
    width: int
    classifier: Any
    forest: bool  # a random forest: its trees summed here, without its per-call thread pool
    task: Task  # reads the estimator's output: a probability, the class probabilities, a number

    def matrix(self, records: Records) -> np.ndarray:
        """The preprocessed rows, as ColumnTransformer.transform writes them."""
        numbers = np.array(
            [[record.get(name) for name in self.numeric] for record in records], dtype=np.float64
        ).reshape(len(records), len(self.numeric))  # None becomes NaN
        numbers = np.where(np.isnan(numbers), self.fill, numbers)
        numbers -= self.mean
        numbers /= self.scale
        out = np.zeros((len(records), self.width), dtype=np.float64)
        out[:, : len(self.numeric)] = numbers
        for name, positions in zip(self.categorical, self.positions, strict=True):
            for row, record in enumerate(records):
                value = record.get(name)
                column = positions.get(self.missing_category if value is None else value)
                if column is not None:  # an unknown category: all zeros, as handle_unknown=ignore
                    out[row, column] = 1.0
        return out

    def __call__(self, records: Records) -> np.ndarray:
        return self.scores(self.matrix(records))

    def scores(self, matrix: np.ndarray) -> np.ndarray:
        """The model's output for rows `matrix` already holds preprocessed."""
        estimator = _Averaged(self.classifier, matrix) if self.forest else self.classifier
        return self.task.outputs(estimator, matrix)


class _Averaged:
    """A random forest's answer as its own predict_proba or predict computes it (the trees'
    mean, in their order, on float32 inputs), minus the thread pool it starts on every call,
    which costs a small request the most."""

    def __init__(self, forest: Any, matrix: np.ndarray) -> None:
        classes = self.classes_ = getattr(forest, "classes_", None)  # None: a regressor
        inputs = matrix.astype(np.float32)
        total = np.zeros(len(inputs) if classes is None else (len(inputs), len(classes)))
        for tree in forest.estimators_:
            if classes is not None:
                total += tree.predict_proba(inputs, check_input=False)
            else:
                total += tree.predict(inputs, check_input=False)
        self.total = total / len(forest.estimators_)

    def predict_proba(self, _: Any) -> np.ndarray:
        return self.total

    def predict(self, _: Any) -> np.ndarray:
        return self.total


def compile_fast_path(pipeline: Any, task: Task) -> FastPath | None:
    """The FastPath of a pipeline shaped like train.build_model's, else None."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if not isinstance(pipeline, Pipeline) or [n for n, _ in pipeline.steps] != [
        "preprocess",
        "classifier",
    ]:
        return None
    preprocess = pipeline.named_steps["preprocess"]
    if not isinstance(preprocess, ColumnTransformer):
        return None
    steps = {
        name: (transformer, list(columns))
        for name, transformer, columns in preprocess.transformers_
        if not (name == "remainder" and transformer == "drop")
    }
    if set(steps) != {"numeric", "categorical"}:
        return None
    (numeric, numeric_columns), (categorical, categorical_columns) = (
        steps["numeric"],
        steps["categorical"],
    )
    if not (
        isinstance(numeric, Pipeline)
        and [type(step) for _, step in numeric.steps] == [SimpleImputer, StandardScaler]
        and isinstance(categorical, Pipeline)
        and [type(step) for _, step in categorical.steps] == [SimpleImputer, OneHotEncoder]
        and [name for name, *_ in preprocess.transformers_][:2] == ["numeric", "categorical"]
    ):
        return None
    imputer, scaler = (step for _, step in numeric.steps)
    fill_imputer, encoder = (step for _, step in categorical.steps)
    if imputer.add_indicator or fill_imputer.add_indicator or fill_imputer.strategy != "constant":
        return None
    if encoder.drop is not None or encoder.handle_unknown != "ignore":
        return None
    if getattr(encoder, "infrequent_categories_", None) is not None and any(
        found is not None for found in encoder.infrequent_categories_
    ):
        return None
    positions: list[dict[Any, int]] = []
    column = len(numeric_columns)
    for categories in encoder.categories_:
        positions.append({category: column + i for i, category in enumerate(categories)})
        column += len(categories)
    if column != len(preprocess.get_feature_names_out()):
        return None
    return FastPath(
        numeric=tuple(numeric_columns),
        fill=np.asarray(imputer.statistics_, dtype=np.float64),
        mean=np.asarray(scaler.mean_ if scaler.with_mean else 0.0, dtype=np.float64),
        scale=np.asarray(scaler.scale_ if scaler.with_std else 1.0, dtype=np.float64),
        categorical=tuple(categorical_columns),
        missing_category=fill_imputer.fill_value,
        positions=tuple(positions),
        width=column,
        classifier=pipeline.named_steps["classifier"],
        forest=type(pipeline.named_steps["classifier"])
        in (RandomForestClassifier, RandomForestRegressor),
        task=task,
    )


def records_scorer(bundle: ModelBundle) -> tuple[Scorer, str]:
    """The model's output for request records (the task's: binary, the positive class's
    probability), and which path computes it."""
    fast = compile_fast_path(bundle.pipeline, bundle.task)
    if fast is not None:
        return fast, "fast path (numpy preprocessing, the fitted classifier)"

    def with_pipeline(records: Records) -> np.ndarray:
        import pandas as pd

        inputs = list(bundle.features)
        table = pd.DataFrame(list(records), columns=inputs).astype(
            {name: bundle.schema.dtypes[name] for name in inputs}
        )
        return bundle.outputs(table)

    return with_pipeline, "scikit-learn pipeline"
