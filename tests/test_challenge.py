"""`make challenge` in a baked project: production recorded as a git tag on the piped default
project (its model pushed to the local DVC remote), an equal candidate passes, and a candidate
trained without its strongest input is refused naming the params.yaml key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import Project

pytestmark = pytest.mark.e2e

DIGEST = "sha256:" + "c" * 64


def _set(params: Path, pattern: str, replacement: str) -> None:
    text, count = re.subn(pattern, replacement, params.read_text(), count=1, flags=re.M)
    assert count == 1, f"params.yaml has no match for {pattern}"
    params.write_text(text)


def test_make_challenge_passes_an_equal_candidate_and_refuses_a_worse_one(
    default_project: Project, tmp_path: Path
) -> None:
    project = default_project.copy(tmp_path / default_project.path.name)
    package = project.path.name.replace("-", "_")
    project.commit("The generated project, piped")
    project.run("make", "push", timeout=600)  # production's bundle on the DVC remote
    project.run("python", "-m", package, "record-deployment", "--image-digest", DIGEST)
    tags = project.run("git", "tag", "--list", "deployed/production/*").stdout.split()
    assert len(tags) == 1, tags

    equal = project.run("make", "challenge", timeout=600)
    assert "**Passed**" in equal.stdout, equal.stdout[-3000:]
    result = json.loads((project.path / "reports" / "challenge.json").read_text())
    assert result["production"]["image_digest"] == DIGEST
    assert result["comparisons"][0]["data"] == "test split"

    # Without checking_account (the strongest input) the model ranks worse; the pipeline's
    # own gates are loosened so that only the challenge stands in the way.
    params = project.path / "params.yaml"
    _set(params, r"^(  not_model_inputs:) \[sex\]", r"\1 [sex, checking_account]")
    _set(params, r"^(    roc_auc:) 0\.70", r"\1 0.55")
    _set(params, r"^(    precision:) 0\.80", r"\1 0.5")
    _set(params, r"^(  min_gain_over_baseline:) 0\.05", r"\1 0.0")
    _set(params, r"^(    demographic_parity_difference:) 0\.45", r"\1 1.0")
    _set(params, r"^(    equalized_odds_difference:) 0\.55", r"\1 1.0")
    _set(params, r"^(    max_metric_drop:) 0\.02", r"\1 0.01")
    worse = project.run("make", "challenge", check=False, timeout=900)
    assert worse.returncode != 0, worse.stdout[-3000:]
    assert "**Refused**" in worse.stdout, worse.stdout[-3000:]
    assert "deploy.champion.max_metric_drop" in worse.stdout, worse.stdout[-3000:]
    summary = (project.path / "reports" / "challenge.md").read_text()
    assert "| test split |" in summary and tags[0] in summary
