"""Each decision's reasons: how much each model input moved the model's output for one row. They
are SHAP values (the `shap` package) of the fitted estimator on the preprocessed columns, with an
input's one-hot columns summed back to that input. For every row, `base` plus the contributions
equals the output explained, to rounding: tests/model/test_explanations.py checks it on the
whole test split for every model family.

What is explained is the estimator's own additive output, its `scale`:
- gradient boosting and logistic regression classifiers: `log_odds` (binary: of the positive
  class; multiclass: each class's score, whose softmax gives the probabilities);
- random forests: the `probability` (the trees' mean);
- regressors: the `estimate`, before the decision's offset.
A binary row is explained toward the positive class, a multiclass row toward the class decided.
`base` is that output for the training data on average: trees weigh their training rows'
paths, the linear model is taken at the training rows' mean (stored in the bundle by train).

shap, with numba under it, takes about a second to import: the service's /explain and
`predict --explain` import it; /predict and plain batch scoring never do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from {{ cookiecutter.package_name }}.bundle import ModelBundle
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.inference import FastPath, compile_fast_path

TREES = ("hist_gradient_boosting", "random_forest")  # shap's TreeExplainer reads them
LINEAR = ("logistic_regression",)  # coef_ and intercept_: shap's LinearExplainer


@dataclass(frozen=True)
class Explained:
    """The explanations of some rows, each toward one output (see `Explainer.explains`)."""

    codes: np.ndarray | None  # per row, the decision code of the class explained; None: a number
    base: np.ndarray  # per row
    contributions: np.ndarray  # rows x model inputs, in the bundle's `features` order

    @property
    def output(self) -> np.ndarray:
        """The output explained, per row: base plus the contributions."""
        return self.base + self.contributions.sum(axis=1)


class Explainer:
    """Explains a bundle's model; building one imports shap and reads the fitted model."""

    def __init__(self, bundle: ModelBundle) -> None:
        fast = compile_fast_path(bundle.pipeline, bundle.task)
        if fast is None:
            raise ConfigError(
                "explanations need the pipeline train.build_model builds (imputation, scaling,"
                " one-hot encoding, then the estimator); this model's has another shape"
            )
        self.bundle, self.fast = bundle, fast
        estimator = fast.classifier
        self.classes: Any = getattr(estimator, "classes_", None)  # decision codes; None: a number
        self.scale = (
            "estimate"
            if self.classes is None
            else "probability"
            if bundle.family == "random_forest"
            else "log_odds"
        )
        self.membership = _membership(fast, bundle.features)
        self._explainer = _shap_explainer(bundle, estimator)

    def records_matrix(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Request records preprocessed, as the service's fast path does."""
        return self.fast.matrix(records)

    def table_matrix(self, table: pd.DataFrame) -> np.ndarray:
        """A table's rows preprocessed by the fitted pipeline (the same numbers)."""
        preprocess = self.bundle.pipeline[:-1]
        return np.asarray(preprocess.transform(table[list(self.bundle.features)]), np.float64)

    def every_output(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The base of each of the estimator's outputs (one, or one per class of `classes`)
        and every row's contribution per input to each: (outputs,), (rows, inputs, outputs)."""
        if self.bundle.family in TREES:
            values = self._explainer.shap_values(matrix, check_additivity=False)
        else:
            values = self._explainer.shap_values(matrix)
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 2:  # one output (a regressor, a binary model's log-odds)
            values = values[:, :, np.newaxis]
        base = np.atleast_1d(np.asarray(self._explainer.expected_value, dtype=np.float64))
        return base, np.einsum("rco,ci->rio", values, self.membership)

    def explain(self, matrix: np.ndarray, decisions: np.ndarray) -> Explained:
        """Each row's explanation toward the output its decision is about."""
        base, contributions = self.every_output(matrix)
        codes = self.bundle.task.explained_codes(np.asarray(decisions))
        if base.size == 1:  # the only output: a number's, or the positive class's log-odds
            column = np.zeros(len(matrix), dtype=int)
        else:
            assert self.classes is not None and codes is not None
            column = np.searchsorted(self.classes, codes)
            unseen = (column >= len(self.classes)) | (
                self.classes[np.minimum(column, len(self.classes) - 1)] != codes
            )
            if unseen.any():  # a class the fit never saw has no output: the most likely instead
                column = np.where(unseen, (base + contributions.sum(axis=1)).argmax(axis=1), column)
                codes = np.asarray(self.classes)[column]
        rows = np.arange(len(matrix))
        return Explained(
            codes=codes, base=base[column], contributions=contributions[rows, :, column]
        )

    def explains(self, code: Any = None) -> str:
        """What the numbers of a row explained toward `code` (a decision code) are, in words;
        without a code, of any row (a multiclass row's class is the one decided)."""
        target, task = self.bundle.target, self.bundle.task
        if self.scale == "estimate":
            return f"the model's estimate of {target}, before the decision's offset"
        words = "probability" if self.scale == "probability" else "log-odds"
        if task.name == "binary":  # always toward the positive class (task.explained_codes)
            return f"the {words} that {target} is {task.label(1)}"
        label = "the class decided (label)" if code is None else task.label(code)
        if self.scale == "probability":
            return f"the probability that {target} is {label}"
        return (
            f"the score of {target} {label} (the classes' scores' softmax is their probabilities)"
        )


def _membership(fast: FastPath, inputs: tuple[str, ...]) -> np.ndarray:
    """preprocessed columns x inputs: 1 where the column is (one of) the input's."""
    position = {name: i for i, name in enumerate(inputs)}
    members = np.zeros((fast.width, len(inputs)), dtype=np.float64)
    for column, name in enumerate(fast.numeric):
        members[column, position[name]] = 1.0
    for name, columns in zip(fast.categorical, fast.positions, strict=True):
        for column in columns.values():
            members[column, position[name]] = 1.0
    return members


def _shap_explainer(bundle: ModelBundle, estimator: Any) -> Any:
    import shap

    if bundle.family in TREES:
        return shap.TreeExplainer(estimator)
    if bundle.family not in LINEAR:
        raise ConfigError(
            f"no explanation for the model family {bundle.family!r}: explanations.py explains"
            f" {', '.join(TREES + LINEAR)} (docs/extending.md says how to add one)"
        )
    if bundle.background is None:
        raise ConfigError(
            "this model bundle predates explanations (no training mean to explain a linear model"
            " from): rerun the train stage (dvc repro -f train)"
        )
    return shap.LinearExplainer(estimator, shap.maskers.Independent(bundle.background[None, :]))
