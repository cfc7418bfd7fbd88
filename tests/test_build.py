"""The bento that the project's `make build` packages, built as a user would (a plain shell:
no uv on PATH, nothing of the template's tools), from a data source behind an http URL with two
credentials: a token that comes from an environment variable (the documented way) and a key
written into params.yaml itself (the way the README advises against). One build proves both:

- the token appears in no file of the project or the bento, nor in what the commands print;
- the key reaches no output, only params.yaml and DVC's own records of params (dvc.lock, the
  run cache);
- the bento carries no params.yaml, and its packages are exactly the versions in uv.lock.
"""

from __future__ import annotations

import re
import shutil
import tomllib
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import Project
from loopback import serve_directory

pytestmark = pytest.mark.e2e

SOURCE = "data/external/german_credit.csv"
MANIFEST = "data/raw/manifest.json"
# DVC's own records of the params values: a literal credential in params.yaml lands there too.
PARAMS_RECORDS = ("params.yaml", "dvc.lock", ".dvc/cache/runs/")


def point_source_at(project: Project, source: str) -> None:
    params_file = project.path / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["data"]["source"] = source
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))


def files_holding(root: Path, secret: str) -> list[str]:
    """Every file under `root` whose bytes contain `secret`, relative to root."""
    needle = secret.encode()
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
            found.append(str(path.relative_to(root)))
    return sorted(found)


@pytest.fixture(scope="module")
def built(
    default_project: Project, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Project, str, str, str, str]:
    """A copy of the default project built from an http source whose URL names an environment
    variable for its token and holds its key as written. Returns the project, the token, the
    key, what `make build` printed and the source manifest it left."""
    work = tmp_path_factory.mktemp("build")
    project = default_project.copy(work / default_project.path.name)
    served = work / "served"
    served.mkdir()
    shutil.copy(project.path / SOURCE, served / "german_credit.csv")
    token, key = f"env-{uuid.uuid4().hex}", f"lit-{uuid.uuid4().hex}"
    with serve_directory(served) as base:
        point_source_at(
            project, f"{base}/german_credit.csv?token=${{DATA_TOKEN}}&key={key}"
        )
        printed = project.run(
            "make", "build", env={"DATA_TOKEN": token}, timeout=1200
        ).stdout
    manifest = (project.path / MANIFEST).read_text()
    return project, token, key, printed, manifest


def test_a_token_from_the_environment_is_in_no_file_and_no_output(
    built: tuple[Project, str, str, str, str],
) -> None:
    project, token, _, printed, manifest = built
    assert files_holding(project.path, token) == []
    assert token not in printed
    assert "token=${DATA_TOKEN}" in manifest  # the variable's name, never its value


def test_a_key_written_into_params_reaches_no_output(
    built: tuple[Project, str, str, str, str],
) -> None:
    project, _, key, printed, manifest = built
    assert files_holding(project.path, key), "the key is not even in params.yaml"
    leaks = [
        path
        for path in files_holding(project.path, key)
        if not path.startswith(PARAMS_RECORDS)
    ]
    assert leaks == [], f"the key is in outputs: {leaks}"
    assert key not in printed
    assert "key=***" in manifest
    assert "key=***" in (project.path / "reports/registry.json").read_text()


def bento_dir(project: Project) -> Path:
    bentos = project.path / ".bentoml" / "bentos"
    [name] = [path for path in bentos.iterdir() if path.is_dir()]
    latest = (name / "latest").read_text().strip()
    return name / latest


def test_the_bento_carries_no_params_and_the_locked_packages(
    built: tuple[Project, str, str, str, str],
) -> None:
    project, *_ = built
    bento = bento_dir(project)
    assert not list(bento.rglob("params.yaml")), (
        "params.yaml (and its data source) shipped"
    )
    locked = {
        entry["name"]: entry.get("version")
        for entry in tomllib.loads((project.path / "uv.lock").read_text())["package"]
    }
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", requirements, flags=re.M))
    normal = {
        re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins.items()
    }
    assert {"bentoml", "scikit-learn", "pandas", "numpy"} <= set(normal)
    disagree = {
        name: (version, locked.get(name))
        for name, version in normal.items()
        if locked.get(name) != version
    }
    assert disagree == {}, f"bento pins that differ from uv.lock: {disagree}"
    assert not {"dvc", "pytest", "fairlearn", "pandera"} & set(normal)
