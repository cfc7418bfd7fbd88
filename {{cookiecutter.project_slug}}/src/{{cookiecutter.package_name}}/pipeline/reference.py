"""Stage 12, reference: the test split scored by the model bundle, for monitoring to compare
with. Rows the model never trained on, with their true label, the model's decision and its
probability, so reference performance is honest and prediction drift can be measured."""

from __future__ import annotations

from typing import Any

from {{ cookiecutter.package_name }}.bundle import load_bundle
from {{ cookiecutter.package_name }}.config import Params, Paths
from {{ cookiecutter.package_name }}.io import stage_outputs
from {{ cookiecutter.package_name }}.monitoring.frames import scored_frame


def run(params: Params) -> dict[str, Any]:
    bundle = load_bundle(Paths.model)
    test = bundle.schema.read_csv(Paths.test_data)
    reference = scored_frame(bundle, test, target=test[bundle.target])
    with stage_outputs() as outputs:
        outputs.table(reference, Paths.reference_data)
    return {"rows": len(reference)}
