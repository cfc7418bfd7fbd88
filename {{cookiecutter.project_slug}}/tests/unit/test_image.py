"""`make image`'s decisions that need no Docker: what counts as an uncommitted source change,
the lineage hashes and where the source lives."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.errors import PipelineError
from {{ cookiecutter.package_name }}.serving import image

pytestmark = pytest.mark.unit

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed scratch project: dvc.yaml, params.yaml, a source file and a report."""
    shutil.copy(PROJECT_ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "module.py").write_text("x = 1\n")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "metrics.json").write_text("{}\n")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    identity = ["-c", "user.name=Tests", "-c", "user.email=tests@example.com"]
    for args in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-q", "-m", "x"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_pipeline_outputs_do_not_make_the_tree_dirty(repository: Path) -> None:
    (repository / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    (repository / "reports" / "metrics.json").write_text('{"roc_auc": 0.8}\n')
    (repository / "notes.txt").write_text("untracked, outside src\n")
    assert image.source_changes() == []
    assert image.check_source(allow_dirty=False) is False


def test_source_changes_are_refused_unless_allowed(repository: Path) -> None:
    (repository / "params.yaml").write_text("changed: true\n")
    (repository / "src" / "new_module.py").write_text("y = 2\n")  # the bento would ship it
    assert image.source_changes() == ["M params.yaml", "?? src/new_module.py"]
    with pytest.raises(PipelineError, match=r"uncommitted changes \(M params.yaml, \?\? src/new"):
        image.check_source(allow_dirty=False)
    assert image.check_source(allow_dirty=True) is True


def test_params_hash_ignores_key_order() -> None:
    first = image.params_sha256({"train": {"model": "a", "cv_folds": 5}, "seed": 1})
    second = image.params_sha256({"seed": 1, "train": {"cv_folds": 5, "model": "a"}})
    assert first == second
    assert first != image.params_sha256({"seed": 2, "train": {"cv_folds": 5, "model": "a"}})


def test_source_repository_from_github_or_origin(
    repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_SERVER_URL", raising=False)
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    assert image.source_repository() == image.DEFAULT_SOURCE
    subprocess.run(["git", "remote", "add", "origin", "git@github.com:acme/credit.git"], check=True)
    assert image.source_repository() == "https://github.com/acme/credit"
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.example.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "team/model")
    assert image.source_repository() == "https://github.example.com/team/model"
