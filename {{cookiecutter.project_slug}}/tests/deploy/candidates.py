"""The candidates a canary release tests, made from the registered model: one retrained alike
(a healthy release) and one deciding otherwise (another cut-off, other class costs, another
offset), each in a copy of the project's model store as its newest version; and the decision
shift the canary's decision check measures between two of them."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import yaml
from sklearn.base import clone

from {{ cookiecutter.package_name }}.bundle import ModelBundle
from {{ cookiecutter.package_name }}.config import Paths
from {{ cookiecutter.package_name }}.serving.store import BUNDLE_FILE, MODEL_NAME
from {{ cookiecutter.package_name }}.task import (
    MINIMIZE_COST,
    BinaryClassification,
    Decision,
    MulticlassClassification,
)

from ..service.conftest import PROJECT_ROOT


def store_with(home: Path, version: str, bundle: ModelBundle) -> Path:
    """A copy of the project's model store whose newest model is `bundle`, as `version`."""
    shutil.copytree(PROJECT_ROOT / Paths.bentoml_home / "models", home / "models")
    models = home / "models" / MODEL_NAME
    latest = (models / "latest").read_text().strip()
    shutil.copytree(models / latest, models / version)
    manifest = yaml.safe_load((models / version / "model.yaml").read_text())
    manifest["version"] = version
    (models / version / "model.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    joblib.dump(bundle, models / version / BUNDLE_FILE)
    (models / "latest").write_text(version)
    return home


def decision_shift(bundle: ModelBundle, primary: ModelBundle, batch: pd.DataFrame) -> float:
    """What the decision check measures between `bundle` (the canary) and `primary` on `batch`
    (in the long run, on traffic drawn from it):
    the largest gap in a class's share of the decisions (binary: the positive share's), or how
    far the mean predicted number moved, relative."""
    mine, theirs = (side.decide(side.outputs(batch)) for side in (bundle, primary))
    if not primary.schema.target_values:
        return float(abs(mine.mean() / theirs.mean() - 1))
    classes = len(primary.schema.target_values)
    shares = [np.bincount(d.astype(int), minlength=classes) / len(d) for d in (mine, theirs)]
    return float(np.abs(shares[0] - shares[1]).max())


def retrained(
    bundle: ModelBundle, train: pd.DataFrame, batch: pd.DataFrame, alike: float
) -> ModelBundle:
    """The same kind of model fitted anew on 95 % of the training split: the first of up to
    five draws that decides within `alike` of `bundle` on `batch` (a healthy candidate: traffic
    adds its own noise), else the closest."""
    candidates = []
    for seed in range(1, 6):
        sample = train.sample(frac=0.95, random_state=seed)
        pipeline = clone(bundle.pipeline).fit(
            sample[list(bundle.features)], bundle.encode(sample[bundle.target])
        )
        candidate = dataclasses.replace(bundle, pipeline=pipeline)
        shift = decision_shift(candidate, bundle, batch)
        if shift <= alike:
            return candidate
        candidates.append((shift, seed, candidate))
    return min(candidates, key=lambda entry: entry[:2])[2]


def deciding_otherwise(bundle: ModelBundle, batch: pd.DataFrame, shift: float) -> ModelBundle:
    """The same model deciding so that the check moves by at least `shift` on `batch`: binary,
    another cut-off; multiclass, costs that make its rarest decided class twenty times dearer
    to miss;
    regression, an offset of `shift` times the mean prediction."""
    outputs = bundle.outputs(batch)
    task = bundle.task
    if isinstance(task, BinaryClassification):
        ranked = pd.Series(outputs).sort_values(ascending=False)
        share = float(bundle.decide(outputs).mean())
        wanted = share + shift if share + shift <= 1 else share - shift
        count = max(1, round(wanted * len(batch)))
        cut_off = float(ranked.iloc[count - 1])
        return dataclasses.replace(bundle, decision=Decision(cut_off, "params"))
    if isinstance(task, MulticlassClassification):
        decided = np.bincount(bundle.decide(outputs), minlength=len(task.classes))
        rarest = int(np.argmin(decided))
        costs = tuple(
            tuple(0.0 if i == j else (20.0 if i == rarest else 1.0) for j in range(len(row)))
            for i, row in enumerate(task.costs)
        )
        moved = dataclasses.replace(task, costs=costs)
        return dataclasses.replace(bundle, task=moved, decision=Decision(MINIMIZE_COST, "params"))
    offset = float(bundle.decision.value) + shift * float(np.mean(bundle.decide(outputs)))
    return dataclasses.replace(bundle, decision=Decision(offset, "params"))
