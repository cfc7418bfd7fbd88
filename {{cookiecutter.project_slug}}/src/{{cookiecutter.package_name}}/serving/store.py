"""The project's BentoML model store and the files a registered model carries, shared by the
register stage (which writes them) and the service (which reads them), so the two cannot drift."""

from __future__ import annotations

import os
from pathlib import Path

from {{ cookiecutter.package_name }}.config import Paths

MODEL_FILE = "model.joblib"  # the scikit-learn Pipeline, raw schema columns in
SCHEMA_FILE = "schema.yaml"  # the data contract the model was trained under
LINEAGE_FILE = (
    "lineage.json"  # the full lineage, nulls included (BentoML metadata cannot hold them)
)


def use_project_store(project_dir: Path | str = ".") -> Path:
    """Point BentoML at `<project>/.bentoml` unless BENTOML_HOME is already set.

    Call it before the first `import bentoml`: BentoML reads the variable once, and a store that
    silently defaults to ~/bentoml would hide the project's models from its own builds.
    """
    default = (Path(project_dir) / Paths.bentoml_home).resolve()
    return Path(os.environ.setdefault("BENTOML_HOME", str(default)))
