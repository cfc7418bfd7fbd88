"""Bake the template with every value of every choice and check what each one generates.

Each case below is a full set of answers; together they cover every choice value in
cookiecutter.json (a meta-test keeps it that way). Every baked project must render cleanly (no
Jinja left over), parse (YAML, TOML, JSON), compile, and pass the project's own ruff settings;
each option must show up where it is used.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import (
    TEMPLATE,
    TEMPLATE_PROJECT,
    bake,
    cookiecutter_defaults,
    interpreter_or_skip,
)
from workflow_runner import action_specs, input_problems, split_uses

# Answers per case. Written out (not derived from cookiecutter.json) so that the meta-test
# below notices a new choice value that no case bakes.
CASES: dict[str, dict[str, str]] = {
    "defaults": {},
    "mit-hgb-local-relative-3.11": {
        "license": "MIT",
        "model_family": "hist_gradient_boosting",
        "dvc_remote": "local",
        "dvc_remote_url": "../shared-storage/dvc",
        "python_version": "3.11",
    },
    "apache-rf-s3-3.12": {
        "license": "Apache-2.0",
        "task": "multiclass",
        "model_family": "random_forest",
        "dvc_remote": "s3",
        "dvc_remote_url": "s3://acme-ml-data/credit",
        "python_version": "3.12",
        "monitoring_cron": "30 2 * * *",
        "github_owner": "acme-labs",
    },
    "bsd-lr-gcs-3.13": {
        "license": "BSD-3-Clause",
        "task": "regression",
        "model_family": "logistic_regression",
        "dvc_remote": "gcs",
        "dvc_remote_url": "gs://acme-ml-data/credit",
        "python_version": "3.13",
        "monitoring_cron": "15 */6 * * 1-5",
    },
    "proprietary-rf-azure": {
        "license": "Proprietary",
        "model_family": "random_forest",
        "dvc_remote": "azure",
        "dvc_remote_url": "azure://models/credit",
        "github_owner": "acme",
    },
    "local-absolute": {
        "model_family": "logistic_regression",
        "dvc_remote": "local",
        "dvc_remote_url": "/srv/dvc-storage/credit",
    },
    # With the cases above, every task with every model family.
    "multiclass-hgb": {"task": "multiclass", "model_family": "hist_gradient_boosting"},
    "multiclass-lr": {"task": "multiclass", "model_family": "logistic_regression"},
    "regression-hgb": {"task": "regression", "model_family": "hist_gradient_boosting"},
    "regression-rf": {"task": "regression", "model_family": "random_forest"},
    "renamed": {
        # 30 characters, the longest slug and package name the hook allows.
        "project_name": "Regional Loan Default Warning2",
        "description": "Score small-business loan applications for default risk, with lineage,"
        " monitoring and fairness checks from the first run, so that reviewers trust it.",
        "author_name": "Ada Lovelace",
        "author_email": "ada@example.org",
    },
}
# python_version is free text; the versions the template supports (named in its prompt):
PYTHON_VERSIONS = ("3.11", "3.12", "3.13")
# Free-text options whose value must reach every file that uses it.
FREE_TEXT = (
    "project_name",
    "description",
    "author_name",
    "author_email",
    "github_owner",
    "monitoring_cron",
)
TEXT_SUFFIXES = {
    ".py",
    ".toml",
    ".yaml",
    ".yml",
    ".json",
    ".md",
    ".txt",
    ".cfg",
    ".ini",
    ".csv",
    ".sql",
    ".sh",
    "",
}
LICENSE_PHRASES = {
    "MIT": ["MIT License", "Permission is hereby granted, free of charge"],
    "Apache-2.0": ["Apache License", "Version 2.0"],
    "BSD-3-Clause": [
        "Redistribution and use in source and binary forms",
        "Neither the name of",
    ],
}
SPDX = {
    "MIT": "MIT",
    "Apache-2.0": "Apache-2.0",
    "BSD-3-Clause": "BSD-3-Clause",
    "Proprietary": "LicenseRef-Proprietary",
}


def answers_for(overrides: dict[str, str]) -> dict[str, Any]:
    """The answers cookiecutter renders for these overrides (derived defaults included)."""
    from cookiecutter.generate import generate_context
    from cookiecutter.prompt import prompt_for_config

    context = generate_context(
        context_file=str(TEMPLATE / "cookiecutter.json"), extra_context=overrides
    )
    return dict(prompt_for_config(context, no_input=True))


@pytest.fixture(scope="module")
def baked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Each case baked once for the module, on first use."""

    class Lazy(dict[str, Path]):
        def __missing__(self, case: str) -> Path:
            output = tmp_path_factory.mktemp(f"bake-{case}")
            self[case] = path = bake(output, CASES[case])
            return path

    yield Lazy()


def files(project: Path) -> list[Path]:
    return sorted(
        path
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    )


def text_files(project: Path) -> dict[Path, str]:
    texts = {}
    for path in files(project):
        if path.suffix not in TEXT_SUFFIXES and path.name not in {"Makefile", "config"}:
            continue
        try:
            texts[path] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return texts


def template_files_using(key: str) -> list[Path]:
    """Files of the template (relative to the project root) whose text uses an option."""
    pattern = re.compile(r"cookiecutter\s*(\.|\[\s*['\"])" + re.escape(key) + r"\b")
    used = []
    for path in files(TEMPLATE_PROJECT):
        try:
            if pattern.search(path.read_text(encoding="utf-8")):
                used.append(path.relative_to(TEMPLATE_PROJECT))
        except UnicodeDecodeError:
            continue
    return used


def rendered(relative: Path, answers: dict[str, Any]) -> Path:
    """A template path with its {{ cookiecutter.x }} parts replaced by the answers."""
    text = str(relative)
    for key, value in answers.items():
        if isinstance(value, str):
            text = text.replace("{{cookiecutter." + key + "}}", value)
    return Path(text)


def parse_dvc_config(text: str) -> dict[str, dict[str, str]]:
    """.dvc/config (git-config style, quoted subsections) as {section: {key: value}}."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        header = re.fullmatch(r"\[\s*'?(.+?)'?\s*\]", line)
        if header:
            current = sections.setdefault(header[1].replace('"', ""), {})
            continue
        key, separator, value = line.partition("=")
        assert separator and current is not None, (
            f"unexpected line in .dvc/config: {line!r}"
        )
        current[key.strip()] = value.strip()
    return sections


def tool(name: str) -> str:
    """A tool from the template's .venv (beside the running Python), else from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run the suite with `make test`")
    return found


def workflows(project: Path) -> list[Path]:
    folder = project / ".github" / "workflows"
    return (
        sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])
        if folder.is_dir()
        else []
    )


def workflow_triggers(document: dict[Any, Any]) -> Any:
    return document.get("on", document.get(True))  # YAML 1.1 reads a bare `on` as True


case_ids = pytest.mark.parametrize("case", list(CASES))


# ---------------------------------------------------------------------------------------
# Meta: the cases cover every choice


def test_every_choice_value_is_baked() -> None:
    spec = cookiecutter_defaults()
    choices = {key: value for key, value in spec.items() if isinstance(value, list)}
    choices = {key: value for key, value in choices.items() if not key.startswith("_")}
    assert choices, "cookiecutter.json has no choice options?"
    never = {
        key: sorted(set(values) - {case.get(key, values[0]) for case in CASES.values()})
        for key, values in choices.items()
    }
    assert not {key: values for key, values in never.items() if values}, (
        f"choice values no case bakes: {never}"
    )
    unknown = {
        key: value
        for case in CASES.values()
        for key, value in case.items()
        if key in choices and value not in choices[key]
    }
    assert not unknown, f"cases use values cookiecutter.json does not offer: {unknown}"


def test_every_task_is_baked_with_every_model_family() -> None:
    spec = cookiecutter_defaults()
    baked = {
        (
            case.get("task", spec["task"][0]),
            case.get("model_family", spec["model_family"][0]),
        )
        for case in CASES.values()
    }
    assert baked == {(t, f) for t in spec["task"] for f in spec["model_family"]}


def test_every_supported_python_version_is_baked() -> None:
    prompt = cookiecutter_defaults()["__prompts__"]["python_version"]
    offered = set(re.findall(r"\b\d+\.\d+\b", prompt))
    assert offered == set(PYTHON_VERSIONS), f"prompt offers {offered}"
    default = cookiecutter_defaults()["python_version"]
    baked = {case.get("python_version", default) for case in CASES.values()}
    assert baked == set(PYTHON_VERSIONS)


def test_every_option_has_a_prompt() -> None:
    spec = cookiecutter_defaults()
    options = {key for key in spec if not key.startswith("_")}
    assert options == set(spec["__prompts__"])


# ---------------------------------------------------------------------------------------
# Every baked project renders, parses, compiles and lints


@case_ids
def test_no_jinja_left_over(case: str, baked: dict[str, Path]) -> None:
    project = baked[case]
    leftovers = []
    for path in project.rglob("*"):
        relative = path.relative_to(project)
        if ".git" in relative.parts:
            continue
        if "{{" in path.name or "{%" in path.name:
            leftovers.append(f"{relative}: file name")
    for path, text in text_files(project).items():
        # GitHub expressions ${{ ... }} are meant to survive rendering.
        stripped = re.sub(r"\$\{\{.*?\}\}", "", text, flags=re.S)
        # So are Flagger's query variables in deploy/'s MetricTemplates.
        stripped = re.sub(r"\{\{ (?:namespace|target|interval) \}\}", "", stripped)
        # And Prometheus's alert templates (deploy/'s PrometheusRule: `{{ $labels.pod }}`).
        stripped = re.sub(r"\{\{ \$labels\.\w+ \}\}", "", stripped)
        # And docker's Go templates (deploy.yml: `--format '{{json .Image.Config.Labels}}'`).
        stripped = re.sub(r"--format '\{\{json [.\w]+\}\}'", "", stripped)
        for number, line in enumerate(stripped.splitlines(), 1):
            if re.search(r"\{\{|\{%", line):
                leftovers.append(
                    f"{path.relative_to(project)}:{number}: {line.strip()}"
                )
    assert not leftovers, "unrendered Jinja:\n" + "\n".join(leftovers)


@case_ids
def test_structured_files_parse(case: str, baked: dict[str, Path]) -> None:
    project = baked[case]
    parsed = 0
    for path in files(project):
        if "data" in path.relative_to(project).parts[:1]:
            continue  # data files are checked by the pipeline
        text = path.read_text(encoding="utf-8") if path.suffix else ""
        if path.suffix in (".yaml", ".yml"):
            list(yaml.safe_load_all(text))  # deploy/ files may hold several documents
        elif path.suffix == ".toml":
            tomllib.loads(text)
        elif path.suffix == ".json":
            json.loads(text)
        else:
            continue
        parsed += 1
    assert parsed >= 4  # pyproject.toml, dvc.yaml, params.yaml, schema.yaml at least


@case_ids
def test_python_files_compile(case: str, baked: dict[str, Path]) -> None:
    project = baked[case]
    sources = [path for path in files(project) if path.suffix == ".py"]
    assert sources
    for path in sources:
        compile(path.read_text(encoding="utf-8"), str(path), "exec")


@case_ids
def test_ruff_passes_on_the_generated_project(
    case: str, baked: dict[str, Path]
) -> None:
    project = baked[case]
    ruff = tool("ruff")
    for command in (
        [ruff, "check", "--no-cache", "."],
        [ruff, "format", "--check", "--no-cache", "."],
    ):
        result = subprocess.run(
            command, cwd=project, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, (
            f"`{' '.join(command[1:])}` in a baked project ({case}):\n"
            f"{result.stdout}{result.stderr}"
        )


def assert_valid_workflows(paths: list[Path]) -> None:
    """GitHub's workflow schema (offline, check-jsonschema's vendored copy) accepts every file."""
    result = subprocess.run(
        [
            tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@case_ids
def test_workflows_are_valid(case: str, baked: dict[str, Path]) -> None:
    project = baked[case]
    found = workflows(project)
    assert {path.name for path in found} >= {"ci.yml", "release.yml", "monitor.yml"}
    assert_valid_workflows(found)
    dependabot = project / ".github" / "dependabot.yml"
    if dependabot.is_file():
        result = subprocess.run(
            [
                tool("check-jsonschema"),
                "--builtin-schema",
                "vendor.dependabot",
                str(dependabot),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def assert_workflows_lint_clean(paths: list[Path]) -> None:
    """actionlint (expressions, step outputs, `needs`, and shellcheck on every `run:` block)
    finds nothing."""
    result = subprocess.run(
        [tool("actionlint"), f"-shellcheck={tool('shellcheck')}", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def action_problems(paths: list[Path]) -> list[str]:
    """Every `uses:` pinned to a commit with its version in a comment, and given only inputs
    its action.yml declares at that commit (actionlint cannot check pinned actions' inputs)."""
    specs = action_specs()
    problems = []
    for path in paths:
        text = path.read_text()
        for job in yaml.safe_load(text)["jobs"].values():
            for step in job.get("steps", []):
                if "uses" not in step:
                    continue
                problems += [f"{path.name}: {p}" for p in input_problems(step, specs)]
                spec = specs.get(split_uses(step["uses"])[0])
                comment = f"{step['uses']} # {spec.version}" if spec else None
                if comment and comment not in text:
                    problems.append(
                        f"{path.name}: no `# {spec.version}` after {step['uses']}"
                    )
    return problems


@case_ids
def test_workflows_pass_zizmor_and_actionlint(
    case: str, baked: dict[str, Path]
) -> None:
    project = baked[case]
    result = subprocess.run(
        [tool("zizmor"), "--offline", str(project / ".github" / "workflows")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "No findings" in result.stdout, (
        result.stdout + result.stderr
    )
    assert_workflows_lint_clean(workflows(project))


@case_ids
def test_every_action_is_pinned_and_given_only_its_inputs(
    case: str, baked: dict[str, Path]
) -> None:
    assert not action_problems(workflows(baked[case]))


def test_the_input_check_catches_a_wrong_pin_or_key() -> None:
    checkout = action_specs()["actions/checkout"]
    pinned = f"actions/checkout@{checkout.ref}"
    assert not input_problems(
        {"uses": pinned, "with": {"fetch-depth": 0}}, action_specs()
    )
    [typo] = input_problems(
        {"uses": pinned, "with": {"persist-credential": False}}, action_specs()
    )
    assert "`persist-credential` is not an input of actions/checkout" in typo
    [tag] = input_problems({"uses": "actions/checkout@v4"}, action_specs())
    assert "not pinned to a full commit SHA" in tag
    [other] = input_problems({"uses": f"actions/checkout@{'0' * 40}"}, action_specs())
    assert "the fixture is of" in other
    upload = action_specs()["actions/upload-artifact"]
    [required] = input_problems(
        {"uses": f"actions/upload-artifact@{upload.ref}", "with": {"name": "x"}},
        action_specs(),
    )
    assert "required input `path`" in required


def test_every_action_fixture_is_used() -> None:
    """No stale fixture: each one is the pinned version of an action some workflow uses."""
    used = set()
    template_workflows = sorted((TEMPLATE / ".github" / "workflows").glob("*.yml"))
    generated = sorted((TEMPLATE_PROJECT / ".github" / "workflows").glob("*.yml"))
    for path in [*template_workflows, *generated]:
        used.update(
            re.findall(r"uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40})", path.read_text())
        )
    assert {(spec.action, spec.ref) for spec in action_specs().values()} == used


@case_ids
def test_dvc_stages_point_at_files_that_exist(
    case: str, baked: dict[str, Path]
) -> None:
    project = baked[case]
    answers = answers_for(CASES[case])
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    package = answers["package_name"]
    for name, stage in stages.items():
        assert stage["cmd"].startswith(f"python -m {package} "), (name, stage["cmd"])
        for dep in stage.get("deps", []):
            if dep.startswith("src/") or dep in ("schema.yaml", "data/external"):
                assert (project / dep).exists(), (
                    f"stage {name}: dependency {dep} is missing"
                )


# ---------------------------------------------------------------------------------------
# Each option ends up where it is used


@case_ids
def test_license(case: str, baked: dict[str, Path]) -> None:
    project = baked[case]
    answers = answers_for(CASES[case])
    chosen = answers["license"]
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == SPDX[chosen]

    license_files = [
        p for p in project.iterdir() if p.name.upper().startswith("LICENSE")
    ]
    assert len(license_files) == 1, f"one LICENSE file expected: {license_files}"
    text = license_files[0].read_text(encoding="utf-8")
    for phrase in LICENSE_PHRASES.get(chosen, []):
        assert phrase in text, f"{chosen} LICENSE lacks {phrase!r}"
    other_phrases = [
        phrase
        for name, phrases in LICENSE_PHRASES.items()
        if name != chosen
        for phrase in phrases[:1]
    ]
    assert not [phrase for phrase in other_phrases if phrase in text]
    if chosen != "Apache-2.0":  # the Apache text names no copyright holder
        assert answers["author_name"] in text


# What each task's project ships: its table, its target and its class values (none: a number).
TASK_TABLES = {
    "binary": ("german_credit.csv", "risk", [0, 1]),
    "multiclass": (
        "adult_occupation.csv",
        "occupation_group",
        ["clerical_sales", "managerial_professional", "manual", "service"],
    ),
    "regression": ("wage.csv", "wage", None),
}


@case_ids
def test_task(case: str, baked: dict[str, Path]) -> None:
    """The task's table and only it; params.yaml, schema.yaml, dvc.yaml's plots and the
    problem page set for it; every column params.yaml names is in the table."""
    project = baked[case]
    task = answers_for(CASES[case])["task"]
    table, target, classes = TASK_TABLES[task]
    external = project / "data" / "external"
    assert sorted(p.name for p in external.iterdir()) == sorted(["README.md", table])
    assert f"`{table}`" in (external / "README.md").read_text()
    params = yaml.safe_load((project / "params.yaml").read_text())
    data = params["data"]
    assert (data["task"], data["source"], data["target"]) == (
        task,
        f"data/external/{table}",
        target,
    )
    assert (data["positive_label"] is None) == (task != "binary")
    header = (external / table).read_text().splitlines()[0].split(",")
    schema = yaml.safe_load((project / "schema.yaml").read_text())
    assert schema["target"] == {
        "name": target,
        **({"values": classes} if classes else {}),
    }
    assert set(schema["columns"]) | {target} | set(data["drop_columns"]) == set(header)
    derived = {spec["source"] for spec in data["derived_columns"].values()}
    named = [
        *data["not_model_inputs"],
        *derived,
        *params["monitor"]["thresholds"]["key_features"],
    ]
    named += [n for n in data["sensitive_features"] if n not in data["derived_columns"]]
    named += list(params["monitor"]["simulate"]["drift"])
    assert set(named) <= set(schema["columns"]), set(named) - set(schema["columns"])
    plotted = {
        file
        for plot in yaml.safe_load((project / "dvc.yaml").read_text())["plots"]
        for spec in plot.values()
        for file in spec["y"]
    }
    expected_plots = {
        "binary": {"roc.csv", "precision_recall.csv", "confusion.csv"},
        "multiclass": {"confusion.csv"},
        "regression": {"predicted.csv"},
    }[task]
    assert {
        Path(file).name for file in plotted if "/evaluate/" in file
    } == expected_plots
    problem = (project / "docs" / "problem.md").read_text()
    assert f"`{target}`" in problem or "`risk = 1`" in problem


@case_ids
def test_model_family(case: str, baked: dict[str, Path]) -> None:
    project = baked[case]
    family = answers_for(CASES[case])["model_family"]
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["train"]["model"] == family
    assert family in params["train"]["search"], "no search grid for the chosen family"


@case_ids
def test_dvc_remote(case: str, baked: dict[str, Path]) -> None:
    project = baked[case]
    answers = answers_for(CASES[case])
    config = parse_dvc_config((project / ".dvc" / "config").read_text())
    remote = config["core"]["remote"]
    url = config[f"remote {remote}"]["url"]
    if answers["dvc_remote"] == "local":
        given = Path(answers["dvc_remote_url"])
        # DVC resolves a relative local remote against .dvc/; the answer is relative to the
        # project directory.
        resolved = (project / ".dvc" / url).resolve()
        expected = given if given.is_absolute() else (project / given).resolve()
        assert resolved == expected, f"url {url!r} in .dvc/config"
        if case == "defaults":
            assert resolved == project.parent / f"{answers['project_slug']}-dvc-storage"
    else:
        assert url == answers["dvc_remote_url"]
        scheme = {"s3": "s3://", "gcs": "gs://", "azure": "azure://"}[
            answers["dvc_remote"]
        ]
        assert url.startswith(scheme)


@case_ids
def test_python_version(case: str, baked: dict[str, Path]) -> None:
    project = baked[case]
    version = answers_for(CASES[case])["python_version"]
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == f">={version}"
    assert pyproject["tool"]["ruff"]["target-version"] == "py" + version.replace(
        ".", ""
    )
    assert (project / ".python-version").read_text().strip() == version
    lock = tomllib.loads((project / "uv.lock").read_text())
    assert lock["requires-python"] == f">={version}"
    for path in workflows(project):
        text = path.read_text()
        for match in re.finditer(r"python-version:\s*['\"]?([0-9.]+)", text):
            assert match[1] == version, f"{path.name} sets up Python {match[1]}"


@case_ids
def test_free_text_options_reach_their_files(case: str, baked: dict[str, Path]) -> None:
    project = baked[case]
    answers = answers_for(CASES[case])
    defaults = answers_for({})
    checked = 0
    for key in FREE_TEXT:
        for relative in template_files_using(key):
            path = project / rendered(relative, answers)
            assert path.is_file(), f"{relative} was not generated"
            # whitespace folded: long descriptions are word-wrapped in docstrings
            text = " ".join(path.read_text(encoding="utf-8").split())
            assert " ".join(answers[key].split()) in text, (
                f"{key}={answers[key]!r} missing from {relative}"
            )
            if (
                key in ("github_owner", "monitoring_cron")
                and answers[key] != defaults[key]
            ):
                assert defaults[key] not in text, f"default {key} left in {relative}"
            checked += 1
    assert checked, "no generated file uses any free-text option"


@case_ids
def test_monitoring_cron_schedules_the_workflows_that_use_it(
    case: str, baked: dict[str, Path]
) -> None:
    project = baked[case]
    answers = answers_for(CASES[case])
    users = [
        relative
        for relative in template_files_using("monitoring_cron")
        if relative.parts[:2] == (".github", "workflows")
    ]
    assert users, "no workflow uses monitoring_cron: the answer schedules nothing"
    for relative in users:
        document = yaml.safe_load((project / rendered(relative, answers)).read_text())
        triggers = workflow_triggers(document)
        crons = [entry["cron"] for entry in triggers.get("schedule", [])]
        assert answers["monitoring_cron"] in crons, f"{relative}: schedules {crons}"


@case_ids
def test_github_owner_names_the_image(case: str, baked: dict[str, Path]) -> None:
    project = baked[case]
    answers = answers_for(CASES[case])
    images = []
    for path, text in text_files(project).items():
        for owner in re.findall(r"ghcr\.io/([^/\s\"'}]+)/", text):
            if not owner.startswith("$"):
                images.append((path.relative_to(project), owner))
    assert images, "no file names a ghcr.io image: github_owner names no image"
    assert all(owner == answers["github_owner"] for _, owner in images), images


# ---------------------------------------------------------------------------------------
# A non-default name flows through slug and package


def test_project_name_flows_into_slug_and_package(baked: dict[str, Path]) -> None:
    project = baked["renamed"]
    slug, package = "regional-loan-default-warning2", "regional_loan_default_warning2"
    assert project.name == slug
    assert (project / "src" / package / "__init__.py").is_file()
    assert sorted(p.name for p in (project / "src").iterdir()) == [package]

    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == slug
    assert pyproject["project"]["description"] == CASES["renamed"]["description"]
    assert pyproject["project"]["authors"] == [
        {"name": "Ada Lovelace", "email": "ada@example.org"}
    ]
    assert pyproject["project"]["scripts"] == {package: f"{package}.cli:main"}
    assert pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
        f"src/{package}"
    ]
    store = (project / "src" / package / "serving" / "store.py").read_text()
    assert f'MODEL_NAME = "{package}"' in store
    lock = tomllib.loads((project / "uv.lock").read_text())
    assert slug in {entry["name"] for entry in lock["package"]}
    readme = (project / "README.md").read_text()
    assert (
        readme.splitlines()[0].lstrip("# ").strip() == "Regional Loan Default Warning2"
    )

    stale = []
    for path, text in text_files(project).items():
        for old in ("credit_risk_model", "credit-risk-model", "Credit Risk Model"):
            if old in text:
                stale.append(f"{path.relative_to(project)}: {old}")
    assert not stale, "the default name is left in:\n" + "\n".join(stale)


@case_ids
def test_uv_lock_is_current(case: str, baked: dict[str, Path]) -> None:
    """The shipped uv.lock satisfies the baked pyproject.toml (`make setup` syncs --locked);
    after moving a pin, `make lock` regenerates templates/uv-<python>.lock. uv needs the
    baked Python to check: without it, the case says so instead of calling the lock stale."""
    version = CASES[case].get(
        "python_version", cookiecutter_defaults()["python_version"]
    )
    directory = interpreter_or_skip(version)
    result = subprocess.run(
        [tool("uv"), "lock", "--check"],
        cwd=baked[case],
        env={
            **os.environ,
            "PATH": os.pathsep.join([str(directory), os.environ.get("PATH", "")]),
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_NO_PROGRESS": "1",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (
        f"uv.lock is stale (run `make lock`):\n{result.stderr}"
    )


def test_the_baked_project_is_a_git_repository(baked: dict[str, Path]) -> None:
    project = baked["defaults"]
    result = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(result.stdout.strip()).resolve() == project.resolve()
    assert (project / ".dvc" / "config").is_file()  # DVC is initialised by the template


# ---------------------------------------------------------------------------------------
# The template repository itself


def test_ruff_pins_agree() -> None:
    """The template's ruff (requirements-dev.txt) is the generated project's dev ruff."""
    pins = (TEMPLATE / "requirements-dev.txt").read_text()
    ours = re.search(r"^ruff==(\S+)", pins, flags=re.M)
    theirs = re.search(
        r'"ruff==([^"]+)"', (TEMPLATE_PROJECT / "pyproject.toml").read_text()
    )
    assert ours and theirs
    assert ours[1] == theirs[1]


def test_template_ci_workflow_is_valid() -> None:
    found = sorted((TEMPLATE / ".github" / "workflows").glob("*.yml"))
    assert found, "the template has no CI workflow"
    assert_valid_workflows(found)
    assert_workflows_lint_clean(found)
    assert not action_problems(found)
    ci = yaml.safe_load((TEMPLATE / ".github" / "workflows" / "ci.yml").read_text())
    assert ci["permissions"] == {}
    job = ci["jobs"]["test"]
    assert job["permissions"] == {"contents": "read"}
    assert job["strategy"]["matrix"]["python"] == list(PYTHON_VERSIONS)
    assert "schedule" in workflow_triggers(ci), (
        "no scheduled run to catch dependency rot"
    )
    # GitHub runs what CI runs here: .ci/run (machine preparation, then the README's
    # `make test`) with every optional test required
    assert any(step.get("run", "").strip() == "bash .ci/run" for step in job["steps"])
    ci_run = (TEMPLATE / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci_run, re.M), (
        "CI does not run the README's test command"
    )
    for required in ("CONTAINER", "BROWSER", "POSTGRES", "CANARY"):
        assert f"export REQUIRE_{required}_TEST=1" in ci_run, required
    assert "export REQUIRE_ALL_PYTHONS=1" in ci_run
