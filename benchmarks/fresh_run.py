"""One command of a baked project (`python -m <package> ...`) in a fresh interpreter, timed,
with its peak resident memory: what the monitoring and batch benchmarks measure."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

# Runs the command and prints the interpreter's peak resident memory (KiB) on stderr.
RUNNER = (
    "import resource, runpy, sys; sys.argv = {argv!r};\n"
    "try:\n    runpy.run_module({package!r}, run_name='__main__')\n"
    "except SystemExit as exit:\n    code = exit.code\nelse:\n    code = 0\n"
    "print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(0 if code in {ok!r} else code)"
)


def run_command(
    project: Path, package: str, args: list[str], cwd: Path, ok: tuple[int, ...] = (0,)
) -> tuple[float, float]:
    """Seconds and peak MiB of `python -m <package> <args>` run in `cwd` with the project's
    code and model store; SystemExit with its output when it exits other than `ok`."""
    env = {
        **os.environ,
        "PYTHONPATH": str(project / "src"),
        "BENTOML_HOME": str(project / ".bentoml"),
        "DO_NOT_TRACK": "1",
    }
    code = RUNNER.format(argv=[package, *args], package=package, ok=ok)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    peak = next(
        line for line in done.stderr.splitlines() if line.startswith("peak_kib")
    )
    return seconds, int(peak.split()[1]) / 1024
