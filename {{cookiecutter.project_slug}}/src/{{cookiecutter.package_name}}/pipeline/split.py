"""Stage 5, split: a train/test split, stratified by class for a classification (the test
rows are also monitoring's reference, once the model has scored them: see the reference
stage)."""

from __future__ import annotations

from typing import Any

from sklearn.model_selection import train_test_split

from {{ cookiecutter.package_name }}.config import Params, Paths
from {{ cookiecutter.package_name }}.io import stage_outputs
from {{ cookiecutter.package_name }}.schema import load_schema


def run(params: Params) -> dict[str, Any]:
    schema = load_schema(params.data.schema_file)
    table = schema.read_csv(Paths.validated_data)
    train, test = train_test_split(
        table,
        test_size=params.split.test_size,
        stratify=table[schema.target] if schema.target_values else None,
        random_state=params.split.seed,
    )
    with stage_outputs() as outputs:
        outputs.table(train, Paths.train_data)
        outputs.table(test, Paths.test_data)
    return {"train": len(train), "test": len(test)}
