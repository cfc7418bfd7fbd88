"""Stage 6, train: a baseline without ML first, then the chosen model family inside one
scikit-learn Pipeline (preprocessing included, so serving takes raw records), tuned by a
cross-validated grid search from params.yaml; then the decision threshold that minimises the
expected cost of mistakes, chosen by cross-validation on the training split only. Both are
written as model bundles (see bundle.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, get_scorer, make_scorer
from sklearn.model_selection import (
    GridSearchCV,
    ParameterGrid,
    StratifiedKFold,
    TunedThresholdClassifierCV,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from {{ cookiecutter.package_name }}.bundle import (
    DerivedGroup,
    ModelBundle,
    binary_target,
    negative_label_of,
)
from {{ cookiecutter.package_name }}.config import (
    MINIMIZE_COST,
    CostMatrix,
    DataConfig,
    ModelFamily,
    Params,
    Paths,
    TrainConfig,
)
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.io import stage_outputs
from {{ cookiecutter.package_name }}.progress import Step, step
from {{ cookiecutter.package_name }}.schema import Schema, load_schema

MISSING_CATEGORY = "__missing__"
THRESHOLD_GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)  # candidate cut-offs, 0.01 apart


def _classifier(family: ModelFamily, seed: int) -> Any:
    if family == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(random_state=seed)
    if family == "random_forest":
        return RandomForestClassifier(random_state=seed, n_jobs=1)
    return LogisticRegression(max_iter=2000)


def build_model(family: ModelFamily, schema: Schema, seed: int) -> Pipeline:
    """Preprocessing and classifier as one Pipeline that takes the schema's raw columns."""
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
    return Pipeline([("preprocess", preprocess), ("classifier", _classifier(family, seed))])


def build_baseline(strategy: str, seed: int) -> DummyClassifier:
    """The product without ML: a rule that ignores the features."""
    return DummyClassifier(strategy=strategy, random_state=seed)


def cost_scorer(cost: CostMatrix) -> Any:
    """A scorer of the expected cost per decision (negated: scikit-learn maximises scores)."""

    def cost_per_decision(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        _, fp, fn, _ = confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
        return float(fp * cost.fp + fn * cost.fn) / len(y_true)

    return make_scorer(cost_per_decision, greater_is_better=False)


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


def choose_threshold(
    estimator: Any,
    features: pd.DataFrame,
    target: pd.Series,
    config: TrainConfig,
    cost: Any,
    seed: int,
) -> tuple[Any, float, dict[str, Any]]:
    """The estimator refitted on all of `features` and its decision threshold: pinned in params,
    or the one that minimises the cross-validated cost on these (training) rows only."""
    if config.decision_threshold != MINIMIZE_COST:
        threshold = float(config.decision_threshold)
        return clone(estimator).fit(features, target), threshold, {"source": "params"}
    tuned = TunedThresholdClassifierCV(
        clone(estimator),
        scoring=cost_scorer(cost),
        response_method="predict_proba",
        thresholds=THRESHOLD_GRID,
        cv=StratifiedKFold(n_splits=config.cv_folds, shuffle=True, random_state=seed),
        refit=True,
        n_jobs=1,
    ).fit(features, target)
    threshold = float(tuned.best_threshold_)
    return (
        tuned.estimator_,
        threshold,
        {
            "source": MINIMIZE_COST,
            "cv_cost_per_prediction": -float(tuned.best_score_),
            "cv_folds": config.cv_folds,
        },
    )


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


def make_bundle(
    pipeline: Any,
    schema: Schema,
    params: Params,
    inputs: tuple[str, ...],
    threshold: float,
    source: str,
    family: str,
) -> ModelBundle:
    data = params.data
    return ModelBundle(
        pipeline=pipeline,
        schema=schema,
        features=inputs,
        positive_label=data.positive_label,
        negative_label=negative_label_of(schema, data.positive_label),
        threshold=threshold,
        threshold_source=source,
        family=family,
        sensitive_features=tuple(data.sensitive_features),
        derived_groups={
            name: DerivedGroup(spec.source, tuple(spec.bins), tuple(spec.labels))
            for name, spec in data.derived_columns.items()
        },
    )


def run(params: Params) -> dict[str, Any]:
    schema = load_schema(params.data.schema_file)
    inputs = model_inputs(schema, params.data)
    negative_label_of(schema, params.data.positive_label)  # refuse a bad label before any fit
    train = schema.read_csv(Paths.train_data)
    features = train[list(inputs)]
    target = binary_target(train[schema.target], params.data.positive_label)
    config, seed, cost = params.train, params.split.seed, params.evaluate.cost_matrix

    grid = {f"classifier__{name}": values for name, values in config.search[config.model].items()}
    try:
        candidates = len(ParameterGrid(grid))
    except (ValueError, TypeError) as error:
        raise ConfigError(f"train.search.{config.model}: {error}") from error
    fits = candidates * config.cv_folds
    name = f"train: search, {candidates} candidates x {config.cv_folds} folds"
    with step(name, fits, "fits") as progress:
        search = GridSearchCV(
            build_model(config.model, schema.subset(inputs), seed),
            grid,
            scoring=counting_scorer(config.scoring, progress),
            cv=StratifiedKFold(n_splits=config.cv_folds, shuffle=True, random_state=seed),
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
    with step("train: decision thresholds (model, then baseline)", 2, "models") as progress:
        model, threshold, decision = choose_threshold(best, features, target, config, cost, seed)
        progress.advance()
        baseline, baseline_threshold, _ = choose_threshold(
            build_baseline(config.baseline, seed), features, target, config, cost, seed
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
        "decision_threshold": {"value": threshold, **decision},
        "baseline_threshold": baseline_threshold,
    }
    with stage_outputs() as outputs:
        make_bundle(
            baseline,
            schema,
            params,
            inputs,
            baseline_threshold,
            decision["source"],
            config.baseline,
        ).save(outputs.path(Paths.baseline_model))
        make_bundle(
            model, schema, params, inputs, threshold, decision["source"], config.model
        ).save(outputs.path(Paths.model))
        outputs.json(report, Paths.train_report)
    return report
