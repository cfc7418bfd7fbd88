"""The project's BentoML model store and the files a registered model carries, shared by the
register stage (which writes them) and the service (which reads them), so the two cannot drift."""

from __future__ import annotations

import os
from pathlib import Path

from {{ cookiecutter.package_name }}.config import Paths

MODEL_NAME = "{{ cookiecutter.package_name }}"  # the registered model's name; versions are tags
BUNDLE_FILE = "bundle.joblib"  # the model bundle train wrote (pipeline, schema, labels, threshold)
SCHEMA_FILE = "schema.yaml"  # the bundle's schema, readable without Python, for people
SERVING_FILE = "serving.json"  # params.yaml's `serving` section at registration
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
