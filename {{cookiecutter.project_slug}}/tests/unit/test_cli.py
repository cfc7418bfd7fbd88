from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from {{ cookiecutter.package_name }} import cli
from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.io import load_table, write_table
from {{ cookiecutter.package_name }}.schema import load_schema
from tests.conftest import edit_params

pytestmark = pytest.mark.unit


def test_stage_errors_are_one_clear_message(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_params(workspace, data__source="data/external/nowhere.csv", data__query=None)
    assert main(["ingest"]) == 1
    assert (
        capsys.readouterr().err.strip()
        == "ingest failed: data source not found: data/external/nowhere.csv"
    )


def test_bad_params_stop_every_command(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Path("params.yaml").write_text(
        Path("params.yaml").read_text().replace("cv_folds: 2", "cv_folds: one")
    )
    assert main(["curate"]) == 1
    assert "train.cv_folds" in capsys.readouterr().err


def test_schema_command_drafts_a_loadable_schema(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Path("schema.yaml").unlink()
    assert main(["schema"]) == 0
    assert "Review it" in capsys.readouterr().out
    drafted = load_schema("schema.yaml")
    assert drafted.feature_names


def test_schema_command_lists_every_problem_with_its_params_change(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = edit_params(workspace)
    table = load_table(params.data.source, params.data.query)
    table["notes"] = [f"free text {i}" for i in range(len(table))]
    table["referral"] = ["friend" if i % 5 == 0 else None for i in range(len(table))]
    write_table(table, "data/external/wider.csv")
    edit_params(workspace, data__source="data/external/wider.csv")
    before = Path("schema.yaml").read_text()

    assert main(["schema"]) == 1

    error = capsys.readouterr().err
    assert "2 problem(s)" in error
    assert "add 'notes' to data.drop_columns" in error
    assert "'referral': 80.0% missing" in error and "add 'referral' to data.drop_columns" in error
    assert Path("schema.yaml").read_text() == before  # nothing written
    edit_params(workspace, data__drop_columns=[*params.data.drop_columns, "notes", "referral"])
    assert main(["schema"]) == 0


def test_unknown_command_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["deploy"])
    assert caught.value.code == 2
    assert "invalid choice: 'deploy'" in capsys.readouterr().err


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    listed = capsys.readouterr().out
    others = (
        "schema",
        "predict",
        "monitor",
        "simulate",
        "monitor-ui",
        "image",
        "registered",
        "challenge",
        "record-deployment",
    )
    for name in (*(stage.replace("_", "-") for stage in cli.STAGES), *others):
        assert f"\n    {name} " in listed, name


# What the Makefile passes (its variables filled in); dvc.yaml's stages are read below.
MAKEFILE_COMMANDS = [
    (["registered"], cli.registered),
    (["schema"], cli.draft_schema),
    (["image", "--image", "registry.example/o/p", "--allow-dirty"], cli.image),
    (["image", "--check"], cli.image),
    (["simulate", "--url", "http://127.0.0.1:3000", "--drift"], cli.simulate),
    (["monitor"], cli.monitor),
    (
        ["predict", "--input", "in.csv", "--output", "o.csv", "--query", "q", "--overwrite"],
        cli.predict,
    ),
    (
        ["predict", "--input", "i.csv", "--output", "sqlite:///s.db", "--output-table", "t"],
        cli.predict,
    ),
    (["monitor-ui", "--port", "8001"], cli.monitor_ui),
    (["challenge"], cli.challenge),
]


def test_every_invocation_of_the_project_reaches_its_command(project_root: Path) -> None:
    stages = yaml.safe_load((project_root / "dvc.yaml").read_text())["stages"]
    invocations = [
        (stage["cmd"].split()[3:], cli.run_stage) for stage in stages.values()
    ] + MAKEFILE_COMMANDS
    parser = cli.build_parser()
    for argv, command in invocations:
        assert parser.parse_args(argv).run is command, argv


def test_the_image_is_the_one_deploy_deploys_unless_named(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make image` builds params.yaml's deploy.image (what deploy/ and the deploy workflow
    name), so that the image the release pushes is the one that gets deployed."""
    from {{ cookiecutter.package_name }}.serving import image as images

    built: list[str] = []

    def build(repository: str, allow_dirty: bool) -> SimpleNamespace:
        built.append(repository)
        return SimpleNamespace(tags=[f"{repository}:0.1.0"])

    monkeypatch.setattr(images, "build", build)
    edit_params(workspace, deploy__image="registry.example/team/model")
    assert main(["image"]) == 0
    assert main(["image", "--image", "registry.example/other/model"]) == 0
    assert built == ["registry.example/team/model", "registry.example/other/model"]


def test_purge_deletes_what_is_older_than_the_retention_from_the_log(
    workspace: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime, timedelta

    from {{ cookiecutter.package_name }}.serving.prediction_log import (
        ENV_VAR,
        FILE_ENV_VAR,
        DirectorySink,
        prediction_record,
    )

    for name in (ENV_VAR, FILE_ENV_VAR):
        monkeypatch.delenv(name, raising=False)
    edit_params(workspace, monitor__retention_days=30)
    sink = DirectorySink(workspace / "logs" / "predictions")
    now = datetime.now(UTC)
    ages = {"old": 31, "recent": 29}
    sink.write(
        "predictions",
        [
            prediction_record(
                {},
                1,
                0.5,
                "v",
                prediction_id=key,
                timestamp=(now - timedelta(days=days)).isoformat(),
            )
            for key, days in ages.items()
        ],
    )
    assert main(["purge"]) == 0
    assert "log predictions: 1" in capsys.readouterr().out
    assert sink.read_predictions()["prediction_id"].tolist() == ["recent"]
    assert main(["purge", "--before", (now + timedelta(days=1)).date().isoformat()]) == 0
    assert sink.read_predictions().empty
    with pytest.raises(SystemExit):
        main(["purge", "--before", "last tuesday"])
