"""`make predict` as a user runs it on a baked, piped project (binary in test_e2e.py, each other
task in test_tasks.py): a copy of the test split with rows broken the ways the service refuses,
scored into a CSV file with the rejects beside it, each row explained (EXPLAIN=1). The
generated project's own tests/model/test_batch.py checks the answers against the service's and
the log, and tests/model/test_explanations.py the explanations' sums for every model family."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import yaml
from conftest import Project


def broken_copy_of_the_test_split(
    project: Project, path: Path
) -> tuple[int, dict[int, str]]:
    """The test split at `path` with its first rows broken, one rule each (a number above its
    maximum, an unknown category); its row count and row number (1-based) -> broken column."""
    columns = yaml.safe_load((project.path / "schema.yaml").read_text())["columns"]
    with open(project.path / "data" / "processed" / "test.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    bounded = next(
        n for n, spec in columns.items() if spec["type"] != "category" and "max" in spec
    )
    category = next(n for n, spec in columns.items() if spec["type"] == "category")
    rows[0][bounded] = str(columns[bounded]["max"] + 1)
    rows[1][category] = "__no_such_category__"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return len(rows), {1: bounded, 2: category}


def check_explanations(
    project: Project, scored: list[dict[str, str]], said: str
) -> None:
    """A base and a contribution per model input on every row; where the run says what they
    add up to in a form a row's other columns show, they add up to it (a multiclass score is
    not: its softmax needs every class's; the generated test_explanations checks those)."""
    inputs = json.loads((project.path / "reports" / "train.json").read_text())["inputs"]
    columns = ["base", *(f"contribution[{name}]" for name in inputs)]
    assert list(scored[0])[-len(columns) :] == columns
    for row in scored:
        output = sum(float(row[column]) for column in columns)
        if (
            "the log-odds that" in said
        ):  # binary: the probability answered is its sigmoid
            assert math.isclose(
                1 / (1 + math.exp(-output)), float(row["probability"]), abs_tol=1e-6
            ), row
        elif "the probability that" in said and "probability" in row:  # a binary forest
            assert math.isclose(output, float(row["probability"]), abs_tol=1e-6), row
        elif (
            "the model's estimate of" in said
        ):  # the decision adds one offset to every row
            offset = float(scored[0]["label"]) - sum(
                float(scored[0][c]) for c in columns
            )
            assert math.isclose(float(row["label"]) - output, offset, abs_tol=1e-6), row


def check_make_predict(
    project: Project, scratch: Path, *, every_refusal: bool = True
) -> None:
    """Scored + rejected = the input, each reject naming its column, the scored rows in the
    prediction log (which goes to `scratch`: the project may be shared). With `every_refusal`,
    also: an existing output kept without OVERWRITE=1, and `make predict` without INPUT (the
    Makefile's own, the same for every task: test_tasks.py leaves them to test_e2e.py)."""
    source, output = scratch / "applicants.csv", scratch / "scored.csv"
    count, broken = broken_copy_of_the_test_split(project, source)
    log = {
        "PREDICTION_LOG": str(scratch / "log"),
        "PREDICTION_SPOOL": str(scratch / "spool"),
    }
    done = project.run(
        "make", "predict", f"INPUT={source}", f"OUTPUT={output}", "EXPLAIN=1", env=log
    )
    assert re.search(
        rf"scored {count - 2} of {count} rows into {output} with \S+:\S+; 2 rejected.*"
        "; each row's contributions explain the ",
        done.stdout,
    ), done.stdout[-2000:]
    with open(output, newline="") as handle:
        scored = list(csv.DictReader(handle))
    with open(scratch / "scored.rejects.csv", newline="") as handle:
        rejects = list(csv.DictReader(handle))
    assert len(scored) + len(rejects) == count
    assert {int(r["row"]): r["problems"].split(":")[0] for r in rejects} == broken
    check_explanations(project, scored, done.stdout)
    # the scored rows in the prediction log, marked batch, under the output's ids
    logged = [
        json.loads(line)
        for path in (scratch / "log").glob("predictions-*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert all(record["batch"] for record in logged)
    assert sorted(record["prediction_id"] for record in logged) == sorted(
        row["prediction_id"] for row in scored
    )
    if not every_refusal:
        return
    again = project.run(
        "make", "predict", f"INPUT={source}", f"OUTPUT={output}", check=False, env=log
    )
    assert again.returncode != 0 and "exists: pass --overwrite" in again.stdout
    project.run(
        "make", "predict", f"INPUT={source}", f"OUTPUT={output}", "OVERWRITE=1", env=log
    )
    bare = project.run("make", "predict", check=False, env=log)
    assert bare.returncode != 0 and "make predict needs INPUT=" in bare.stdout
