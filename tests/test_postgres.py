"""The SQL paths against a real PostgreSQL server on 127.0.0.1 (SQLite stays the embedded
default): the pipeline ingests its data with a SQL query from PostgreSQL, the password given as
`${DATA_SOURCE_PASSWORD}`; `make serve` logs predictions and feedback into PostgreSQL and
`make monitor` reads its window back from there.

The server: `.ci/run` installs and starts Debian's PostgreSQL and creates the role
`template_tests` (password `template-tests`, may create databases). Each test works in a
database of its own, dropped afterwards. Without a server the tests skip, unless
REQUIRE_POSTGRES_TEST=1 (`.ci/run` sets it): then they fail.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Project
from loopback import running_make
from test_monitoring import results

pytestmark = pytest.mark.e2e

REQUIRE = "REQUIRE_POSTGRES_TEST"
ROLE = os.environ.get("TEMPLATE_TESTS_POSTGRES_ROLE", "template_tests")
PASSWORD = os.environ.get("TEMPLATE_TESTS_POSTGRES_PASSWORD", "template-tests")
SERVER = "127.0.0.1:5432"

ADMIN = r"""
import sys, sqlalchemy as sa
url, action, name = sys.argv[1:4]
engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
with engine.connect() as connection:
    if action == "create":
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    elif action == "drop":
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    else:
        connection.execute(sa.text("SELECT 1"))
"""

LOAD = r"""
import sys, pandas as pd, sqlalchemy as sa
url, csv, table = sys.argv[1:4]
pd.read_csv(csv).to_sql(table, sa.create_engine(url), index=True, index_label="row_number")
"""

COUNT = r"""
import json, sys, sqlalchemy as sa
url = sys.argv[1]
with sa.create_engine(url).connect() as connection:
    print(json.dumps({t: connection.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                      for t in sys.argv[2:]}))
"""


def url(database: str, password: str = PASSWORD) -> str:
    return f"postgresql://{ROLE}:{password}@{SERVER}/{database}"


@pytest.fixture
def database(default_project: Project) -> Iterator[str]:
    """A fresh database on the server, dropped afterwards; skips without a server."""
    probe = default_project.run(
        "python", "-c", ADMIN, url(ROLE), "probe", "-", check=False
    )
    if probe.returncode != 0:
        reason = f"no PostgreSQL server answers as {ROLE} on {SERVER}"
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(
                f"{reason}, and {REQUIRE}=1 requires it:\n{probe.stdout[-2000:]}"
            )
        pytest.skip(f"{reason} (set {REQUIRE}=1 to fail instead)")
    name = f"template_tests_{uuid.uuid4().hex[:12]}"
    default_project.run("python", "-c", ADMIN, url(ROLE), "create", name)
    try:
        yield name
    finally:
        default_project.run("python", "-c", ADMIN, url(ROLE), "drop", name, check=False)


def test_the_pipeline_ingests_with_a_sql_query_from_postgresql(
    default_project: Project, database: str, tmp_path: Path
) -> None:
    project = default_project.copy(tmp_path / default_project.path.name)
    source = project.path / "data" / "external" / "german_credit.csv"
    project.run("python", "-c", LOAD, url(database), str(source), "applications")
    params = project.path / "params.yaml"
    text = params.read_text()
    placeholder = url(database, password="${DATA_SOURCE_PASSWORD}")
    # The file's columns in the file's order (the split is seeded on row order), not the key.
    columns = ", ".join(source.read_text().splitlines()[0].split(","))
    query = f"SELECT {columns} FROM applications ORDER BY row_number"
    text, replaced = re.subn(
        r"(?m)^  source: .*\n  query: null$",
        f'  source: {placeholder}\n  query: "{query}"',
        text,
    )
    assert replaced == 1, "params.yaml has no data.source followed by data.query"
    params.write_text(text)

    done = project.run("make", "pipeline", env={"DATA_SOURCE_PASSWORD": PASSWORD})
    assert "Running stage 'ingest'" in done.stdout
    assert PASSWORD not in done.stdout
    manifest_text = (project.path / "data" / "raw" / "manifest.json").read_text()
    manifest = json.loads(manifest_text)
    assert manifest["rows"] == 1000
    assert (
        manifest["source"].startswith("postgresql://") and PASSWORD not in manifest_text
    )
    registry = json.loads((project.path / "reports" / "registry.json").read_text())
    assert PASSWORD not in json.dumps(registry)
    assert registry["data"]["sha256"] == manifest["sha256"]


def test_the_service_logs_into_postgresql_and_monitoring_reads_it_back(
    default_project: Project, database: str, tmp_path: Path
) -> None:
    project = default_project.copy(tmp_path / default_project.path.name)
    log = {"PREDICTION_LOG": url(database)}
    with running_make(project, ["serve"], tmp_path / "serve.log", env=log) as server:
        sent = project.run("make", "simulate", f"URL={server.url}").stdout
    assert f"to {server.url}" in sent, sent
    assert not server.survivors, (
        server.survivors
    )  # a graceful stop: nothing left running

    counts = json.loads(
        project.run(
            "python", "-c", COUNT, url(database), "predictions", "feedback"
        ).stdout
    )
    assert counts == {"predictions": 400, "feedback": 200}, counts
    assert not any((project.path / "logs").glob("predictions*/*")), (
        "logged to files too"
    )

    project.run("make", "monitor", env=log, timeout=900)
    [result] = results(project)
    window = result["window"]
    assert (window["rows"], window["labelled"], window["unmatched_feedback"]) == (
        400,
        200,
        0,
    )
    assert result["performance"]["current"]["roc_auc"] > 0.5
