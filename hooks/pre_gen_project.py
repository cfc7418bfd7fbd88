"""Validate the answers before Cookiecutter writes anything.

Cookiecutter renders this file with Jinja and then runs it. On the first bad
answer it prints one line, ``ERROR: <option>: <what is wrong>; <what is allowed>``,
to stderr and exits with status 1; Cookiecutter then deletes the directory it
created for the project.
"""

from __future__ import annotations

import itertools
import json
import keyword
import re
import sys
from collections.abc import Callable

# Each answer arrives as a JSON string literal (Jinja's ``tojson``) inside a raw,
# single-quoted Python string, and is decoded with ``json.loads``. ``tojson``
# escapes quotes (including ``'``), backslashes and newlines, so no answer can
# end the literal early or inject code. The ``["key"]`` spelling keeps a double
# quote in the literal, so ``ruff format`` leaves the single quotes alone.
RAW_ANSWERS: dict[str, str] = {
    "project_name": r'{{ cookiecutter["project_name"] | tojson }}',
    "project_slug": r'{{ cookiecutter["project_slug"] | tojson }}',
    "package_name": r'{{ cookiecutter["package_name"] | tojson }}',
    "description": r'{{ cookiecutter["description"] | tojson }}',
    "author_name": r'{{ cookiecutter["author_name"] | tojson }}',
    "author_email": r'{{ cookiecutter["author_email"] | tojson }}',
    "github_owner": r'{{ cookiecutter["github_owner"] | tojson }}',
    "python_version": r'{{ cookiecutter["python_version"] | tojson }}',
    "license": r'{{ cookiecutter["license"] | tojson }}',
    "task": r'{{ cookiecutter["task"] | tojson }}',
    "model_family": r'{{ cookiecutter["model_family"] | tojson }}',
    "dvc_remote": r'{{ cookiecutter["dvc_remote"] | tojson }}',
    "dvc_remote_url": r'{{ cookiecutter["dvc_remote_url"] | tojson }}',
    "monitoring_cron": r'{{ cookiecutter["monitoring_cron"] | tojson }}',
}

# Keep these in step with the choice lists in cookiecutter.json.
LICENSES = ("MIT", "Apache-2.0", "BSD-3-Clause", "Proprietary")
TASKS = ("binary", "multiclass", "regression")
MODEL_FAMILIES = ("hist_gradient_boosting", "random_forest", "logistic_regression")
DVC_REMOTES = ("local", "s3", "gcs", "azure")
SUPPORTED_PYTHONS = ((3, 11), (3, 12), (3, 13))

# Modules the generated project imports or its tools run, that a package of
# the same name would shadow. ``sys.stdlib_module_names`` covers the standard
# library except the ``test`` package, which is listed here.
THIRD_PARTY_MODULES = frozenset(
    {
        "bentoml",
        "dvc",
        "fairlearn",
        "hatchling",
        "httpx",
        "joblib",
        "numpy",
        "pandas",
        "pandera",
        "pyarrow",
        "pydantic",
        "pytest",
        "ruff",
        "sklearn",
        "sqlalchemy",
        "src",
        "test",
        "tests",
        "yaml",
    }
)

SLUG_RE = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
# Longer names push generated import lines past the line length the project lints at.
MAX_NAME_LENGTH = 30
PACKAGE_RE = re.compile(r"[a-z][a-z0-9_]*")
OWNER_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
VERSION_RE = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
DIGITS_RE = re.compile(r"[0-9]+")
BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
CLOUD_SCHEMES = {"s3": "s3://", "gcs": "gs://", "azure": "azure://"}
BUCKET_WORDS = {"s3": "bucket", "gcs": "bucket", "azure": "container"}

MINIMUM_CRON_INTERVAL = 5  # minutes; GitHub Actions runs schedules no more often
CRON_MONTHS = (
    "JAN",
    "FEB",
    "MAR",
    "APR",
    "MAY",
    "JUN",
    "JUL",
    "AUG",
    "SEP",
    "OCT",
    "NOV",
    "DEC",
)
CRON_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# name, lowest, highest, names (the first name stands for `lowest`)
CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, CRON_MONTHS),
    ("day-of-week", 0, 7, CRON_DAYS),
)

Problem = str | None


def is_one_line(value: str) -> bool:
    """Tell whether a string has no line breaks of any kind."""
    return value == "" or value.splitlines() == [value]


def check_free_text(value: str, *, required: bool, max_length: int) -> Problem:
    """Check a human-readable text answer that is written into TOML and docstrings."""
    if required and not value.strip():
        return "is empty; give a non-empty value"
    if not is_one_line(value):
        return "contains a line break; give a single line"
    if value != value.strip():
        return f"{value!r} has leading or trailing whitespace; remove it"
    if len(value) > max_length:
        return f"is {len(value)} characters long; use at most {max_length}"
    if '"' in value or "\\" in value:
        return (
            f"{value!r} contains a double quote or backslash; "
            "use text without them (it is written into pyproject.toml and docstrings)"
        )
    return None


def check_project_name(value: str) -> Problem:
    """Check the human-readable project name."""
    return check_free_text(value, required=True, max_length=100)


def check_project_slug(value: str) -> Problem:
    """Check the repository and directory name."""
    allowed = "use lowercase letters, digits and single dashes, starting with a letter"
    if not value:
        return f"is empty; {allowed}"
    if len(value) > MAX_NAME_LENGTH:
        return f"is {len(value)} characters long; use at most {MAX_NAME_LENGTH}"
    if not SLUG_RE.fullmatch(value):
        return f"{value!r} is not a valid slug; {allowed} (e.g. credit-risk-model)"
    return None


def check_package_name(value: str) -> Problem:
    """Check the importable Python package name."""
    allowed = "use lowercase letters, digits and underscores, starting with a letter"
    if not value.isidentifier():
        return f"{value!r} is not a valid Python identifier; {allowed}"
    if keyword.iskeyword(value):
        return f"{value!r} is a Python keyword; choose another name"
    if not PACKAGE_RE.fullmatch(value):
        return f"{value!r} is not a lowercase ASCII name (PEP 8); {allowed}"
    if value in sys.stdlib_module_names or value in THIRD_PARTY_MODULES:
        return f"{value!r} would shadow the module of that name; choose another name"
    if len(value) > MAX_NAME_LENGTH:
        return f"is {len(value)} characters long; use at most {MAX_NAME_LENGTH}"
    return None


def check_description(value: str) -> Problem:
    """Check the one-line description."""
    return check_free_text(value, required=False, max_length=200)


def check_author_name(value: str) -> Problem:
    """Check the author's name."""
    return check_free_text(value, required=True, max_length=100)


def check_author_email(value: str) -> Problem:
    """Check the author's email address (a plain shape check, not RFC 5322)."""
    allowed = "give an address like jane.doe@example.com"
    if not value:
        return f"is empty; {allowed}"
    if any(char.isspace() or char in '"\\<>,;' for char in value):
        return (
            f"{value!r} contains a space, quote, backslash, comma, semicolon "
            f"or angle bracket; {allowed}"
        )
    if value.count("@") != 1:
        return f"{value!r} must contain exactly one @; {allowed}"
    local, domain = value.split("@")
    labels = domain.split(".")
    if not local or len(labels) < 2 or not all(labels):
        return f"{value!r} needs a name before the @ and a dotted domain after it; {allowed}"
    return None


def check_github_owner(value: str) -> Problem:
    """Check the GitHub user or organisation (also the GHCR namespace)."""
    allowed = "use 1-39 lowercase letters, digits and single hyphens, not at either end"
    if not value:
        return f"is empty; {allowed}"
    if len(value) > 39:
        return f"is {len(value)} characters long; {allowed}"
    if value != value.lower():
        return (
            f"{value!r} has capitals but GHCR image names must be lowercase; {allowed}"
        )
    if not OWNER_RE.fullmatch(value):
        return f"{value!r} is not a valid GitHub owner; {allowed}"
    return None


def parse_version(value: str) -> tuple[int, int] | None:
    """Parse ``MAJOR.MINOR`` into a tuple of ints, or None if it is not that shape."""
    match = VERSION_RE.fullmatch(value)
    return (int(match[1]), int(match[2])) if match else None


def check_python_version(value: str) -> Problem:
    """Check the Python version: MAJOR.MINOR, one of the supported versions."""
    supported = ", ".join(f"{major}.{minor}" for major, minor in SUPPORTED_PYTHONS)
    allowed = f"use one of {supported}"
    version = parse_version(value)
    if version is None:
        if re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", value):
            return f"{value!r} has a patch number; give MAJOR.MINOR only, one of {supported}"
        return f"{value!r} is not a MAJOR.MINOR version; {allowed}"
    if not SUPPORTED_PYTHONS[0] <= version <= SUPPORTED_PYTHONS[-1]:
        return f"{value} is not supported; {allowed}"
    return None


def check_choice(value: str, choices: tuple[str, ...]) -> Problem:
    """Check that an answer is one of a fixed list of choices."""
    if value not in choices:
        return f"{value!r} is not an allowed choice; use one of {', '.join(choices)}"
    return None


def check_dvc_remote_url(url: str, remote: str) -> Problem:
    """Check the DVC remote URL against the chosen kind of remote."""
    if not is_one_line(url):
        return "contains a line break; give a single line"
    if remote == "local":
        allowed = "for a local remote give a directory path such as ../my-dvc-storage"
        if not url.strip():
            return f"is empty; {allowed}"
        if "://" in url:
            return f"{url!r} is a URL but dvc_remote is 'local'; {allowed}"
        return None
    if remote not in CLOUD_SCHEMES:
        return None  # dvc_remote itself is reported
    scheme, what = CLOUD_SCHEMES[remote], BUCKET_WORDS[remote]
    allowed = f"give {scheme}<{what}>[/path]"
    if not url:
        return f"is empty but dvc_remote {remote!r} needs a {scheme} URL; {allowed}"
    if not url.startswith(scheme):
        return f"{url!r} does not start with {scheme}; {allowed}"
    bucket = url.removeprefix(scheme).split("/", 1)[0]
    if not BUCKET_RE.fullmatch(bucket) or any(char.isspace() for char in url):
        return f"{url!r} has no valid {what} name; {allowed}"
    return None


def parse_cron_value(
    text: str, lowest: int, highest: int, names: tuple[str, ...]
) -> int:
    """Parse one cron number or name; raise ValueError if it is out of range."""
    if text.upper() in names:
        return lowest + names.index(text.upper())
    if not DIGITS_RE.fullmatch(text):
        raise ValueError(text)
    number = int(text)
    if not lowest <= number <= highest:
        raise ValueError(text)
    return number


def expand_cron_field(
    text: str, lowest: int, highest: int, names: tuple[str, ...]
) -> set[int]:
    """Expand one cron field (``*``, ``*/n``, ``a``, ``a-b``, ``a-b/n``, lists) to values."""
    values: set[int] = set()
    for item in text.split(","):
        span, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not DIGITS_RE.fullmatch(step_text) or int(step_text) == 0:
                raise ValueError(item)
            step = int(step_text)
        if span == "*":
            start, stop = lowest, highest
        elif "-" in span:
            first, _, last = span.partition("-")
            start = parse_cron_value(first, lowest, highest, names)
            stop = parse_cron_value(last, lowest, highest, names)
            if start > stop:
                raise ValueError(item)
        elif step_text:
            raise ValueError(item)  # `a/n` is not portable cron; write `a-b/n`
        else:
            start = stop = parse_cron_value(span, lowest, highest, names)
        values.update(range(start, stop + 1, step))
    return values


def shortest_gap(minutes: set[int], hours: set[int]) -> int:
    """Return the fewest minutes between two runs of a schedule (60 if hourly or rarer)."""
    ordered = sorted(minutes)
    gaps = [later - earlier for earlier, later in itertools.pairwise(ordered)]
    if any((hour + 1) % 24 in hours for hour in hours):
        gaps.append(60 - ordered[-1] + ordered[0])  # from one hour into the next
    return min(gaps, default=60)


def check_monitoring_cron(value: str) -> Problem:
    """Check the monitoring schedule: a 5-field cron line GitHub Actions accepts."""
    allowed = (
        "give 5 fields: minute hour day-of-month month day-of-week, e.g. '0 6 * * 1'"
    )
    if not is_one_line(value):
        return f"contains a line break; {allowed}"
    if value.strip().startswith("@"):
        return f"{value!r} is a shortcut GitHub Actions does not accept; {allowed}"
    fields = value.split()
    if len(fields) != 5:
        return f"{value!r} has {len(fields)} fields, not 5; {allowed}"
    expanded: list[set[int]] = []
    for text, (name, lowest, highest, names) in zip(fields, CRON_FIELDS, strict=True):
        try:
            expanded.append(expand_cron_field(text, lowest, highest, names))
        except ValueError:
            span = f"{lowest}-{highest}" + (
                f" or {names[0]}-{names[-1]}" if names else ""
            )
            return f"{name} field {text!r} is not valid; use {span} with *, */n, a-b, a-b/n or a,b"
    if shortest_gap(expanded[0], expanded[1]) < MINIMUM_CRON_INTERVAL:
        return (
            f"{value!r} runs more often than every {MINIMUM_CRON_INTERVAL} minutes, "
            "which GitHub Actions does not allow; schedule runs at least 5 minutes apart"
        )
    return None


def find_problems(answers: dict[str, str]) -> list[tuple[str, str]]:
    """Return (option, problem) for every bad answer, in the order of cookiecutter.json."""
    checks: dict[str, Callable[[str], Problem]] = {
        "project_name": check_project_name,
        "project_slug": check_project_slug,
        "package_name": check_package_name,
        "description": check_description,
        "author_name": check_author_name,
        "author_email": check_author_email,
        "github_owner": check_github_owner,
        "python_version": check_python_version,
        "license": lambda value: check_choice(value, LICENSES),
        "task": lambda value: check_choice(value, TASKS),
        "model_family": lambda value: check_choice(value, MODEL_FAMILIES),
        "dvc_remote": lambda value: check_choice(value, DVC_REMOTES),
        "dvc_remote_url": lambda url: check_dvc_remote_url(url, answers["dvc_remote"]),
        "monitoring_cron": check_monitoring_cron,
    }
    problems = []
    for option, check in checks.items():
        problem = check(answers[option])
        if problem:
            problems.append((option, problem))
    return problems


def decode_answers(raw: dict[str, str]) -> dict[str, str]:
    """Decode the JSON-encoded answers; non-text values are turned into text."""
    decoded = {option: json.loads(text) for option, text in raw.items()}
    return {
        option: value if isinstance(value, str) else json.dumps(value)
        for option, value in decoded.items()
    }


def main() -> int:
    """Print the first problem, if any, as one line on stderr; return the exit status."""
    problems = find_problems(decode_answers(RAW_ANSWERS))
    if not problems:
        return 0
    option, problem = problems[0]
    print(f"ERROR: {option}: {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
