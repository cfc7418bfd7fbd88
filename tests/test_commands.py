"""The template's own Makefile commands, each run for real: help, demo (+ bench), clean."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import TEMPLATE, ProjectEnvironment, run_command

MAKEFILE = TEMPLATE / "Makefile"


def advertised_targets() -> set[str]:
    return set(re.findall(r"^([a-z-]+):.*## ", MAKEFILE.read_text(), flags=re.M))


def test_help_lists_every_advertised_command(
    project_environment: ProjectEnvironment,
) -> None:
    env = project_environment.variables(TEMPLATE, activated=False)
    shown = run_command(["make", "--no-print-directory", "help"], TEMPLATE, env).stdout
    listed = set(re.findall(r"^\s+make (\S+)", shown, flags=re.M))
    assert listed == advertised_targets()
    assert {"demo", "test", "lint", "bench", "clean"} <= listed


def test_clean_removes_what_the_commands_create(
    tmp_path: Path, project_environment: ProjectEnvironment
) -> None:
    shutil.copy(MAKEFILE, tmp_path / "Makefile")
    made = [".venv/bin", ".cache/project-env/x", "demo/p", "hooks/__pycache__", "tests"]
    for relative in made:
        (tmp_path / relative).mkdir(parents=True)
    (tmp_path / "hooks" / "keep.py").write_text("")
    run_command(
        ["make", "clean"],
        tmp_path,
        project_environment.variables(tmp_path, activated=False),
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Makefile", "hooks", "tests"]
    assert [p.name for p in (tmp_path / "hooks").iterdir()] == ["keep.py"]


def test_demo_refuses_a_task_the_template_does_not_offer(
    tmp_path: Path, project_environment: ProjectEnvironment
) -> None:
    """`make demo TASK=...` (and so `make bench TASK=...`) bakes one of cookiecutter.json's
    tasks; any other answer stops it with one line naming the choices, before anything is
    baked. (Each offered task's project is baked and run by tests/test_tasks.py.)"""
    demo = tmp_path / "demo"
    env = project_environment.variables(TEMPLATE, activated=False)
    result = run_command(
        ["make", "--no-print-directory", "demo", "TASK=ranking", f"DEMO={demo}"],
        TEMPLATE,
        env,
        check=False,
    )
    assert result.returncode != 0
    choices = " ".join(json.loads((TEMPLATE / "cookiecutter.json").read_text())["task"])
    assert (
        f"TASK=ranking is not a task of cookiecutter.json: {choices}." in result.stdout
    )
    assert not demo.exists()


def section(output: str, heading: str) -> str:
    """The lines after the line `heading` (a regex) up to the next blank line."""
    match = re.search(rf"^{heading}\n((?:.+\n?)*)", output, re.M)
    assert match, f"no section {heading!r} in:\n{output}"
    return match[1]


@pytest.mark.e2e
def test_bench_runs_the_demo_then_times_every_stage(
    tmp_path: Path, project_environment: ProjectEnvironment
) -> None:
    demo = tmp_path / "demo"
    project = demo / "credit-risk-model"
    env = project_environment.variables(project, activated=False)
    result = run_command(
        [
            "make",
            "--no-print-directory",
            "bench",
            f"DEMO={demo}",
            # the format, not the figures
            "PIPELINE_BENCH_ARGS=--scales 1 2",
            "SERVING_BENCH_ARGS=--requests 32 --rounds 1",
            "MONITORING_BENCH_ARGS=--sizes 10000 200000",  # the larger one sampled
            "BATCH_BENCH_ARGS=--scales 1 3",
            "EXPLAIN_BENCH_ARGS=--requests 20 --rows 50",
        ],
        TEMPLATE,
        env,
        timeout=900,
    )
    # make demo: the defaults baked and their lifecycle run
    assert "Demo project:" in result.stdout
    assert "Model card" in (project / "docs" / "model_card.md").read_text()
    assert (project / "reports" / "registry.json").is_file()
    # the pipeline benchmark: at each size, a row of figures per stage, then the totals; the
    # growth between the sizes; the targets
    stages = set(yaml.safe_load((project / "dvc.yaml").read_text())["stages"])
    for scale, rows in (("1", "1,000"), ("2", "2,000")):
        table = section(result.stdout, rf"{scale}x \({rows} rows\)")
        figures = {
            match[0]: (float(match[1]), float(match[2]))
            for match in re.findall(r"^(\w+)\s+([\d.]+)\s+([\d.]+)$", table, re.M)
        }
        assert set(figures) == stages, table
        assert all(seconds > 0 and peak > 50 for seconds, peak in figures.values())
        for total in ("all stages", "cold repro", "no-op repro"):
            assert re.search(rf"^{total}\s+[\d.]+$", table, re.M), (total, table)
    growth = section(result.stdout, r"growth 1x -> 2x \(rows x2\)")
    assert set(re.findall(r"^(\w+)\s+[\d.]+\s+[\d.]+$", growth, re.M)) == stages
    for target in (
        r"no-op repro at 1x under 1.5 s: [\d.]+ s, (met|missed)",
        r"cold repro at 1x under 60 s: [\d.]+ s, (met|missed)",
        r"first repro after setup within 1.5x of a warm one: [\d.]+ s against [\d.]+ s"
        r" \([\d.]+x\), (met|missed)",
        r"time and memory grow no faster than the rows: (met|missed by .+)",
    ):
        assert re.search(rf"^{target}$", result.stdout, re.M), target
    # the serving benchmark side by side: every server at every point, the service without a
    # single non-2xx answer, and the ratios against the targets
    points = re.findall(
        r"^(peer, 1 worker|peer, 2 workers|service)\s+(1|100)\s+(1|8|32)(?:\s+[\d.]+){4}\s+(\d+)$",
        result.stdout,
        re.M,
    )
    assert {point[:3] for point in points} == {
        (server, size, concurrency)
        for server in ("peer, 1 worker", "peer, 2 workers", "service")
        for size in ("1", "100")
        for concurrency in ("1", "8", "32")
    }, result.stdout
    assert all(errors == "0" for server, *_, errors in points if server == "service")
    for ratio in ("service/best peer", "service/floor"):
        assert re.search(rf"{ratio}: [\d.]+", result.stdout), ratio
    # the sinks in-process: both request sizes for both log sinks, and nothing dropped
    latencies = re.findall(
        r"^(one record|full batch)\s+(directory|sqlite)\s+(\d+)\s+([\d.]+)\s+([\d.]+)",
        result.stdout,
        re.M,
    )
    assert {(name, sink) for name, sink, *_ in latencies} == {
        (name, sink)
        for name in ("one record", "full batch")
        for sink in ("directory", "sqlite")
    }
    logged = re.findall(r"logged (\d+) of (\d+) predictions", result.stdout)
    assert len(logged) == 2 and all(done == expected for done, expected in logged)
    # the monitoring benchmark: one run per window size, sampled above max_rows
    sizes = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+(\d+)$", result.stdout, re.M)
    assert [int(rows) for rows, _, _ in sizes] == [10_000, 200_000], sizes
    assert "max_rows 100000 (larger windows sampled)" in result.stdout
    assert all(float(seconds) > 0 and int(peak) > 50 for _, seconds, peak in sizes)
    # the batch benchmark: every row of each size scored, with its rate, memory and floor
    batch = re.findall(
        r"^\s+(\d+)x\s+([\d,]+)\s+([\d.]+)\s+([\d,]+)\s+(\d+)\s+([\d.]+)\s+([\d,]+)$",
        result.stdout,
        re.M,
    )
    assert [(scale, rows) for scale, rows, *_ in batch] == [
        ("1", "1,000"),
        ("3", "3,000"),
    ]
    assert all(int(peak) > 50 for *_, peak, _, _ in batch), batch
    # the explanation benchmark: /explain served beside /predict, then each family's cost
    served = re.findall(
        r"^(/predict|/explain)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$",
        result.stdout,
        re.M,
    )
    assert [(route, records) for route, records, *_ in served] == [
        ("/predict", "1"),
        ("/explain", "1"),
        ("/explain", "10"),
    ], served
    families = re.findall(
        r"^(\w+)\s+(log_odds|probability|estimate)\s+([\d.]+)\s+([\d.]+)\s+(\d+)$",
        result.stdout,
        re.M,
    )
    assert [family for family, *_ in families] == [
        "hist_gradient_boosting",
        "random_forest",
        "logistic_regression",
    ], families


@pytest.mark.e2e
def test_lock_regenerates_the_committed_locks(
    tmp_path: Path, project_environment: ProjectEnvironment
) -> None:
    """`make lock` in a copy of the template keeps the shipped uv.lock files as they are when
    the pins have not moved (uv keeps locked versions that still satisfy them)."""
    copy = tmp_path / "template"
    shutil.copytree(
        TEMPLATE, copy, ignore=shutil.ignore_patterns(".venv", ".cache", ".git", "demo")
    )
    env = project_environment.variables(copy, activated=False)
    run_command(
        [
            "make",
            "--no-print-directory",
            "lock",
            "STAMP=",
            f"BIN={TEMPLATE / '.venv' / 'bin'}",
        ],
        copy,
        env,
        timeout=600,
    )
    shipped = sorted((TEMPLATE / "templates").glob("uv-*.lock"))
    assert [path.name for path in shipped] == [
        "uv-3.11.lock",
        "uv-3.12.lock",
        "uv-3.13.lock",
    ]
    for lock in shipped:
        assert (copy / "templates" / lock.name).read_text() == lock.read_text(), (
            lock.name
        )
