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


def registered_files() -> tuple[str, Path]:
    """The tag of the model the pipeline registered (reports/registry.json) and its directory
    in the store, read without importing BentoML; PipelineError naming what is missing."""
    import json

    from {{ cookiecutter.package_name }}.errors import PipelineError

    missing = registered_model_missing()
    if missing:
        raise PipelineError(f"{missing}: run `make pipeline` first")
    tag = str(json.loads(Paths.registry.read_text())["tag"])
    name, _, version = tag.partition(":")
    return tag, use_project_store() / "models" / name / version


def registered_model_missing() -> str | None:
    """Why the store lacks the model the pipeline registered (None when it holds it).

    The store lives outside DVC: after a fresh clone or `dvc pull`, `dvc repro` can find the
    register stage up to date (its record, reports/registry.json, is in git) while the store is
    empty. `make pipeline` registers again then.

    Every `make pipeline` asks, so it reads BentoML's store layout (<home>/models/<name>/
    <version>/model.yaml) instead of importing BentoML (about 1.5 s); were the layout to change,
    the cost is one needless registration, never a missing model.
    """
    import json

    if not Paths.registry.is_file():
        return f"{Paths.registry} is missing"
    tag = str(json.loads(Paths.registry.read_text()).get("tag", ""))
    name, _, version = tag.partition(":")
    store = use_project_store()
    if not (name and version and (store / "models" / name / version / "model.yaml").is_file()):
        return f"the model store ({store}) lacks {tag}, which {Paths.registry} records"
    return None
