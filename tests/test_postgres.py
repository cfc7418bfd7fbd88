"""The SQL paths against a real PostgreSQL server on 127.0.0.1 (SQLite stays the embedded
default): the pipeline ingests its data with a SQL query from PostgreSQL, the password given as
`${DATA_SOURCE_POSTGRES_PASSWORD}`; `make serve` logs predictions and feedback into PostgreSQL and
`make monitor` reads its window back from there, and `make purge` deletes from there; the log's
retention and feedback checks work there; `make predict` scores a query from PostgreSQL
into a table there, rejects in a table beside it, the scored rows in a log there; the generated
project's load test (10,000 requests at concurrency 32) loses no prediction logged into
PostgreSQL; and its durability tests lose no answered prediction when the database goes away
mid-load or the service is killed.

The server: `.ci/run` installs and starts Debian's PostgreSQL and creates the role
`template_tests` (password `template-tests`, may create databases). Each test works in a
database of its own, dropped afterwards. Without a server the tests skip, unless
REQUIRE_POSTGRES_TEST=1 (`.ci/run` sets it): then they fail.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from batch_scoring import broken_copy_of_the_test_split
from conftest import LOAD_TEST_REQUESTS, POSTGRES_PASSWORD, Project, postgres_url
from loopback import running_make
from test_monitoring import results

pytestmark = pytest.mark.e2e

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


def test_the_pipeline_ingests_with_a_sql_query_from_postgresql(
    default_project: Project, postgres_database: str, tmp_path: Path
) -> None:
    project = default_project.copy(tmp_path / default_project.path.name)
    source = project.path / "data" / "external" / "german_credit.csv"
    project.run(
        "python",
        "-c",
        LOAD,
        postgres_url(postgres_database),
        str(source),
        "applications",
    )
    params = project.path / "params.yaml"
    text = params.read_text()
    placeholder = postgres_url(
        postgres_database, password="${DATA_SOURCE_POSTGRES_PASSWORD}"
    )
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

    done = project.run(
        "make", "pipeline", env={"DATA_SOURCE_POSTGRES_PASSWORD": POSTGRES_PASSWORD}
    )
    assert "Running stage 'ingest'" in done.stdout
    assert POSTGRES_PASSWORD not in done.stdout
    manifest_text = (project.path / "data" / "raw" / "manifest.json").read_text()
    manifest = json.loads(manifest_text)
    assert manifest["rows"] == 1000
    assert (
        manifest["source"].startswith("postgresql://")
        and POSTGRES_PASSWORD not in manifest_text
    )
    registry = json.loads((project.path / "reports" / "registry.json").read_text())
    assert POSTGRES_PASSWORD not in json.dumps(registry)
    assert registry["data"]["sha256"] == manifest["sha256"]


def test_the_service_logs_into_postgresql_and_monitoring_reads_it_back(
    default_project: Project, postgres_database: str, tmp_path: Path
) -> None:
    project = default_project.copy(tmp_path / default_project.path.name)
    log = {"PREDICTION_LOG": postgres_url(postgres_database)}
    with running_make(project, ["serve"], tmp_path / "serve.log", env=log) as server:
        sent = project.run("make", "simulate", f"URL={server.url}").stdout
    assert f"to {server.url}" in sent, sent
    assert not server.survivors, (
        server.survivors
    )  # a graceful stop: nothing left running

    counts = json.loads(
        project.run(
            "python",
            "-c",
            COUNT,
            postgres_url(postgres_database),
            "predictions",
            "feedback",
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

    # Retention: make purge deletes from PostgreSQL (here everything: all of it is older).
    purged = project.run("make", "purge", "BEFORE=2999-01-01", env=log).stdout
    assert "log predictions: 400" in purged and "log feedback: 200" in purged, purged
    counts = json.loads(
        project.run(
            "python",
            "-c",
            COUNT,
            postgres_url(postgres_database),
            "predictions",
            "feedback",
        ).stdout
    )
    assert counts == {"predictions": 0, "feedback": 0}, counts


TABLES = r"""
import json, sys, sqlalchemy as sa
print(json.dumps(sorted(sa.inspect(sa.create_engine(sys.argv[1])).get_table_names())))
"""


def test_make_predict_scores_a_postgresql_query_into_a_table(
    default_project: Project, postgres_database: str, tmp_path: Path
) -> None:
    project = default_project.copy(tmp_path / default_project.path.name)
    count, _ = broken_copy_of_the_test_split(project, tmp_path / "applicants.csv")
    url = postgres_url(postgres_database)
    project.run(
        "python", "-c", LOAD, url, str(tmp_path / "applicants.csv"), "applicants"
    )
    hidden = postgres_url(postgres_database, password="${BATCH_DB_PASSWORD}")
    secrets = {"BATCH_DB_PASSWORD": POSTGRES_PASSWORD, "PREDICTION_LOG": url}
    query = "SELECT * FROM applicants ORDER BY row_number"
    done = project.run(
        "make", "predict", f"INPUT={hidden}", f"QUERY={query}", f"OUTPUT={hidden}",
        "OUTPUT_TABLE=scores", env=secrets,
    )  # fmt: skip
    assert f"scored {count - 2} of {count} rows" in done.stdout, done.stdout[-2000:]
    assert POSTGRES_PASSWORD not in done.stdout
    counts = json.loads(
        project.run(
            "python", "-c", COUNT, url, "scores", "scores_rejects", "predictions"
        ).stdout
    )
    assert counts == {
        "scores": count - 2,
        "scores_rejects": 2,
        "predictions": count - 2,
    }, counts
    tables = json.loads(project.run("python", "-c", TABLES, url).stdout)
    assert not [name for name in tables if "__partial_" in name], tables
    again = project.run(
        "make", "predict", f"INPUT={hidden}", f"QUERY={query}", f"OUTPUT={hidden}",
        "OUTPUT_TABLE=scores", env=secrets, check=False,
    )  # fmt: skip
    assert again.returncode != 0 and "table scores exists" in again.stdout


def generated_tests_against(project: Project, database: str, *pytest_args: str) -> str:
    """The generated project's own pytest, run as a user runs it (from the project's
    environment), with LOAD_TEST_SQL_URL naming `database`; its output."""
    done = project.run(
        "pytest",
        *pytest_args,
        "-p",
        "no:cacheprovider",
        env={"LOAD_TEST_SQL_URL": postgres_url(database), **LOAD_TEST_REQUESTS},
        timeout=900,
    )
    return done.stdout


def test_the_load_test_loses_no_prediction_logged_into_postgresql(
    default_project: Project, postgres_database: str, tmp_path: Path
) -> None:
    """The generated tests/service/test_load.py with LOAD_TEST_SQL_URL: its database case,
    against the real server."""
    project = default_project.copy(tmp_path / default_project.path.name)
    output = generated_tests_against(
        project, postgres_database, "tests/service/test_load.py", "-k", "database"
    )
    assert re.search(r"\b1 passed\b", output), output[-3000:]
    counts = json.loads(
        project.run(
            "python", "-c", COUNT, postgres_url(postgres_database), "predictions"
        ).stdout
    )
    assert counts == {"predictions": int(LOAD_TEST_REQUESTS["LOAD_REQUESTS"])}, counts


def test_the_log_purges_exactly_and_refuses_labels_in_postgresql(
    default_project: Project, postgres_database: str, tmp_path: Path
) -> None:
    """The generated unit tests of the prediction log's retention and feedback checks, with
    LOAD_TEST_SQL_URL: a purge deletes exactly the rows past the cutoff, and a label for an
    unknown prediction, or a second one, is refused, in PostgreSQL."""
    project = default_project.copy(tmp_path / default_project.path.name)
    output = generated_tests_against(
        project,
        postgres_database,
        "tests/unit/test_prediction_log_retention.py",
        "tests/unit/test_prediction_log_feedback.py",
        "-k",
        "postgresql",
    )
    assert re.search(r"\b4 passed\b", output), output[-3000:]


def test_no_answered_prediction_is_lost_through_a_database_outage_or_a_crash(
    default_project: Project, postgres_database: str, tmp_path: Path
) -> None:
    """The generated tests/service/test_durability.py with LOAD_TEST_SQL_URL: PostgreSQL cut
    off for 8 s under load (the service spools, then replays), and the service killed with
    SIGKILL while spooling (the next start replays). Its cases without a database (a refusal
    naming why, a full spool's 503) are the release job's `make test`'s."""
    project = default_project.copy(tmp_path / default_project.path.name)
    output = generated_tests_against(
        project,
        postgres_database,
        "tests/service/test_durability.py",
        "-k",
        "outage or crash",
    )
    assert re.search(r"\b2 passed, 2 deselected\b", output), output[-3000:]
    assert "skipped" not in output, output[-3000:]
