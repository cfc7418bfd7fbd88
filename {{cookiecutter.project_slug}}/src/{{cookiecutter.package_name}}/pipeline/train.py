"""Stage 6, train: a baseline without ML first, then the chosen model family inside one
scikit-learn Pipeline (preprocessing included, so serving takes raw records), tuned by a
cross-validated grid search from params.yaml; then the decision (the task's cut-off, class
rule or offset: task.py) that minimises the cost of mistakes, chosen by cross-validation on
the training split only. Both are written as model bundles (see bundle.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import get_scorer
from sklearn.model_selection import GridSearchCV, ParameterGrid
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from {{ cookiecutter.package_name }}.bundle import DerivedGroup, ModelBundle
from {{ cookiecutter.package_name }}.config import DataConfig, ModelFamily, Params, Paths
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.io import stage_outputs
from {{ cookiecutter.package_name }}.progress import Step, step
from {{ cookiecutter.package_name }}.schema import Schema, load_schema
from {{ cookiecutter.package_name }}.task import Decision, Task

MISSING_CATEGORY = "__missing__"


def build_model(task: Task, family: ModelFamily, schema: Schema, seed: int) -> Pipeline:
    """Preprocessing and the task's estimator as one Pipeline that takes the schema's raw
    columns (the step keeps the name `classifier` for every task: params, grids and the fast
    path refer to it)."""
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
            ("encode", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    preprocess = ColumnTransformer(
        [
            ("numeric", numeric, schema.numeric_features),
            ("categorical", categorical, schema.categorical_features),
        ],
        sparse_threshold=0.0,
    )
    return Pipeline([("preprocess", preprocess), ("classifier", task.estimator(family, seed))])


def counting_scorer(scoring: str, progress: Step) -> Any:
    """train.scoring as a scorer that advances `progress` once per fold it scores (the search
    scores each fit once, on its held-out fold)."""
    try:
        scorer = get_scorer(scoring)
    except ValueError as error:
        raise ConfigError(f"train.scoring: {error}") from error

    def score(estimator: Any, features: pd.DataFrame, target: pd.Series) -> float:
        value = scorer(estimator, features, target)
        progress.advance()
        return float(value)

    return score


def model_inputs(schema: Schema, data: DataConfig) -> tuple[str, ...]:
    """The schema's columns minus those measured only (data.not_model_inputs)."""
    unknown = [name for name in data.not_model_inputs if name not in schema.feature_names]
    if unknown:
        raise ConfigError(
            f"data.not_model_inputs: {unknown} are not columns of {data.schema_file}"
            f" ({schema.feature_names})"
        )
    inputs = tuple(name for name in schema.feature_names if name not in data.not_model_inputs)
    if not inputs:
        raise ConfigError("data.not_model_inputs leaves the model no input column")
    return inputs


def preprocessed_mean(pipeline: Any, features: pd.DataFrame) -> np.ndarray | None:
    """The training rows' mean after preprocessing: where a linear model is explained from
    (None for an estimator without a preprocessing step, such as a baseline)."""
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) < 2:
        return None
    return np.asarray(pipeline[:-1].transform(features), dtype=np.float64).mean(axis=0)


def make_bundle(
    pipeline: Any,
    schema: Schema,
    params: Params,
    inputs: tuple[str, ...],
    decision: Decision,
    family: str,
    training: pd.DataFrame,
) -> ModelBundle:
    data = params.data
    return ModelBundle(
        pipeline=pipeline,
        schema=schema,
        features=inputs,
        task=params.task(schema.target_values),
        decision=decision,
        family=family,
        sensitive_features=tuple(data.sensitive_features),
        derived_groups={
            name: DerivedGroup(spec.source, tuple(spec.bins), tuple(spec.labels))
            for name, spec in data.derived_columns.items()
        },
        background=preprocessed_mean(pipeline, training),
    )


def run(params: Params) -> dict[str, Any]:
    schema = load_schema(params.data.schema_file)
    inputs = model_inputs(schema, params.data)
    task = params.task(schema.target_values)  # refuses a bad label or cost matrix before any fit
    train = schema.read_csv(Paths.train_data)
    features = train[list(inputs)]
    target = task.encode(train[schema.target])
    config, seed = params.train, params.split.seed

    grid = {f"classifier__{name}": values for name, values in config.search[config.model].items()}
    try:
        candidates = len(ParameterGrid(grid))
    except (ValueError, TypeError) as error:
        raise ConfigError(f"train.search.{config.model}: {error}") from error
    fits = candidates * config.cv_folds
    name = f"train: search, {candidates} candidates x {config.cv_folds} folds"
    with step(name, fits, "fits") as progress:
        search = GridSearchCV(
            build_model(task, config.model, schema.subset(inputs), seed),
            grid,
            scoring=counting_scorer(config.scoring, progress),
            cv=task.folds(config.cv_folds, seed),
            n_jobs=1,
            error_score="raise",
            refit=False,  # refitted once, on every training row, when the threshold is chosen
        )
        try:
            search.fit(features, target)
        except (ValueError, TypeError) as error:
            if "parameter" not in str(error).lower():
                raise
            raise ConfigError(f"train.search.{config.model}: {error}") from error
    best = clone(search.estimator).set_params(**search.best_params_)
    pinned, folds = config.decision_threshold, config.cv_folds
    with step("train: decisions by cost (model, then baseline)", 2, "models") as progress:
        model, decision = task.fit(best, features, target, pinned, folds, seed)
        progress.advance()
        baseline_estimator = task.baseline(config.baseline, seed)
        baseline, baseline_decision = task.fit(
            baseline_estimator, features, target, pinned, folds, seed
        )
        progress.advance()

    report = {
        "model": config.model,
        "best_params": {
            key.removeprefix("classifier__"): value for key, value in search.best_params_.items()
        },
        "cv_scoring": config.scoring,
        "cv_score_mean": float(search.best_score_),
        "cv_score_std": float(search.cv_results_["std_test_score"][search.best_index_]),
        "train_rows": len(train),
        "inputs": list(inputs),
        "not_model_inputs": list(params.data.not_model_inputs),
        "task": task.name,
        "decision_threshold": {
            **decision.to_dict(),
            **({"cv_folds": folds} if decision.cv_cost_per_prediction is not None else {}),
        },
        "baseline_threshold": baseline_decision.value,
    }
    with stage_outputs() as outputs:
        make_bundle(
            baseline, schema, params, inputs, baseline_decision, config.baseline, features
        ).save(outputs.path(Paths.baseline_model))
        make_bundle(model, schema, params, inputs, decision, config.model, features).save(
            outputs.path(Paths.model)
        )
        outputs.json(report, Paths.train_report)
    return report
