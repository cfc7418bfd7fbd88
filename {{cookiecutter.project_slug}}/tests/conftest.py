"""Shared fixtures. Unit tests work in a scratch copy of the project's config and data; the data,
model and bias layers read the outputs of `make pipeline` in the project itself."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from {{ cookiecutter.package_name }}.bundle import ModelBundle, load_bundle
from {{ cookiecutter.package_name }}.config import Params, Paths, load_params
from {{ cookiecutter.package_name }}.schema import Schema, load_schema

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TESTS_ROOT = Path(__file__).resolve().parent
LAYERS = ("unit", "data", "model", "bias", "service", "deploy")  # tests/<layer>/, one marker each


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: it must see the layer markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test gets the marker of the layer its directory names, so `pytest -m unit`
    (make test-unit) selects a test even when its module forgot `pytestmark`."""
    for item in items:
        try:
            layer = item.path.resolve().relative_to(TESTS_ROOT).parts[0]
        except ValueError:  # collected from outside tests/
            continue
        if layer in LAYERS:
            item.add_marker(layer)


@pytest.fixture(scope="session", autouse=True)
def log_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A pseudonymisation key for the whole session (schema.yaml pseudonymises columns in the
    log: the service, batch scoring and monitoring need one), through LOG_KEY_FILE as deployed."""
    from {{ cookiecutter.package_name }}.privacy import KEY_ENV_VAR, rotate_key

    path = tmp_path_factory.mktemp("secrets") / "log-key"
    rotate_key(path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV_VAR, str(path))
        yield path


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def params() -> Params:
    return load_params(PROJECT_ROOT / "params.yaml")


@pytest.fixture(scope="session")
def schema(params: Params) -> Schema:
    return load_schema(PROJECT_ROOT / params.data.schema_file)


def scratch_project(root: Path) -> Path:
    """`root` made a scratch project: params.yaml (with a quick search grid), schema.yaml and
    the data."""
    for name in ("params.yaml", "schema.yaml"):
        shutil.copy(PROJECT_ROOT / name, root / name)
    shutil.copytree(PROJECT_ROOT / "data" / "external", root / "data" / "external")
    settings = yaml.safe_load((root / "params.yaml").read_text())
    settings["train"]["cv_folds"] = 2
    settings["train"]["search"] = {family: {} for family in settings["train"]["search"]}
    (root / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    return root


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A scratch project (scratch_project), the current directory for the test."""
    scratch_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


@pytest.fixture(scope="session")
def trained_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch project after the stages from ingest to train and reference, run once a
    session: the tests that need a quick model, not a run of the stages, copy it
    (trained_workspace) instead of training their own (seconds each, minutes a suite)."""
    from {{ cookiecutter.package_name }}.pipeline import (
        curate,
        ingest,
        reference,
        split,
        train,
        validate,
    )

    root = scratch_project(tmp_path_factory.mktemp("trained"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        params = load_params()
        for stage in (ingest, curate, validate, split, train, reference):
            stage.run(params)
    return root


@pytest.fixture
def trained_workspace(
    trained_once: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A workspace (as `workspace`) holding a copy of the session's quick model and every file
    the stages up to it wrote."""
    shutil.copytree(trained_once, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def edit_params(workspace: Path, **changes: object) -> Params:
    """Set dotted keys in the workspace's params.yaml and reload it."""
    path = workspace / "params.yaml"
    settings = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = settings
        for key in parents:
            node = node[key]
        node[leaf] = value
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return load_params(path)


def valid_record(schema: Schema) -> dict[str, object]:
    """A record every schema accepts: first category, lower bound (or 0) of every number."""
    record: dict[str, object] = {}
    for column in schema.columns:
        if column.type == "category":
            record[column.name] = column.categories[0]
        else:
            cast = int if column.type == "integer" else float
            record[column.name] = cast(column.min if column.min is not None else 0)
    return record


def frame_of_records(records: list[dict], schema: Schema) -> pd.DataFrame:
    """JSON records as the table a scikit-learn pipeline reads: numbers as floats, categories as
    text, null as missing (what the service did before its fast path)."""
    frame = pd.DataFrame(records, columns=schema.feature_names)
    return frame.astype(
        {name: "str" if name in schema.categorical_features else "float64" for name in frame}
    )


@pytest.fixture(scope="session")
def pipeline_outputs() -> Path:
    """The project root, after checking `make pipeline` has produced what these tests read."""
    needed = [
        Paths.validated_data,
        Paths.train_data,
        Paths.test_data,
        Paths.reference_data,
        Paths.model,
        Paths.baseline_model,
        Paths.metrics,
        Paths.fairness,
    ]
    missing = [str(path) for path in needed if not (PROJECT_ROOT / path).exists()]
    if missing:
        pytest.fail(
            f"pipeline outputs missing: {missing}; run `make pipeline` first", pytrace=False
        )
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def bundle(pipeline_outputs: Path) -> ModelBundle:
    """The model bundle the train stage wrote."""
    return load_bundle(pipeline_outputs / Paths.model)


LIVE_SPOOL_OWNER = """
import json, sys
from {{ cookiecutter.package_name }}.serving.prediction_log import Spool
spool = Spool(sys.argv[1])
spool.append(sys.argv[2], json.loads(sys.stdin.readline()))
spool.recorded({"-"})  # reads the spool's files: its own lock must hold all the same
print(spool._own, flush=True)
sys.stdin.readline()
"""


@contextlib.contextmanager
def spool_of_a_live_process(
    directory: Path, table: str, records: list[dict[str, Any]]
) -> Iterator[Path]:
    """Another process that spooled `records` into `directory` and runs on, holding its file's
    lock as a live server does (a Spool of this process would not keep this process out: POSIX
    locks are per process). Yields its file; the process ends, leaving the file, on the way out."""
    process = subprocess.Popen(
        [sys.executable, "-c", LIVE_SPOOL_OWNER, str(directory), table],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(json.dumps(records, default=str) + "\n")
        process.stdin.flush()
        own = process.stdout.readline().strip()
        assert own, "the spool's owner did not start"
        yield Path(own)
    finally:
        process.stdin.close()
        process.wait(timeout=30)
