"""Fixtures of the service tests: the registered model's service, served in-process (BentoML's
ASGI app in starlette's TestClient), with its prediction log in a scratch directory."""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.config import Paths
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.serving.prediction_log import ENV_VAR, PredictionSink, open_sink
from {{ cookiecutter.package_name }}.serving.store import use_project_store

PROJECT_ROOT = Path(__file__).resolve().parents[2]
use_project_store(PROJECT_ROOT)  # before anything imports bentoml: the project's own store


def run_make_pipeline(problem: str) -> None:
    pytest.fail(
        f"{problem}: run `make pipeline` first (it trains and registers the model)", pytrace=False
    )


@pytest.fixture(scope="session")
def service() -> ModuleType:
    """The service module, imported from the project root (it reads params.yaml from there)."""
    if not (PROJECT_ROOT / Paths.registry).is_file():
        run_make_pipeline(f"{Paths.registry} is missing")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(PROJECT_ROOT)
        try:
            return importlib.import_module("{{ cookiecutter.package_name }}.serving.service")
        except ConfigError as error:
            run_make_pipeline(f"{error} (BENTOML_HOME={os.environ['BENTOML_HOME']})")
            raise


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prediction-log")


@pytest.fixture(scope="session")
def client(service: ModuleType, log_dir: Path) -> Iterator[Any]:
    """One running app for the session (starting it loads the model: seconds, not milliseconds)."""
    from starlette.testclient import TestClient

    test_client = TestClient(service.ModelService.to_asgi(), raise_server_exceptions=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VAR, str(log_dir))  # read once, when the service starts and opens its sink
        patch.chdir(PROJECT_ROOT)
        started = test_client.__enter__()  # runs the app's startup: loads the model, opens the log
    try:
        yield started
    finally:
        test_client.__exit__(None, None, None)  # runs its shutdown: flushes the log


@pytest.fixture(scope="session")
def log_sink(client: Any, log_dir: Path) -> PredictionSink:
    return open_sink(str(log_dir))


@pytest.fixture(scope="session")
def test_split(service: ModuleType) -> pd.DataFrame:
    path = PROJECT_ROOT / Paths.test_data
    if not path.is_file():
        run_make_pipeline(f"{Paths.test_data} is missing")
    return service.SCHEMA.read_csv(path)


def as_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready records: missing values become null, numbers stay numbers."""
    return json.loads(frame.to_json(orient="records"))


@pytest.fixture(scope="session")
def valid_record(service: ModuleType, test_split: pd.DataFrame) -> dict[str, Any]:
    return as_records(test_split[service.SCHEMA.feature_names].head(1))[0]
