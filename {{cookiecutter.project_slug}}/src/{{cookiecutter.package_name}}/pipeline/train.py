"""Stage 5, train: a baseline without ML first, then the chosen model family inside one
scikit-learn Pipeline (preprocessing included, so serving takes raw records), tuned by a
cross-validated grid search from params.yaml."""

from __future__ import annotations

from typing import Any

import joblib
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from {{ cookiecutter.package_name }}.config import ModelFamily, Params, Paths
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.io import atomic_path, write_json
from {{ cookiecutter.package_name }}.schema import Schema, load_schema

MISSING_CATEGORY = "__missing__"


def binary_target(labels: pd.Series, positive_label: Any) -> pd.Series:
    """1 where the label is the positive class, else 0 (labels compared as text)."""
    return (labels.astype(str) == str(positive_label)).astype(int)


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


def save_model(model: Any, path: Any) -> None:
    """Write a model atomically: a failed run never leaves a half-written file looking good."""
    with atomic_path(path) as temporary:
        joblib.dump(model, temporary)


def run(params: Params) -> dict[str, Any]:
    schema = load_schema(params.data.schema_file)
    train = schema.read_csv(Paths.train_data)
    features, target = (
        train[schema.feature_names],
        binary_target(train[schema.target], params.data.positive_label),
    )
    config, seed = params.train, params.split.seed

    baseline = build_baseline(config.baseline, seed).fit(features, target)
    grid = {f"classifier__{name}": values for name, values in config.search[config.model].items()}
    search = GridSearchCV(
        build_model(config.model, schema, seed),
        grid,
        scoring=config.scoring,
        cv=StratifiedKFold(n_splits=config.cv_folds, shuffle=True, random_state=seed),
        n_jobs=1,
        error_score="raise",
    )
    try:
        search.fit(features, target)
    except (ValueError, TypeError) as error:
        if "parameter" not in str(error).lower():
            raise
        raise ConfigError(f"train.search.{config.model}: {error}") from error

    report = {
        "model": config.model,
        "best_params": {
            key.removeprefix("classifier__"): value for key, value in search.best_params_.items()
        },
        "cv_scoring": config.scoring,
        "cv_score_mean": float(search.best_score_),
        "cv_score_std": float(search.cv_results_["std_test_score"][search.best_index_]),
        "train_rows": len(train),
    }
    save_model(baseline, Paths.baseline_model)
    save_model(search.best_estimator_, Paths.model)
    write_json(report, Paths.train_report)
    return report
