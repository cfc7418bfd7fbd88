"""The generated project's whole lifecycle, end to end, on the default bake.

`default_project` has run `make setup` and `make pipeline` once for the session. Tests here read
it; those that change anything (experiments, broken data, a push) work on a copy, which carries
the DVC cache along so only the stages downstream of the change run.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from batch_scoring import check_make_predict
from conftest import ONE_OPENMP_THREAD, Project, cookiecutter_defaults

pytestmark = pytest.mark.e2e

SOURCE = Path("data/external/german_credit.csv")
DEFAULT_FAMILY = cookiecutter_defaults()["model_family"][0]
OTHER_FAMILIES = cookiecutter_defaults()["model_family"][1:]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_json(project: Project, relative: str) -> Any:
    return json.loads((project.path / relative).read_text())


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def params_of(project: Project) -> dict[str, Any]:
    return yaml.safe_load((project.path / "params.yaml").read_text())


def stage_names(project: Project) -> list[str]:
    return list(yaml.safe_load((project.path / "dvc.yaml").read_text())["stages"])


# ---------------------------------------------------------------------------------------
# Every stage's outputs exist and make sense


def test_every_declared_output_exists(default_project: Project) -> None:
    stages = yaml.safe_load((default_project.path / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        for section in ("outs", "metrics", "plots"):
            for entry in stage.get(section, []):
                out = next(iter(entry)) if isinstance(entry, dict) else entry
                path = default_project.path / out
                assert path.exists(), f"stage {name}: {out} missing"
                if path.is_file():
                    assert path.stat().st_size > 0, f"stage {name}: {out} is empty"


def test_ingest_snapshot_and_manifest(default_project: Project) -> None:
    raw = default_project.path / "data/raw/data.csv"
    manifest = read_json(default_project, "data/raw/manifest.json")
    assert manifest["rows"] == 1000
    assert manifest["sha256"] == sha256(raw)
    assert len(read_rows(raw)) == 1000
    assert manifest["source"] == str(SOURCE)
    assert "risk" in manifest["columns"]


def test_curated_and_validated_data(default_project: Project) -> None:
    curated = read_rows(default_project.path / "data/interim/curated.csv")
    validated = read_rows(default_project.path / "data/interim/validated.csv")
    assert 990 <= len(validated) == len(curated) <= 1000
    # curate turned the source's missing-value token into real missing values
    assert not any("not_known" in row.values() for row in curated)
    assert any(row["saving_accounts"] == "" for row in validated)
    report = read_json(default_project, "reports/validation.json")
    assert report["passed"] is True
    assert report["violations"] == []


def test_split_sizes_follow_params(default_project: Project) -> None:
    settings = params_of(default_project)["split"]
    total = len(read_rows(default_project.path / "data/interim/validated.csv"))
    train = read_rows(default_project.path / "data/processed/train.csv")
    test = read_rows(default_project.path / "data/processed/test.csv")
    reference = read_rows(default_project.path / "data/reference/reference.csv")
    assert settings["test_size"] == 0.25
    assert len(test) == math.ceil(total * settings["test_size"])
    assert len(train) + len(test) == total
    assert len(reference) == len(test)  # the test split, scored by the model

    def shares(rows: list[dict[str, str]]) -> float:
        return sum(row["risk"] == "1" for row in rows) / len(rows)

    assert abs(shares(train) - shares(test)) < 0.02  # stratified


def test_models_and_metrics(default_project: Project) -> None:
    for name in ("baseline.joblib", "model.joblib"):
        assert (default_project.path / "models" / name).stat().st_size > 0
    metrics = read_json(default_project, "reports/metrics.json")
    evaluate = params_of(default_project)["evaluate"]
    primary = evaluate["primary_metric"]
    assert metrics["gate"] == {"passed": True, "failures": []}
    gain = metrics["model"][primary] - metrics["baseline"][primary]
    assert gain >= evaluate["min_gain_over_baseline"]
    for name, threshold in evaluate["thresholds"].items():
        assert metrics["model"][name] >= threshold, name
    assert metrics["model"]["cost"] <= metrics["baseline"]["cost"]
    assert read_json(default_project, "reports/train.json")["model"] == DEFAULT_FAMILY


def test_the_saved_bundle_reproduces_the_reported_metrics(
    default_project: Project,
) -> None:
    """Load models/model.joblib in the project's environment and score the test split."""
    package = default_project.path.name.replace("-", "_")
    script = (
        "import json, pandas as pd\n"
        "from sklearn.metrics import roc_auc_score\n"
        f"from {package}.bundle import load_bundle\n"
        "bundle = load_bundle('models/model.joblib')\n"
        "test = pd.read_csv('data/processed/test.csv')\n"
        "proba = bundle.outputs(test)\n"
        "print(json.dumps({'roc_auc': roc_auc_score(test['risk'] == 1, proba),"
        " 'threshold': bundle.decision.value, 'inputs': list(bundle.features)}))\n"
    )
    result = default_project.run("python", "-c", script)
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    metrics = read_json(default_project, "reports/metrics.json")
    assert measured["roc_auc"] == pytest.approx(metrics["model"]["roc_auc"], abs=1e-9)
    assert measured["threshold"] == metrics["decision"]["threshold"]
    assert "sex" not in measured["inputs"] and "age" in measured["inputs"]


def test_the_decision_threshold_comes_from_the_cost_matrix(
    default_project: Project,
) -> None:
    """The cut-off minimises the cost of mistakes: cheaper than 0.5 and than the baseline."""
    metrics = read_json(default_project, "reports/metrics.json")
    train = read_json(default_project, "reports/train.json")
    cost = params_of(default_project)["evaluate"]["cost_matrix"]
    assert cost["fp"] > cost["fn"]  # the shipped costs call for a high cut-off
    assert metrics["decision"]["chosen_by"] == "minimize_cost"
    threshold = metrics["decision"]["threshold"]
    assert train["decision_threshold"]["value"] == threshold
    assert 0.5 < threshold < 1
    model, at_half = metrics["model"], metrics["model_at_default_threshold"]
    assert at_half["threshold"] == 0.5
    assert model["cost"] < at_half["cost"]
    assert model["cost"] < metrics["baseline"]["cost"]
    assert model["false_positives"] < at_half["false_positives"]
    card = (default_project.path / "docs/model_card.md").read_text()
    assert f"at least **{threshold:.2f}**" in card
    assert f"would cost {at_half['cost']:g}" in card
    assert "`sex` (measured only, not a model input)" in card


def test_plots(default_project: Project) -> None:
    plots = default_project.path / "reports/plots"
    roc = read_rows(plots / "evaluate/roc.csv")
    assert {"fpr", "tpr"} <= set(roc[0])
    fpr = [float(row["fpr"]) for row in roc]
    assert fpr == sorted(fpr) and fpr[0] == 0.0 and fpr[-1] == 1.0
    assert {"precision", "recall"} <= set(
        read_rows(plots / "evaluate/precision_recall.csv")[0]
    )
    confusion = read_rows(plots / "evaluate/confusion.csv")
    assert (
        len(confusion)
        == read_json(default_project, "reports/metrics.json")["test_rows"]
    )
    groups = {row["group"] for row in read_rows(plots / "fairness.csv")}
    assert {"sex=female", "sex=male"} <= groups


def test_fairness_report(default_project: Project) -> None:
    fairness = read_json(default_project, "reports/fairness.json")
    assert set(fairness["features"]) >= {"sex", "age_group"}
    assert set(fairness["features"]["sex"]["groups"]) == {"female", "male"}
    labels = params_of(default_project)["data"]["derived_columns"]["age_group"][
        "labels"
    ]
    assert set(fairness["features"]["age_group"]["groups"]) <= {*labels, "unknown"}
    assert fairness["gate"]["passed"] is True
    limits = params_of(default_project)["fairness"]["thresholds"]
    for feature in ("sex", "age_group"):
        for measure, limit in limits.items():
            assert fairness["features"][feature][measure] <= limit


def test_model_card_reports_the_metrics(default_project: Project) -> None:
    card = (default_project.path / "docs/model_card.md").read_text()
    metrics = read_json(default_project, "reports/metrics.json")["model"]
    for name in ("roc_auc", "f1"):
        assert re.search(rf"\|\s*{name}\s*\|\s*{metrics[name]:.3f}\s*\|", card), name
    assert DEFAULT_FAMILY in card
    assert "sex" in card and "age_group" in card
    assert "Credit Risk Model" in card


def test_dvc_status_is_clean_and_repro_runs_nothing(default_project: Project) -> None:
    status = default_project.run("dvc", "status")
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    repro = default_project.run("dvc", "repro")
    assert "Running stage" not in repro.stdout, repro.stdout
    for stage in stage_names(default_project):
        assert f"'{stage}' didn't change" in repro.stdout, (stage, repro.stdout)


# ---------------------------------------------------------------------------------------
# The generated project's own commands


# The project's own `make test` (every layer, the live canary and the load test included) and
# `make lint` run on a copy of this project as GitHub runs them: the release job's and the CI
# lint job's in test_workflows.py, each in a fresh clone with its own .venv.


def test_make_predict_scores_a_table_and_lists_its_rejects(
    default_project: Project, tmp_path: Path
) -> None:
    check_make_predict(default_project, tmp_path)


# ---------------------------------------------------------------------------------------
# Experiments and the DVC remote, on copies


@pytest.fixture(scope="module")
def experiments(
    default_project: Project, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Project, str]]:
    """Per other model family: a copy of the project after `dvc exp run -S train.model=...`,
    and what it printed. The copies run at once, one OpenMP thread each."""

    def experiment(family: str) -> tuple[Project, str]:
        work = tmp_path_factory.mktemp(f"experiment-{family}")
        project = default_project.copy(work / default_project.path.name)
        project.commit("pipeline results")
        result = project.run(
            "dvc", "exp", "run", "-S", f"train.model={family}", timeout=900,
            env=ONE_OPENMP_THREAD,
        )  # fmt: skip
        return project, result.stdout

    with ThreadPoolExecutor(len(OTHER_FAMILIES)) as pool:
        return dict(
            zip(OTHER_FAMILIES, pool.map(experiment, OTHER_FAMILIES), strict=True)
        )


@pytest.mark.parametrize("family", OTHER_FAMILIES)
def test_experiment_with_another_model_family(
    family: str, experiments: dict[str, tuple[Project, str]]
) -> None:
    project, printed = experiments[family]
    ran = re.findall(r"Running stage '(\w+)'", printed)
    assert "train" in ran and "ingest" not in ran, ran
    assert read_json(project, "reports/train.json")["model"] == family
    assert read_json(project, "reports/metrics.json")["gate"]["passed"] is True
    assert read_json(project, "reports/fairness.json")["gate"]["passed"] is True
    listed = project.run("dvc", "exp", "show", "--json").stdout
    assert family in listed


def test_push_then_pull_into_a_fresh_clone(
    default_project: Project, tmp_path: Path
) -> None:
    """`make push` fills the default remote; a fresh clone gets everything with `make pull`,
    and its `make pipeline` runs no stage but registers the model again (the clone's model
    store is empty, which `dvc repro` alone cannot see)."""
    project = default_project.copy(tmp_path / default_project.path.name)
    project.run("make", "push")
    storage = tmp_path / f"{project.path.name}-dvc-storage"
    assert storage.is_dir(), "the default remote is the project's sibling directory"
    assert any(path.is_file() for path in storage.rglob("*"))
    status = project.run("dvc", "status", "--cloud")
    assert "in sync" in status.stdout, status.stdout

    project.commit("pushed")
    clone_path = (
        tmp_path / f"{project.path.name}-clone"
    )  # a sibling: same relative remote
    project.run("git", "clone", "-q", str(project.path), str(clone_path))
    clone = Project(clone_path, project.environment)
    clone.run("make", "pull")
    assert (clone.path / "models" / "model.joblib").is_file()
    done = clone.run("make", "pipeline")
    ran = re.findall(r"Running stage '([^']+)'", done.stdout)
    assert ran == ["register"], done.stdout[-3000:]  # only the forced re-registration
    assert "lacks" in done.stdout and "registering again" in done.stdout, done.stdout[
        -3000:
    ]
    store = clone.path / ".bentoml" / "models"
    assert any(store.rglob("bundle.joblib")), "the clone's model store is still empty"
    again = clone.run("make", "pipeline")
    assert "registering again" not in again.stdout


# ---------------------------------------------------------------------------------------
# Broken data stops the pipeline at validate, and no model is touched


def _source_rows(project: Project) -> tuple[list[str], list[dict[str, str]]]:
    with (project.path / SOURCE).open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _as_csv(header: list[str], rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def missing_column(header: list[str], rows: list[dict[str, str]]) -> str:
    kept = [name for name in header if name != "housing"]
    return _as_csv(kept, [{key: row[key] for key in kept} for row in rows])


def wrong_type(header: list[str], rows: list[dict[str, str]]) -> str:
    rows[7]["age"] = "abc"
    return _as_csv(header, rows)


def unknown_category(header: list[str], rows: list[dict[str, str]]) -> str:
    rows[3]["housing"] = "castle"
    return _as_csv(header, rows)


def out_of_range(header: list[str], rows: list[dict[str, str]]) -> str:
    rows[11]["duration"] = "999"
    return _as_csv(header, rows)


def empty_file(header: list[str], rows: list[dict[str, str]]) -> str:
    return ""


def header_only(header: list[str], rows: list[dict[str, str]]) -> str:
    return ",".join(header) + "\n"


BROKEN = {
    # case: (how to break the source, words the failure message must contain)
    "missing-column": (missing_column, ["housing", "missing"]),
    "wrong-type": (wrong_type, ["age", "abc", "type"]),
    "unknown-category": (unknown_category, ["housing", "castle"]),
    "out-of-range": (out_of_range, ["duration", "999"]),
    "empty-file": (empty_file, ["empty"]),
    "header-only": (header_only, ["empty", "no rows"]),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_data_stops_at_validate(
    case: str, default_project: Project, tmp_path: Path
) -> None:
    project = default_project.copy(tmp_path / default_project.path.name)
    model = project.path / "models/model.joblib"
    model_before = (sha256(model), model.stat().st_mtime_ns)
    models_before = sorted(path.name for path in model.parent.iterdir())

    breaker, words = BROKEN[case]
    header, rows = _source_rows(project)
    (project.path / SOURCE).write_text(breaker(header, rows))

    result = project.run("dvc", "repro", check=False)
    output = result.stdout
    assert result.returncode != 0, output
    assert "validate failed" in output, output
    for word in words:
        assert word.lower() in output.lower(), f"{word!r} not in:\n{output}"
    ran = re.findall(r"Running stage '(\w+)'", output)
    assert ran == ["ingest", "curate", "validate"], ran
    assert (sha256(model), model.stat().st_mtime_ns) == model_before
    assert sorted(path.name for path in model.parent.iterdir()) == models_before
    assert not (project.path / "data/interim/validated.csv").exists()


# ---------------------------------------------------------------------------------------
# Lineage and outputs, on copies


def test_editing_the_schema_makes_train_and_everything_after_it_stale(
    default_project: Project, tmp_path: Path
) -> None:
    project = default_project.copy(tmp_path / default_project.path.name)
    schema_file = project.path / "schema.yaml"
    schema = yaml.safe_load(schema_file.read_text())
    schema["columns"]["duration"]["max"] = (
        240  # a wider range: the same data still passes
    )
    schema_file.write_text(yaml.safe_dump(schema, sort_keys=False))
    status = project.run("dvc", "status", "--json").stdout
    changed = set(json.loads(status.strip().splitlines()[-1]))
    assert {"validate", "split", "train"} <= changed, changed
    assert "ingest" not in changed and "curate" not in changed


def test_a_failed_stage_leaves_no_half_new_outputs_and_the_last_good_ones_restore(
    default_project: Project, tmp_path: Path
) -> None:
    """Under `dvc repro`, DVC removes a stage's outputs before running it (their last good
    versions stay in its cache); the stage writes all of its files only once its work has
    succeeded. So a train that fails leaves no model at all, never an old one beside a new
    report, and `dvc checkout` brings back exactly the last good model."""
    project = default_project.copy(tmp_path / default_project.path.name)
    models = project.path / "models"
    good = {path.name: sha256(path) for path in models.glob("*.joblib")}
    params = params_of(project)
    params["train"]["search"][DEFAULT_FAMILY] = {"no_such_parameter": [1]}
    (project.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    result = project.run("dvc", "repro", check=False)

    assert result.returncode != 0
    assert f"train.search.{DEFAULT_FAMILY}" in result.stdout, result.stdout[-2000:]
    assert list(models.glob("*.joblib")) == [], "no model, old or new"
    assert "train" in json.loads(project.run("dvc", "status", "--json").stdout)
    project.run("dvc", "checkout", "models/model.joblib", "models/baseline.joblib")
    assert {path.name: sha256(path) for path in models.glob("*.joblib")} == good
