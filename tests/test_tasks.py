"""Every task beside binary, twice: the project baked for it, and a user's own table of it.

Baked with `task=multiclass` or `task=regression`, a project ships a real table of that task
(census adults' occupation group; wages) with params.yaml set for it, and runs its whole
lifecycle green: `make pipeline` deciding by the cost of mistakes, fairness, the card, the
registry, and its own `make test` (the service's answers and log, monitoring's pass and drift
alarm, the canary's decision check live: the generated suite tests each for the task).

A user's own table of either task (penguin species, tests/data/penguins.csv; credit-card
balances, tests/data/credit_balance.csv; tests/data/README.md says where they come from) goes
through a project baked with the binary defaults by params.yaml changes and `make schema` only,
following the messages: `make schema` says the target does not fit a binary task and which
`data.task` to set; then params.yaml's own check lists every key whose meaning depends on the
task, each with what it takes.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from batch_scoring import check_make_predict
from conftest import (
    CANARY_RELEASE_TEST,
    DATA_INDEPENDENT_TESTS,
    ONE_OPENMP_THREAD,
    BakeProject,
    Project,
    deselecting,
)

pytestmark = pytest.mark.e2e

DATA = Path(__file__).parent / "data"
TASKS = ("multiclass", "regression")
# The shipped tables' classes (none for a number), as the baked schema.yaml lists them.
CLASSES = {
    "multiclass": ["clerical_sales", "managerial_professional", "manual", "service"],
    "regression": [],
}

OWN_TABLES: dict[str, dict[str, Any]] = {
    "multiclass": {
        "file": "penguins.csv",
        "data": {
            "target": "species",
            "sensitive_features": ["sex"],
            "not_model_inputs": [],
            "derived_columns": {},
        },
        # What the user decides once params.yaml's check names the keys.
        "settings": {
            "train": {"scoring": "f1_macro", "baseline": "prior"},
            "evaluate": {
                "primary_metric": "macro_f1",
                "thresholds": {"macro_f1": 0.8, "balanced_accuracy": 0.8},
                "min_gain_over_baseline": 0.3,
                "cost_matrix": {"Chinstrap": {"Adelie": 2}},
            },
            "fairness": {
                "thresholds": {
                    "demographic_parity_difference": 0.3,
                    "accuracy_difference": 0.2,
                }
            },
        },
        "classes": ["Adelie", "Chinstrap", "Gentoo"],
    },
    "regression": {
        "file": "credit_balance.csv",
        "data": {
            "target": "Balance",
            "drop_columns": ["ID"],
            "sensitive_features": ["Gender", "Ethnicity", "age_group"],
            "not_model_inputs": ["Gender", "Ethnicity"],
            "derived_columns": {
                "age_group": {
                    "source": "Age",
                    "bins": [0, 40, 60, 200],
                    "labels": ["<40", "40-59", "60+"],
                }
            },
        },
        "settings": {
            "train": {"scoring": "neg_mean_absolute_error", "baseline": "median"},
            "evaluate": {
                "primary_metric": "mae",
                "thresholds": {"mae": 150.0, "r2": 0.7},
                "min_gain_over_baseline": 100.0,
                "cost_matrix": {"under": 1, "over": 1},
            },
            "fairness": {
                "thresholds": {"mae_difference": 150.0, "mean_error_difference": 150.0},
                # 400 rows, so a test split of 100: groups of 20 are what it has to compare
                "min_group_rows": 20,
            },
        },
        "classes": [],
    },
}


def edit(project: Project, change: Any) -> None:
    params_file = project.path / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    change(params)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))


def read_json(project: Project, relative: str) -> Any:
    return json.loads((project.path / relative).read_text())


def params_of(project: Project) -> dict[str, Any]:
    return yaml.safe_load((project.path / "params.yaml").read_text())


def schema_target(project: Project) -> Any:
    return yaml.safe_load((project.path / "schema.yaml").read_text())["target"]["name"]


# The module's slow work runs as four chains at once, each command with one OpenMP thread
# (conftest.ONE_OPENMP_THREAD): per task, the project baked for it, `make setup pipeline`, then
# its own `make test`; and a binary project taking a user's own table of the task. Each is
# mostly one process at a time; together they keep both cores busy (one after the other they
# took about 440 s here).


@dataclass
class Runs:
    """The chains' results, each ready when its own chain has come that far."""

    shipped: dict[str, Future[Project]]  # after `make setup pipeline`
    suites: dict[str, Future[subprocess.CompletedProcess[str]]]  # its own `make test`
    own: dict[str, Future[tuple[Project, dict[str, str]]]]  # see follow_the_messages


def pipelined(project: Project) -> Project:
    project.run("make", "setup", timeout=1200, env=ONE_OPENMP_THREAD)
    project.run("make", "pipeline", timeout=1200, env=ONE_OPENMP_THREAD)
    return project


def own_suite(shipped: Future[Project]) -> subprocess.CompletedProcess[str]:
    """The project's own `make test`, once its pipeline ran. Nothing in it is timed, since the
    canary release (and the other task-independent files) is the release job's."""
    env = {
        **deselecting(*DATA_INDEPENDENT_TESTS, CANARY_RELEASE_TEST),
        **ONE_OPENMP_THREAD,
    }
    return shipped.result().run("make", "test", check=False, timeout=1800, env=env)


def follow_the_messages(task: str, project: Project) -> tuple[Project, dict[str, str]]:
    """A binary project pointed at a user's own table of `task`, after following every
    message of `make schema` and params.yaml's check, then `make pipeline`; and each
    refusal's output."""
    table = OWN_TABLES[task]
    project.run("make", "setup", timeout=1200, env=ONE_OPENMP_THREAD)
    shutil.copy(DATA / table["file"], project.path / "data/external" / table["file"])

    def point_at_table(params: dict[str, Any]) -> None:
        params["data"].update(source=f"data/external/{table['file']}", **table["data"])

    edit(project, point_at_table)
    refusals = {}
    first = project.run("make", "schema", check=False, env=ONE_OPENMP_THREAD)
    assert first.returncode != 0, first.stdout[-2000:]
    refusals["schema"] = first.stdout
    named_task = re.findall(r"set data\.task: (\w+)", first.stdout)
    to_remove = re.findall(r"remove '(\w+)' from monitor\.([\w.]+)", first.stdout)

    def follow(params: dict[str, Any]) -> None:
        params["data"]["task"] = named_task[0]
        for name, key in to_remove:
            section, setting = key.split(".")
            value = params["monitor"][section][setting]
            value.pop(name) if isinstance(value, dict) else value.remove(name)

    edit(project, follow)
    second = project.run("make", "schema", check=False, env=ONE_OPENMP_THREAD)
    assert second.returncode != 0, second.stdout[-2000:]
    refusals["params"] = second.stdout

    def settle(params: dict[str, Any]) -> None:
        params["data"]["positive_label"] = None  # as the message says
        for section, values in table["settings"].items():
            params[section].update(values)

    edit(project, settle)
    project.run("make", "schema", env=ONE_OPENMP_THREAD)
    project.run("make", "pipeline", timeout=1200, env=ONE_OPENMP_THREAD)
    return project, refusals


@pytest.fixture(scope="module")
def runs(bake_project: BakeProject) -> Iterator[Runs]:
    """The four chains, started together (the bakes one at a time: cookiecutter changes the
    working directory); the module's tests read each result as its chain gets there."""
    shipped_bakes = {task: bake_project({"task": task}) for task in TASKS}
    own_bakes = {task: bake_project() for task in TASKS}
    with ThreadPoolExecutor(3 * len(TASKS)) as pool:
        shipped = {task: pool.submit(pipelined, shipped_bakes[task]) for task in TASKS}
        yield Runs(
            shipped=shipped,
            suites={task: pool.submit(own_suite, shipped[task]) for task in TASKS},
            own={
                task: pool.submit(follow_the_messages, task, own_bakes[task])
                for task in TASKS
            },
        )


@pytest.fixture(scope="module", params=TASKS)
def shipped(request: pytest.FixtureRequest, runs: Runs) -> tuple[str, Project]:
    """(task, the project baked for it after `make pipeline` on its shipped table)."""
    return request.param, runs.shipped[request.param].result()


@pytest.fixture(scope="module", params=TASKS)
def own_table(
    request: pytest.FixtureRequest, runs: Runs
) -> tuple[str, Project, dict[str, str]]:
    """(task, a binary project after following every message, each refusal's output)."""
    project, refusals = runs.own[request.param].result()
    return request.param, project, refusals


def test_make_schema_names_the_task_and_params_name_every_key_it_changes(
    own_table: tuple[str, Project, dict[str, str]],
) -> None:
    task, _, refusals = own_table
    target = OWN_TABLES[task]["data"]["target"]
    assert f"data.target: '{target}'" in refusals["schema"]
    assert f"set data.task: {task}" in refusals["schema"], refusals["schema"][-2000:]
    message = refusals["params"]
    for key in (
        "data.positive_label",
        "evaluate.primary_metric",
        "evaluate.thresholds.roc_auc",
        "fairness.thresholds.demographic_parity_difference"
        if task == "regression"
        else "fairness.thresholds.equalized_odds_difference",
        "evaluate.cost_matrix",
        "train.scoring: 'roc_auc' does not score",
    ):
        assert key in message, (key, message[-3000:])
    if task == "regression":
        assert "train.baseline: 'prior' is not one of a regression task's" in message


def test_the_own_table_runs_the_lifecycle_and_beats_the_baseline(
    own_table: tuple[str, Project, dict[str, str]],
) -> None:
    task, project, _ = own_table
    table = OWN_TABLES[task]
    schema = yaml.safe_load((project.path / "schema.yaml").read_text())
    expected = {"name": table["data"]["target"]}
    if table["classes"]:
        expected["values"] = table["classes"]
    assert schema["target"] == expected
    metrics = read_json(project, "reports/metrics.json")
    assert metrics["task"] == task and metrics["gate"]["passed"] is True
    model, baseline = metrics["model"], metrics["baseline"]
    assert model["cost"] < baseline["cost"]
    primary = table["settings"]["evaluate"]["primary_metric"]
    gain = table["settings"]["evaluate"]["min_gain_over_baseline"]
    if task == "regression":
        assert model[primary] <= baseline[primary] - gain
    else:
        assert model[primary] >= baseline[primary] + gain
    fairness = read_json(project, "reports/fairness.json")
    assert fairness["gate"]["passed"] is True
    assert set(fairness["features"]) == set(table["data"]["sensitive_features"])
    registry = read_json(project, "reports/registry.json")
    assert registry["target"]["task"] == task
    status = project.run("dvc", "status")
    assert "Data and pipelines are up to date" in status.stdout, status.stdout


def test_the_model_decides_by_cost_and_beats_the_baseline(
    shipped: tuple[str, Project],
) -> None:
    task, project = shipped
    metrics = read_json(project, "reports/metrics.json")
    assert metrics["task"] == task and metrics["gate"]["passed"] is True
    model, plain, baseline = (
        metrics["model"],
        metrics["model_at_default_threshold"],
        metrics["baseline"],
    )
    assert model["cost"] < baseline["cost"]
    assert (
        model["cost"] <= plain["cost"] * 1.05
    )  # the costs' decision, not the plain one
    if task == "multiclass":
        assert model["macro_f1"] > baseline["macro_f1"] + 0.2
        assert list(model["per_class"]) == CLASSES[task]
        assert sum(map(sum, model["confusion_matrix"])) == metrics["test_rows"]
        # the costly mistake is rarer than when deciding the most probable class
        assert model["confusion_matrix"][1][2] + model["confusion_matrix"][1][3] < (
            plain["confusion_matrix"][1][2] + plain["confusion_matrix"][1][3]
        )
    else:
        assert model["mae"] < baseline["mae"] - 5
        # too low about a third of the time: the cost quantile 2 / (2 + 1)
        assert abs(model["under_share"] - 1 / 3) < 0.08, model["under_share"]
        assert model["mean_prediction"] > plain["mean_prediction"]
    train = read_json(project, "reports/train.json")
    assert train["task"] == task
    assert train["decision_threshold"]["source"] == "minimize_cost"


def test_fairness_measures_the_tasks_disparities(shipped: tuple[str, Project]) -> None:
    task, project = shipped
    params = params_of(project)
    fairness = read_json(project, "reports/fairness.json")
    assert set(fairness["features"]) == set(params["data"]["sensitive_features"])
    limits = params["fairness"]["thresholds"]
    for result in fairness["features"].values():
        for measure, limit in limits.items():
            assert 0 <= result[measure] <= limit
    groups = fairness["features"]["age_group"]["groups"]
    if task == "multiclass":
        assert {f"selection_rate[{name}]" for name in CLASSES[task]} < set(
            groups["25-44"]
        )
    else:
        assert {"mae", "mean_error", "count"} == set(groups["25-44"])


def test_the_card_reference_and_registry_describe_the_task(
    shipped: tuple[str, Project],
) -> None:
    task, project = shipped
    card = (project.path / "docs/model_card.md").read_text()
    with (project.path / "data/reference/reference.csv").open() as file:
        columns = next(csv.reader(file))
    registry = read_json(project, "reports/registry.json")
    target = params_of(project)["data"]["target"]
    assert schema_target(project) == target
    assert registry["target"]["task"] == task
    if task == "multiclass":
        assert "the class with the lowest expected cost" in card
        assert "`managerial_professional` decided `service` 3" in card
        assert columns[-5:] == [
            "prediction",
            *(f"probability[{name}]" for name in CLASSES[task]),
        ]
        assert registry["target"]["classes"] == CLASSES[task]
    else:
        assert "the 67% quantile of the outcome" in card
        assert "DummyRegressor(strategy='median')" in card
        assert columns[-2:] == [target, "prediction"]
    status = project.run("dvc", "status")
    assert "Data and pipelines are up to date" in status.stdout, status.stdout


def test_make_predict_scores_a_table_of_the_task(
    shipped: tuple[str, Project], tmp_path: Path
) -> None:
    check_make_predict(shipped[1], tmp_path, every_refusal=False)


@pytest.mark.parametrize("task", TASKS)
def test_the_shipped_project_passes_its_own_tests(task: str, runs: Runs) -> None:
    """Its own `make test`: the unit, data, model, bias and service layers for the task (its
    answers equal the bundle's offline, its log holds the task's outputs), monitoring passing
    then raising the drift alarm, and the canary's decision check measured live through
    Prometheus (REQUIRE_CANARY_TEST, as .ci/run sets it, makes a missing one fail). The canary
    release around that check is the task's only through it: the release job runs it."""
    result = runs.suites[task].result()
    summary = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in summary and "failed" not in summary, result.stdout[-3000:]
    assert "tests/deploy/test_decision_check.py ..." in result.stdout, (
        "the decision check did not run"
    )
