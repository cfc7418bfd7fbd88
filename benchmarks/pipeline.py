"""Pipeline benchmark: wall time and peak memory of every DVC stage of a baked project, cold,
and of a no-op `dvc repro`. Prints a table; no thresholds (figures: benchmarks/RESULTS.md).

    python benchmarks/pipeline.py demo/credit-risk-model      # after `make demo`
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

# Runs one stage in a fresh interpreter and prints that interpreter's peak resident memory (KiB).
STAGE_RUNNER = (
    "import resource, runpy, sys; sys.argv = ['{package}', '{command}'];\n"
    "try:\n    runpy.run_module('{package}', run_name='__main__')\n"
    "except SystemExit as exit:\n    code = exit.code\nelse:\n    code = 0\n"
    "print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)"
)


def stage_commands(project: Path) -> list[tuple[str, str, str]]:
    """(stage, package, CLI command) in dvc.yaml order, from each stage's `cmd`."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    commands = []
    for name, stage in stages.items():
        _, _, package, command = stage["cmd"].split()[:4]
        commands.append((name, package, command))
    return commands


def run_stage(project: Path, package: str, command: str) -> tuple[float, float]:
    """Seconds and peak MiB of one stage."""
    code = STAGE_RUNNER.format(package=package, command=command)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=project, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"stage {command} failed:\n{done.stderr[-2000:]}")
    peak = next(
        line for line in done.stderr.splitlines() if line.startswith("peak_kib")
    )
    return seconds, int(peak.split()[1]) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "project", type=Path, help="a baked project whose environment is active"
    )
    project = parser.parse_args().project.resolve()
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")

    print(f"{'stage':<12} {'seconds':>8} {'peak MiB':>9}")
    total = 0.0
    for name, package, command in stage_commands(project):
        seconds, peak = run_stage(project, package, command)
        total += seconds
        print(f"{name:<12} {seconds:>8.2f} {peak:>9.0f}")
    print(f"{'all stages':<12} {total:>8.2f}")

    subprocess.run(["dvc", "commit", "--force", "--quiet"], cwd=project, check=True)
    started = time.perf_counter()
    subprocess.run(["dvc", "repro", "--quiet"], cwd=project, check=True)
    print(f"{'no-op repro':<12} {time.perf_counter() - started:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
