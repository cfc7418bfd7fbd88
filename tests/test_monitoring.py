"""The generated project's monitoring, as a newcomer runs it on day one (each command with a
user's PATH): `make simulate` then `make monitor` passes; `make simulate DRIFT=1` then
`make monitor` fails naming the drifted columns; both runs are in the history page and the
Evidently workspace; traffic and feedback sent through the running service (`make serve`) give
the report classification performance; `make monitor-ui` serves the workspace on loopback;
`make retrain` re-ingests the source and reruns what changed; the history page renders in a
real headless browser, every link opens its report, with no console error.

The browser is Chromium (`.ci/run` installs Debian's) or Google Chrome (a GitHub runner's);
without one the browser test is skipped, unless REQUIRE_BROWSER_TEST=1 (set by `.ci/run`): then
it fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import Project
from loopback import http, running_make

pytestmark = pytest.mark.e2e

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REQUIRE_BROWSER = "REQUIRE_BROWSER_TEST"


def results(project: Project) -> list[dict[str, Any]]:
    runs = sorted((project.path / "reports/monitoring/runs").glob("*/result.json"))
    return [json.loads(path.read_text()) for path in runs]


@pytest.fixture(scope="module")
def monitored(
    default_project: Project, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Project, dict[str, str]]:
    """A copy of the default project after the four commands of docs/monitoring.md."""
    project = default_project.copy(tmp_path_factory.mktemp("monitor") / "project")
    printed = {}
    printed["simulate"] = project.run("make", "simulate").stdout
    printed["monitor"] = project.run("make", "monitor", timeout=900).stdout
    printed["simulate DRIFT=1"] = project.run("make", "simulate", "DRIFT=1").stdout
    drifted = project.run("make", "monitor", check=False, timeout=900)
    assert drifted.returncode != 0, drifted.stdout[-3000:]
    printed["monitor after drift"] = drifted.stdout
    return project, printed


def test_simulated_traffic_passes_and_drift_fails_naming_the_columns(
    monitored: tuple[Project, dict[str, str]],
) -> None:
    project, printed = monitored
    assert "sent 400 simulated requests to the prediction log" in printed["simulate"]
    assert re.search(r"## Monitoring \S+: passed", printed["monitor"]), printed[
        "monitor"
    ][-2000:]
    failure = printed["monitor after drift"]
    assert "monitor gate failed" in failure
    for column in ("credit_amount", "duration"):
        assert f"key_feature:{column}: {column} drift score" in failure, failure[-2000:]
    first, second = results(project)
    assert (first["passed"], second["passed"]) == (True, False)
    assert {"credit_amount", "duration"} <= set(second["drifted_columns"])
    assert first["window"]["simulated"] == 400 and second["window"]["simulated"] == 800


def test_both_runs_are_in_the_history_and_the_workspace(
    monitored: tuple[Project, dict[str, str]],
) -> None:
    project, _ = monitored
    index = (project.path / "reports/monitoring/index.html").read_text()
    for result in results(project):
        assert f'href="runs/{result["run_id"]}/report.html"' in index
    workspace = project.path / "reports/monitoring/workspace"
    snapshots = list(workspace.rglob("snapshots/*.json"))
    assert len(snapshots) == 4, snapshots  # data and performance reports, per run
    summary = (project.path / "reports/monitoring/summary.md").read_text()
    assert "FAILED" in summary and "| key_feature:duration | **FAIL** |" in summary


def test_feedback_through_the_service_gives_performance(
    default_project: Project, tmp_path: Path
) -> None:
    project = default_project.copy(tmp_path / "project")
    with running_make(project, ["serve"], tmp_path / "serve.log") as server:
        sent = project.run("make", "simulate", f"URL={server.url}").stdout
    assert f"to {server.url}" in sent and "200 with feedback" in sent, sent
    project.run("make", "monitor", timeout=900)
    [result] = results(project)
    window = result["window"]
    assert (window["rows"], window["labelled"], window["simulated"]) == (400, 200, 400)
    assert window["unmatched_feedback"] == 0
    current, reference = (
        result["performance"]["current"],
        result["performance"]["reference"],
    )
    assert current and reference and 0.5 < current["roc_auc"] <= 1
    assert (project.path / result["performance_report"]).stat().st_size > 100_000


def test_monitor_ui_serves_the_workspace_on_loopback(
    monitored: tuple[Project, dict[str, str]], tmp_path: Path
) -> None:
    project, _ = monitored
    with running_make(
        project,
        ["monitor-ui"],
        tmp_path / "ui.log",
        port_variable="UI_PORT",
        ready_path="/",
    ) as ui:
        status, body = http(f"{ui.url}/api/projects")
    assert status == 200, body
    assert "Credit Risk Model" in body
    assert not ui.survivors, ui.survivors


BROWSERS = ("chromium", "google-chrome", "chromium-browser")  # same flags, same engine


def chromium() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    reason = (
        "no headless Chromium or Chrome on PATH (install one: `apt install chromium`,"
        " `brew install --cask chromium`)"
    )
    if os.environ.get(REQUIRE_BROWSER) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_BROWSER}=1 requires this test")
    pytest.skip(f"{reason}; set {REQUIRE_BROWSER}=1 to fail instead")


def browse(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on a local file; stdout is the DOM after scripts ran (--dump-dom)."""
    return subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            *extra,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def console_errors(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if "CONSOLE" in line and ("ERROR" in line or "Uncaught" in line)
    ]


def test_history_page_and_its_reports_render_in_a_browser(
    monitored: tuple[Project, dict[str, str]], tmp_path: Path
) -> None:
    project, _ = monitored
    index = project.path / "reports/monitoring/index.html"
    screenshot = tmp_path / "history.png"
    shot = browse(
        index,
        tmp_path / "profile-shot",
        f"--screenshot={screenshot}",
        "--window-size=1400,500",
    )
    assert screenshot.is_file() and screenshot.stat().st_size > 5_000, shot.stderr[
        -2000:
    ]
    page = browse(index, tmp_path / "profile-index", "--dump-dom")
    assert page.returncode == 0, page.stderr[-2000:]
    assert "Monitoring history" in page.stdout
    assert not console_errors(page.stderr), console_errors(page.stderr)
    links = re.findall(r'href="([^"]+\.html)"', page.stdout)
    assert len(links) == 4, links  # a data and a performance report per run
    for number, link in enumerate(links):
        report = browse(
            index.parent / link, tmp_path / f"profile-{number}", "--dump-dom"
        )
        assert report.returncode == 0, report.stderr[-2000:]
        rendered = (
            "Model Quality Metrics" if "performance" in link else "number of rows"
        )
        assert rendered in report.stdout, f"{link} did not render its report"
        assert not console_errors(report.stderr), (link, console_errors(report.stderr))
    shutil.copy(
        screenshot, Path(os.environ.get("TMPDIR", "/tmp")) / "monitoring-history.png"
    )


def test_retrain_re_ingests_the_source_and_reruns_what_changed(
    default_project: Project, tmp_path: Path
) -> None:
    """`make retrain` (what retrain.yml runs): the source is read again; the same data changes
    nothing downstream, new data would rerun the lifecycle behind the gates."""
    project = default_project.copy(tmp_path / "project")
    output = project.run("make", "retrain", timeout=900).stdout
    assert "Running stage 'ingest'" in output, output[-2000:]
    assert "Stage 'train' didn't change" in output, output[-2000:]
    status = project.run("dvc", "status").stdout
    assert "Data and pipelines are up to date" in status, status
