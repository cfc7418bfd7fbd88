"""Tests of the template's hooks: answer validation (pre-gen) and git init (post-gen).

Every refused answer must fail the bake with exactly one line on stderr,
``ERROR: <option>: <what is wrong>; <what is allowed>``, and leave nothing behind.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cookiecutter.exceptions import FailedHookException, OutputDirExistsException
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
ERROR_LINE = re.compile(r"ERROR: (?P<option>[a-z_]+): (?P<wrong>.+); (?P<allowed>.+)")


def load_pre_gen_hook() -> ModuleType:
    """Import the unrendered pre-gen hook to unit-test its pure functions."""
    path = TEMPLATE / "hooks" / "pre_gen_project.py"
    spec = importlib.util.spec_from_file_location("pre_gen_project", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pre_gen = load_pre_gen_hook()


def bake(cookies: Any, **answers: str) -> Any:
    """Bake this template (whatever the working directory) with the given answers."""
    return cookies.bake(extra_context=answers, template=str(TEMPLATE))


def leftovers(tmp_path: Path) -> list[str]:
    """List what the bakes left: files anywhere, and non-empty directories.

    pytest-cookies 0.7 bakes into ``<tmpdir>/cookies/bakeNN`` (``tmpdir`` is
    ``tmp_path``) and creates each ``bakeNN`` itself before calling Cookiecutter,
    so empty directories are not counted.
    """
    root = tmp_path / "cookies"
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file()
        or (path.is_dir() and any(path.iterdir()) and path.parent != root)
    )


def assert_refused(
    result: Any, err: str, tmp_path: Path, option: str, phrase: str
) -> None:
    """Assert a failed bake, one well-formed error line naming option and phrase, no leftovers."""
    assert result.exit_code != 0
    assert isinstance(result.exception, FailedHookException), result.exception
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    match = ERROR_LINE.fullmatch(lines[0])
    assert match, f"not 'ERROR: <option>: <wrong>; <allowed>': {lines[0]!r}"
    assert match["option"] == option
    assert phrase in lines[0]
    assert leftovers(tmp_path) == []


# (id, answers, option named in the error, phrase in the error)
BAD_ANSWERS: list[tuple[str, dict[str, str], str, str]] = [
    # project_name (a valid slug is given so the name itself is what is checked)
    (
        "name-blank",
        {"project_name": "   ", "project_slug": "ok"},
        "project_name",
        "is empty",
    ),
    (
        "name-two-lines",
        {"project_name": "Credit\nRisk", "project_slug": "credit-risk"},
        "project_name",
        "line break",
    ),
    (
        "name-double-quote",
        {"project_name": 'The "Best" Model', "project_slug": "best-model"},
        "project_name",
        "double quote",
    ),
    (
        "name-padded",
        {"project_name": " Credit Risk ", "project_slug": "credit-risk"},
        "project_name",
        "whitespace",
    ),
    # project_slug
    (
        "slug-capitals",
        {"project_slug": "Credit-Risk"},
        "project_slug",
        "not a valid slug",
    ),
    ("slug-space", {"project_slug": "credit risk"}, "project_slug", "not a valid slug"),
    (
        "slug-double-dash",
        {"project_slug": "credit--risk"},
        "project_slug",
        "single dashes",
    ),
    (
        "slug-trailing-dash",
        {"project_slug": "credit-"},
        "project_slug",
        "not a valid slug",
    ),
    (
        "slug-leading-digit",
        {"project_slug": "1credit"},
        "project_slug",
        "starting with a letter",
    ),
    ("slug-too-long", {"project_slug": "a" * 31}, "project_slug", "at most 30"),
    (
        "package-too-long",
        {"package_name": "p" * 31},
        "package_name",
        "at most 30",
    ),
    # package_name
    ("pkg-keyword", {"package_name": "class"}, "package_name", "keyword"),
    (
        "pkg-dash",
        {"package_name": "credit-risk"},
        "package_name",
        "not a valid Python identifier",
    ),
    ("pkg-capitals", {"package_name": "CreditRisk"}, "package_name", "lowercase"),
    ("pkg-stdlib-test", {"package_name": "test"}, "package_name", "shadow"),
    ("pkg-pandas", {"package_name": "pandas"}, "package_name", "shadow"),
    ("pkg-sklearn", {"package_name": "sklearn"}, "package_name", "shadow"),
    ("pkg-bentoml", {"package_name": "bentoml"}, "package_name", "shadow"),
    ("pkg-yaml", {"package_name": "yaml"}, "package_name", "shadow"),
    (
        "pkg-code-injection",
        {"package_name": "x\"; import os; '"},
        "package_name",
        "identifier",
    ),
    # description
    (
        "desc-two-lines",
        {"description": "One line.\nTwo lines."},
        "description",
        "line break",
    ),
    (
        "desc-trailing-newline",
        {"description": "One line.\n"},
        "description",
        "line break",
    ),
    ("desc-too-long", {"description": "x" * 201}, "description", "at most 200"),
    ("desc-backslash", {"description": "C:\\data"}, "description", "backslash"),
    # author
    ("author-empty", {"author_name": ""}, "author_name", "is empty"),
    (
        "email-no-at",
        {"author_email": "jane.example.com"},
        "author_email",
        "exactly one @",
    ),
    (
        "email-two-at",
        {"author_email": "jane@doe@example.com"},
        "author_email",
        "exactly one @",
    ),
    (
        "email-no-dot",
        {"author_email": "jane@localhost"},
        "author_email",
        "dotted domain",
    ),
    (
        "email-no-local",
        {"author_email": "@example.com"},
        "author_email",
        "before the @",
    ),
    ("email-space", {"author_email": "jane doe@example.com"}, "author_email", "space"),
    # github_owner
    ("owner-capitals", {"github_owner": "Jane-Doe"}, "github_owner", "lowercase"),
    (
        "owner-leading-hyphen",
        {"github_owner": "-jane"},
        "github_owner",
        "not a valid GitHub",
    ),
    (
        "owner-double-hyphen",
        {"github_owner": "jane--doe"},
        "github_owner",
        "single hyphens",
    ),
    (
        "owner-underscore",
        {"github_owner": "jane_doe"},
        "github_owner",
        "not a valid GitHub",
    ),
    ("owner-too-long", {"github_owner": "a" * 40}, "github_owner", "40 characters"),
    ("owner-empty", {"github_owner": ""}, "github_owner", "is empty"),
    # python_version (tuples, not strings: "3.9" > "3.11" as strings)
    ("py-3.9", {"python_version": "3.9"}, "python_version", "3.9 is not supported"),
    ("py-3.10", {"python_version": "3.10"}, "python_version", "3.10 is not supported"),
    ("py-3.14", {"python_version": "3.14"}, "python_version", "3.14 is not supported"),
    ("py-2.7", {"python_version": "2.7"}, "python_version", "not supported"),
    ("py-patch", {"python_version": "3.11.4"}, "python_version", "give MAJOR.MINOR"),
    ("py-word", {"python_version": "three"}, "python_version", "not a MAJOR.MINOR"),
    (
        "py-leading-zero",
        {"python_version": "3.011"},
        "python_version",
        "not a MAJOR.MINOR",
    ),
    ("py-major-only", {"python_version": "3"}, "python_version", "not a MAJOR.MINOR"),
    # dvc_remote_url
    ("dvc-local-empty", {"dvc_remote_url": ""}, "dvc_remote_url", "is empty"),
    (
        "dvc-local-url",
        {"dvc_remote_url": "s3://bucket/x"},
        "dvc_remote_url",
        "is a URL",
    ),
    ("dvc-s3-empty", {"dvc_remote": "s3"}, "dvc_remote_url", "needs a s3:// URL"),
    (
        "dvc-s3-wrong-scheme",
        {"dvc_remote": "s3", "dvc_remote_url": "gs://bucket/x"},
        "dvc_remote_url",
        "does not start with s3://",
    ),
    (
        "dvc-s3-no-bucket",
        {"dvc_remote": "s3", "dvc_remote_url": "s3:///x"},
        "dvc_remote_url",
        "no valid bucket",
    ),
    ("dvc-gcs-empty", {"dvc_remote": "gcs"}, "dvc_remote_url", "needs a gs:// URL"),
    (
        "dvc-gcs-no-bucket",
        {"dvc_remote": "gcs", "dvc_remote_url": "gs://"},
        "dvc_remote_url",
        "no valid bucket",
    ),
    (
        "dvc-azure-empty",
        {"dvc_remote": "azure"},
        "dvc_remote_url",
        "needs a azure:// URL",
    ),
    (
        "dvc-azure-https",
        {
            "dvc_remote": "azure",
            "dvc_remote_url": "https://acct.blob.core.windows.net/c",
        },
        "dvc_remote_url",
        "does not start with azure://",
    ),
    # monitoring_cron
    (
        "cron-every-minute",
        {"monitoring_cron": "* * * * *"},
        "monitoring_cron",
        "5 minutes",
    ),
    (
        "cron-every-2-min",
        {"monitoring_cron": "*/2 * * * *"},
        "monitoring_cron",
        "5 minutes",
    ),
    (
        "cron-hour-wrap",
        {"monitoring_cron": "0,58 * * * *"},
        "monitoring_cron",
        "5 minutes",
    ),
    (
        "cron-six-fields",
        {"monitoring_cron": "0 0 6 * * 1"},
        "monitoring_cron",
        "6 fields",
    ),
    ("cron-four-fields", {"monitoring_cron": "0 6 * *"}, "monitoring_cron", "4 fields"),
    ("cron-shortcut", {"monitoring_cron": "@daily"}, "monitoring_cron", "shortcut"),
    ("cron-empty", {"monitoring_cron": ""}, "monitoring_cron", "0 fields"),
    (
        "cron-minute-60",
        {"monitoring_cron": "60 6 * * 1"},
        "monitoring_cron",
        "minute field",
    ),
    (
        "cron-hour-24",
        {"monitoring_cron": "0 24 * * 1"},
        "monitoring_cron",
        "hour field",
    ),
    (
        "cron-day-0",
        {"monitoring_cron": "0 6 0 * *"},
        "monitoring_cron",
        "day-of-month field",
    ),
    (
        "cron-month-13",
        {"monitoring_cron": "0 6 1 13 *"},
        "monitoring_cron",
        "month field",
    ),
    (
        "cron-month-name",
        {"monitoring_cron": "0 6 1 FOO *"},
        "monitoring_cron",
        "month field",
    ),
    (
        "cron-weekday-8",
        {"monitoring_cron": "0 6 * * 8"},
        "monitoring_cron",
        "day-of-week field",
    ),
    (
        "cron-step-zero",
        {"monitoring_cron": "*/0 6 * * *"},
        "monitoring_cron",
        "minute field",
    ),
    (
        "cron-bare-step",
        {"monitoring_cron": "5/10 6 * * *"},
        "monitoring_cron",
        "minute field",
    ),
    (
        "cron-reversed",
        {"monitoring_cron": "0 6 * * 5-1"},
        "monitoring_cron",
        "day-of-week",
    ),
    (
        "cron-empty-item",
        {"monitoring_cron": "0 6 1,,2 * *"},
        "monitoring_cron",
        "day-of-month",
    ),
]


# Baked end to end (a hook run costs ~0.15 s); every case is also checked
# against the hook's functions directly in test_bad_answer_message below.
BAKED = {
    *("name-blank", "name-two-lines", "name-double-quote"),
    *("slug-capitals", "slug-space", "slug-double-dash", "slug-too-long"),
    *("pkg-keyword", "pkg-dash", "pkg-capitals", "pkg-stdlib-test", "pkg-pandas"),
    *("pkg-code-injection", "desc-two-lines", "desc-too-long", "author-empty"),
    *("email-no-at", "email-two-at", "email-no-dot", "email-space"),
    *("owner-capitals", "owner-leading-hyphen", "owner-too-long"),
    *("py-3.9", "py-3.10", "py-3.14", "py-patch", "py-word"),
    *("dvc-local-url", "dvc-s3-empty", "dvc-s3-wrong-scheme", "dvc-gcs-no-bucket"),
    *("dvc-azure-empty", "dvc-azure-https"),
    *("cron-every-minute", "cron-six-fields", "cron-shortcut", "cron-minute-60"),
    *("cron-month-name", "cron-weekday-8"),
}
assert BAKED <= {case[0] for case in BAD_ANSWERS}

# What the default answers render to, for checking the hook's functions directly.
DEFAULT_ANSWERS = {
    "project_name": "Credit Risk Model",
    "project_slug": "credit-risk-model",
    "package_name": "credit_risk_model",
    "description": "Predict credit risk with a reproducible, monitored ML lifecycle.",
    "author_name": "Jane Doe",
    "author_email": "jane.doe@example.com",
    "github_owner": "your-github-user",
    "python_version": "3.11",
    "license": "MIT",
    "task": "binary",
    "model_family": "hist_gradient_boosting",
    "dvc_remote": "local",
    "dvc_remote_url": "../credit-risk-model-dvc-storage",
    "monitoring_cron": "0 6 * * 1",
}


@pytest.fixture(autouse=True)
def _hook_scripts_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the rendered hook scripts Cookiecutter 2.7.1 never deletes out of /tmp."""
    scripts = tmp_path / "rendered-hooks"
    scripts.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scripts))


@pytest.mark.parametrize(
    ("answers", "option", "phrase"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_ANSWERS if case[0] in BAKED],
)
def test_bad_answer_is_refused_and_nothing_is_left(
    cookies: Any,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
    answers: dict[str, str],
    option: str,
    phrase: str,
) -> None:
    result = bake(cookies, **answers)
    err = capfd.readouterr().err
    assert_refused(result, err, tmp_path, option, phrase)


@pytest.mark.parametrize(
    ("answers", "option", "phrase"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_ANSWERS],
)
def test_bad_answer_message(answers: dict[str, str], option: str, phrase: str) -> None:
    if answers.get("dvc_remote", "local") != "local":
        # As in cookiecutter.json, the default URL is empty for a cloud remote.
        answers = {"dvc_remote_url": ""} | answers
    problems = pre_gen.find_problems(DEFAULT_ANSWERS | answers)
    assert problems, "the answer was accepted"
    first_option, problem = problems[0]
    line = f"ERROR: {first_option}: {problem}"
    assert ERROR_LINE.fullmatch(line), line
    assert first_option == option
    assert phrase in line


def test_slug_with_a_slash_is_refused_and_no_files_are_left(
    cookies: Any, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Cookiecutter creates "bad/slug" before the hook runs and then removes only
    # "slug", so an empty "bad" directory stays; leftovers() ignores empty ones.
    result = bake(cookies, project_slug="bad/slug")
    err = capfd.readouterr().err
    assert_refused(result, err, tmp_path, "project_slug", "not a valid slug")


def test_only_the_first_problem_is_reported(
    cookies: Any, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    result = bake(
        cookies, monitoring_cron="@daily", python_version="3.9", github_owner="Jane"
    )
    err = capfd.readouterr().err
    # Options are checked in the order of cookiecutter.json.
    assert_refused(result, err, tmp_path, "github_owner", "lowercase")


@pytest.mark.parametrize(
    ("answers", "exception"),
    [
        pytest.param({"license": "GPL-3.0"}, ValueError, id="license-not-a-choice"),
        pytest.param({"model_family": "xgboost"}, ValueError, id="model-not-a-choice"),
        pytest.param({"task": "ranking"}, ValueError, id="task-not-a-choice"),
        pytest.param({"dvc_remote": "hdfs"}, ValueError, id="dvc-remote-not-a-choice"),
        # The default slug of a blank name is empty, so the project directory
        # would be the output directory itself: Cookiecutter stops before the hook.
        pytest.param(
            {"project_name": "   "},
            OutputDirExistsException,
            id="blank-name-empty-slug",
        ),
    ],
)
def test_cookiecutter_itself_refuses_before_the_hook(
    cookies: Any,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
    answers: dict[str, str],
    exception: type[Exception],
) -> None:
    result = bake(cookies, **answers)
    assert result.exit_code != 0
    assert isinstance(result.exception, exception), result.exception
    assert "ERROR:" not in capfd.readouterr().err  # the hook never ran
    assert leftovers(tmp_path) == []


def test_bad_choice_in_a_replay_file_is_refused_by_the_hook(
    capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Replay contexts skip Cookiecutter's own choice check, so the hook's matters.
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    config = user_dir / "config.yaml"
    config.write_text(
        f"cookiecutters_dir: {json.dumps(str(user_dir / 'cookiecutters'))}\n"
        f"replay_dir: {json.dumps(str(user_dir / 'replay'))}\n",
        encoding="utf-8",
    )
    answers = json.loads((TEMPLATE / "cookiecutter.json").read_text(encoding="utf-8"))
    answers = {key: value for key, value in answers.items() if not key.startswith("_")}
    answers |= {
        "project_slug": "credit-risk-model",
        "package_name": "credit_risk_model",
        "license": "GPL-3.0",
        "model_family": "random_forest",
        "dvc_remote": "local",
        "dvc_remote_url": "../storage",
    }
    replay = user_dir / "replay.json"
    replay.write_text(json.dumps({"cookiecutter": answers}), encoding="utf-8")
    output = tmp_path / "cookies"  # what leftovers() inspects
    output.mkdir()

    with pytest.raises(FailedHookException):
        cookiecutter(
            str(TEMPLATE),
            replay=str(replay),
            output_dir=str(output),
            config_file=str(config),
        )

    [line] = capfd.readouterr().err.splitlines()
    assert line.startswith(
        "ERROR: license: 'GPL-3.0' is not an allowed choice; use one of MIT"
    )
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "answers",
    [
        pytest.param({"python_version": "3.12"}, id="py-3.12"),
        pytest.param({"python_version": "3.13"}, id="py-3.13"),
        pytest.param(
            {"dvc_remote": "s3", "dvc_remote_url": "s3://my-bucket/dvc"}, id="s3"
        ),
        pytest.param(
            {"dvc_remote": "gcs", "dvc_remote_url": "gs://my_bucket"}, id="gcs"
        ),
        pytest.param(
            {"dvc_remote": "azure", "dvc_remote_url": "azure://models/dvc"}, id="azure"
        ),
        pytest.param({"dvc_remote_url": "/srv/dvc storage"}, id="local-absolute"),
        pytest.param({"monitoring_cron": "*/15 * * * 1-5"}, id="cron-weekdays-15-min"),
        pytest.param({"monitoring_cron": "0 6 * * MON"}, id="cron-monday-name"),
        pytest.param(
            {
                "project_name": "Zoë's Crédit Risk",
                "project_slug": "zoes-credit-risk",
                "description": "Risk scores for Bob's bank 🚀 (it's <fast> & cheap)",
                "author_name": "Zoë O'Brien",
                "author_email": "zoe.o'brien@example.co.uk",
                "license": "Apache-2.0",
                "model_family": "logistic_regression",
            },
            id="quotes-unicode-and-choices",
        ),
    ],
)
def test_good_answers_are_accepted(
    cookies: Any, capfd: pytest.CaptureFixture[str], answers: dict[str, str]
) -> None:
    result = bake(cookies, **answers)
    assert result.exit_code == 0, result.exception
    assert result.exception is None
    assert result.project_path.is_dir()
    assert "ERROR:" not in capfd.readouterr().err


def test_default_bake_makes_a_git_repository_on_main(
    cookies: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    result = bake(cookies)
    assert result.exit_code == 0, result.exception
    project = result.project_path
    out = capfd.readouterr().out
    for step in (
        f"cd {project}",
        "make setup",
        "make pipeline",
        "make test",
        "git push",
    ):
        assert step in out

    if shutil.which("git") is None:
        assert "git is not installed" in out
        return
    assert (project / ".git" / "HEAD").read_text(
        encoding="utf-8"
    ) == "ref: refs/heads/main\n"
    top = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(top).resolve() == project.resolve()


def test_project_is_kept_with_a_note_when_git_is_missing(
    cookies: Any,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))  # hooks run via sys.executable
    result = bake(cookies)
    assert result.exit_code == 0, result.exception
    assert not (result.project_path / ".git").exists()
    assert "git is not installed" in capfd.readouterr().out


# Unit tests of the hook's pure functions: cheap, so they cover more edges.


@pytest.mark.parametrize(
    "cron",
    [
        "0 6 * * 1",
        "*/5 * * * *",
        "0,30 * * * *",
        "0,58 3 * * *",
        "30 2 1,15 JAN-JUN/2 SUN",
        "0 6 * * 0,7",
        "0 0 31 dec *",
        "  0 6 * * 1  ",
        "5-55/10 8-18 * * mon-fri",
    ],
)
def test_valid_cron_expressions(cron: str) -> None:
    assert pre_gen.check_monitoring_cron(cron) is None


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("3.11", (3, 11)),
        ("3.9", (3, 9)),
        ("10.0", (10, 0)),
        ("3.11.4", None),
        ("3.x", None),
    ],
)
def test_parse_version_gives_comparable_tuples(
    version: str, expected: tuple[int, int] | None
) -> None:
    assert pre_gen.parse_version(version) == expected


def test_default_answers_pass_every_check() -> None:
    assert pre_gen.find_problems(DEFAULT_ANSWERS) == []


def test_every_problem_is_found_in_option_order() -> None:
    answers = DEFAULT_ANSWERS | {
        "monitoring_cron": "@daily",
        "license": "x",
        "author_name": "",
    }
    options = [option for option, _ in pre_gen.find_problems(answers)]
    assert options == ["author_name", "license", "monitoring_cron"]


def test_choice_lists_match_cookiecutter_json() -> None:
    context = json.loads((TEMPLATE / "cookiecutter.json").read_text(encoding="utf-8"))
    assert list(pre_gen.LICENSES) == context["license"]
    assert list(pre_gen.MODEL_FAMILIES) == context["model_family"]
    assert list(pre_gen.TASKS) == context["task"]
    assert list(pre_gen.DVC_REMOTES) == context["dvc_remote"]
    options = {key for key in context if not key.startswith("_")}
    assert set(pre_gen.RAW_ANSWERS) == options
    assert set(DEFAULT_ANSWERS) == options
