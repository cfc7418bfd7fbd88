"""Stage 9, explain: which inputs drive the model's decisions, for the model card.

- Permutation importance on the test split, in the cost the model is judged by: how much more a
  prediction costs on average (evaluate.cost_matrix) when one input's values are shuffled among
  the rows, over `explain.repeats` shuffles. An input the model ignores costs nothing when
  shuffled; a negative figure is noise.
- Partial dependence of the decisions on the `explain.top_inputs` most important inputs: each of
  `explain.grid_points` values (a number's quantiles from 5% to 95%; a category's most frequent
  values) set for every test row, and what the decisions then amount to (each class's share, or
  the mean decided number).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from {{ cookiecutter.package_name }}.bundle import ModelBundle, load_bundle
from {{ cookiecutter.package_name }}.config import Params, Paths
from {{ cookiecutter.package_name }}.io import stage_outputs


def importance(bundle: ModelBundle, test: pd.DataFrame, repeats: int, seed: int) -> pd.DataFrame:
    """Each model input's cost increase per prediction when shuffled: mean and std, largest
    first."""
    from sklearn.inspection import permutation_importance

    task, decision = bundle.task, bundle.decision

    def negative_cost(estimator: Any, features: pd.DataFrame, truth: np.ndarray) -> float:
        decisions = task.decide(task.outputs(estimator, features), decision)
        return -task.cost_of(truth, decisions) / len(truth)

    found = permutation_importance(
        bundle.pipeline,
        test[list(bundle.features)],
        bundle.encode(test[bundle.target]),
        scoring=negative_cost,
        n_repeats=repeats,
        random_state=seed,
    )
    table = pd.DataFrame(
        {
            "input": list(bundle.features),
            "cost_increase": found.importances_mean,
            "std": found.importances_std,
        }
    )
    return table.sort_values("cost_increase", ascending=False, ignore_index=True)


def grid(bundle: ModelBundle, column: pd.Series, points: int) -> list[Any]:
    """The values partial dependence sets one input to."""
    known = column.dropna()
    if column.name in bundle.schema.categorical_features:
        return [str(value) for value in known.value_counts().index[:points]]
    values = np.unique(np.quantile(known.astype(float), np.linspace(0.05, 0.95, points)))
    if bundle.schema.column(str(column.name)).type == "integer":
        values = np.unique(np.round(values))
    return [float(value) for value in values]


def partial_dependence(
    bundle: ModelBundle, test: pd.DataFrame, inputs: list[str], points: int
) -> pd.DataFrame:
    """For each input and each of its grid values: the decisions when every row has it."""
    rows = []
    for name in inputs:
        for value in grid(bundle, test[name], points):
            changed = test.assign(**{name: value})
            decisions = bundle.decide(bundle.outputs(changed))
            rows.append({"input": name, "value": value, **bundle.task.decision_summary(decisions)})
    return pd.DataFrame(rows)


def importance_chart(ranked: pd.DataFrame) -> str:
    """The importance table as a horizontal bar chart in SVG, for the model card (drawn here:
    a chart of bars needs no plotting library). Bars start at zero, going left when shuffling
    lowered the cost (noise)."""
    row, label_width, bar_width = 22, 170, 360
    values = ranked["cost_increase"].to_numpy(dtype=float)
    scale = bar_width / max(float(np.abs(values).max()), 1e-12) / (2 if (values < 0).any() else 1)
    zero = label_width + (bar_width / 2 if (values < 0).any() else 0)
    height = row * (len(ranked) + 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + bar_width + 70}"'
        f' height="{height}" font-family="sans-serif" font-size="12">',
        f'<text x="{label_width}" y="14">cost increase per prediction when shuffled</text>',
    ]
    for i, (name, value) in enumerate(zip(ranked["input"], values, strict=True), start=1):
        y, width = i * row, abs(value) * scale
        left = zero if value >= 0 else zero - width
        parts += [
            f'<text x="{label_width - 6}" y="{y + 14}" text-anchor="end">{name}</text>',
            f'<rect x="{left:.1f}" y="{y + 3}" width="{width:.1f}" height="{row - 6}"'
            f' fill="{"#4c78a8" if value >= 0 else "#bbbbbb"}"/>',
            f'<text x="{max(zero, left + width) + 4:.1f}" y="{y + 14}">{value:.3f}</text>',
        ]
    parts.append(f'<line x1="{zero}" y1="{row}" x2="{zero}" y2="{height}" stroke="#333"/>')
    return "\n".join([*parts, "</svg>", ""])


def run(params: Params) -> dict[str, Any]:
    bundle = load_bundle(Paths.model)
    test = bundle.schema.read_csv(Paths.test_data)
    config = params.explain
    ranked = importance(bundle, test, config.repeats, params.split.seed)
    top = ranked["input"].head(config.top_inputs).tolist()
    dependence = partial_dependence(bundle, test, top, config.grid_points)
    report = {
        "cost_per_prediction": bundle.task.cost_of(
            bundle.encode(test[bundle.target]), bundle.decide(bundle.outputs(test))
        )
        / len(test),
        "importance": ranked.round(6).to_dict(orient="records"),
        "partial_dependence": [  # a list: the most important input first
            {
                "input": name,
                "values": dependence[dependence["input"] == name]
                .drop(columns="input")
                .to_dict("records"),
            }
            for name in top
        ],
        "repeats": config.repeats,
        "test_rows": len(test),
    }
    with stage_outputs() as outputs:
        outputs.json(report, Paths.explanations)
        outputs.table(ranked.round(6), Paths.importance_plot)
        outputs.text(importance_chart(ranked), Paths.importance_chart)
    return report
