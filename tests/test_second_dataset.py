"""Pointing a generated project at another binary-classification table takes params.yaml
changes and `make schema`, no code edits.

The second table is a synthetic customer-churn extract (tests/data/make_churn_data.py) in a
SQLite database: other columns, an id to drop, a text target ("yes"/"no"), missing values, and
`gender` plus a derived age band as the sensitive attributes.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import BakeProject, Project

pytestmark = pytest.mark.e2e

GENERATOR = Path(__file__).parent / "data" / "make_churn_data.py"
DATABASE = "data/external/churn.db"
FEATURES = {
    "gender",
    "age",
    "contract",
    "tenure_months",
    "monthly_charges",
    "support_calls",
    "payment_method",
}


def point_at_churn_data(params: dict[str, Any]) -> dict[str, Any]:
    """The only changes the project needs: params.yaml's data section and the thresholds."""
    params["data"].update(
        {
            "source": f"sqlite:///{DATABASE}",
            "query": "SELECT * FROM customers",
            "target": "churned",
            "positive_label": "yes",
            "drop_columns": ["customer_id"],
            "sensitive_features": ["gender", "age_band"],
            "derived_columns": {
                "age_band": {
                    "source": "age",
                    "bins": [0, 30, 50, 200],
                    "labels": ["<30", "30-49", "50+"],
                }
            },
        }
    )
    params["evaluate"]["thresholds"] = {"roc_auc": 0.75, "f1": 0.55}
    params["evaluate"]["cost_matrix"] = {
        "fp": 1,
        "fn": 1,
    }  # a retention offer vs. a lost customer
    return params


@pytest.fixture(scope="module")
def churn_project(bake_project: BakeProject) -> Project:
    project = bake_project()
    params_file = project.path / "params.yaml"
    params = point_at_churn_data(yaml.safe_load(params_file.read_text()))
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    project.setup()
    project.run("python", str(GENERATOR), DATABASE)
    project.run("make", "schema")
    project.run("make", "pipeline", timeout=1200)
    return project


def read_json(project: Project, relative: str) -> Any:
    return json.loads((project.path / relative).read_text())


def test_no_code_was_edited(churn_project: Project, bake_project: BakeProject) -> None:
    """Every file of a fresh bake is unchanged, except params.yaml and schema.yaml."""
    fresh = bake_project().path
    edited = []
    for path in fresh.rglob("*"):
        relative = path.relative_to(fresh)
        if not path.is_file() or ".git" in relative.parts:
            continue
        if str(relative) in ("params.yaml", "schema.yaml"):
            continue
        if (churn_project.path / relative).read_bytes() != path.read_bytes():
            edited.append(str(relative))
    assert not edited, f"changed besides params.yaml and schema.yaml: {edited}"
    assert (churn_project.path / "schema.yaml").read_bytes() != (
        fresh / "schema.yaml"
    ).read_bytes()


def test_drafted_schema(churn_project: Project) -> None:
    schema = yaml.safe_load((churn_project.path / "schema.yaml").read_text())
    assert schema["target"] == {"name": "churned", "values": ["no", "yes"]}
    columns = schema["columns"]
    assert set(columns) == FEATURES  # the id column is dropped, the target is separate
    assert columns["contract"]["type"] == "category"
    assert columns["contract"]["categories"] == [
        "month-to-month",
        "one-year",
        "two-year",
    ]
    assert columns["gender"]["categories"] == ["female", "male"]
    assert columns["tenure_months"]["type"] == "integer"
    assert 1 <= columns["tenure_months"]["min"] <= columns["tenure_months"]["max"] <= 72
    assert columns["monthly_charges"]["type"] == "float"
    assert columns["monthly_charges"]["nullable"] is True
    assert columns["payment_method"]["nullable"] is True
    assert columns["age"]["nullable"] is False


def test_ingest_read_the_database(churn_project: Project) -> None:
    manifest = read_json(churn_project, "data/raw/manifest.json")
    assert manifest["rows"] == 1500
    assert manifest["kind"] == "database"
    assert manifest["query"] == "SELECT * FROM customers"
    assert "customer_id" in manifest["columns"]


def test_every_stage_passed(churn_project: Project) -> None:
    status = churn_project.run("dvc", "status")
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    assert read_json(churn_project, "reports/validation.json")["passed"] is True
    metrics = read_json(churn_project, "reports/metrics.json")
    assert metrics["gate"]["passed"] is True
    assert metrics["model"]["roc_auc"] > metrics["baseline"]["roc_auc"] + 0.05
    fairness = read_json(churn_project, "reports/fairness.json")
    assert set(fairness["features"]) == {"gender", "age_band"}
    assert set(fairness["features"]["gender"]["groups"]) == {"female", "male"}
    assert set(fairness["features"]["age_band"]["groups"]) == {"<30", "30-49", "50+"}
    assert fairness["gate"]["passed"] is True
    card = (churn_project.path / "docs/model_card.md").read_text()
    assert "churned" in card and "gender" in card


# ---------------------------------------------------------------------------------------
# The same loader reads an http(s) URL


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve a directory on a loopback port from a thread; yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_loader_reads_a_csv_url(churn_project: Project, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    churn_project.run(
        "python", str(GENERATOR), str(tmp_path / "x.db"), str(served / "churn.csv")
    )
    package = next((churn_project.path / "src").iterdir()).name
    with serve_directory(served) as base:
        script = (
            f"from {package}.io import load_table, source_kind\n"
            f"url = '{base}/churn.csv'\n"
            "table = load_table(url)\n"
            "print(source_kind(url), len(table), ','.join(table.columns))\n"
        )
        result = churn_project.run("python", "-c", script, timeout=120)
    kind, rows, columns = result.stdout.strip().splitlines()[-1].split(" ")
    assert (kind, rows) == ("url", "1500")
    assert set(columns.split(",")) == {*FEATURES, "customer_id", "churned"}
    shutil.rmtree(served)


def test_the_projects_own_suite_passes_on_the_new_data(churn_project: Project) -> None:
    """The generated tests read the schema and params, not the German credit columns."""
    result = churn_project.run("make", "test", timeout=1200)
    summary = re.search(r"(\d+) passed", result.stdout)
    assert summary and int(summary[1]) > 100, result.stdout[-2000:]
    assert " failed" not in result.stdout and " error" not in result.stdout
