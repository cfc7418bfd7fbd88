"""Pipeline benchmark: `dvc repro` of a baked project, cold and with nothing to do, with every
stage's wall time and peak memory, at the shipped data size and at larger sizes (the rows
repeated with noise). Prints the tables and the targets of issue 10, met or missed; asserts
nothing (figures: benchmarks/RESULTS.md).

    python benchmarks/pipeline.py demo/credit-risk-model               # 1x, 100x and 1000x
    python benchmarks/pipeline.py demo/credit-risk-model --scales 1 2  # quick

Each size runs in a scratch copy of the project (code, params, git; no DVC cache, no outputs),
so the project is left as it was. The stages are timed inside `dvc repro` itself: a `python`
shim first on PATH runs each stage's command and records its wall time and the peak resident
memory of its largest process. Python's bytecode cache is on, as on a user's machine (these
machines set PYTHONDONTWRITEBYTECODE): what is not compiled yet is compiled first, unreported.

Before that, the first run after `make setup`: a cold `dvc repro` at 1x with no bytecode
written by imports (PYTHONDONTWRITEBYTECODE=1, as in many CI images), so it runs on what setup
compiled and nothing else; its target is 1.5 times the warm cold run.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

NOISE = 0.1  # a numeric value moves by this share of its column's standard deviation
SWAP_SHARE = 0.02  # share of a category column's values redrawn from the column
TARGET_NO_OP_SECONDS = 1.5
TARGET_COLD_SECONDS = 60.0
TARGET_AFTER_SETUP_RATIO = 1.5  # the first repro after setup, over a warm one
UPSAMPLED_SOURCE = "data/external/upsampled.csv"
# Left out of the scratch copies (paths in the project): the environment, caches, the model store.
NOT_COPIED = {".venv", ".bentoml", "logs", ".dvc/cache", ".dvc/tmp"}

# Runs one stage command (`python -m <package> <stage>`) as DVC asked, then appends its wall
# time and the peak resident memory of its largest process (KiB on Linux) to the stage log.
SHIM = """#!{python} -IS
import json, os, resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.call([{python!r}, *sys.argv[1:]])
seconds = time.perf_counter() - started
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
with open({log!r}, "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "seconds": seconds, "peak_kib": peak_kib}}))
    log.write("\\n")
sys.exit(code)
"""


@dataclasses.dataclass
class Run:
    """One cold `dvc repro` and the no-op one after it, at one data size."""

    scale: int
    rows: int
    cold_seconds: float
    no_op_seconds: float
    # stage -> (seconds, peak MiB)
    stages: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)


def stage_commands(project: Path) -> tuple[str, dict[str, str]]:
    """The package every stage runs (`python -m <package> <command>`), and each stage's CLI
    command -> its dvc.yaml name."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    commands = [stage["cmd"].split() for stage in stages.values()]
    return commands[0][2], {
        cmd[3]: name for cmd, name in zip(commands, stages, strict=True)
    }


def upsample(
    table: pd.DataFrame, scale: int, target: str | None, seed: int
) -> pd.DataFrame:
    """The rows `scale` times: the originals, then copies with noise so that they are not
    duplicates. A numeric column moves by a normal draw of NOISE of its standard deviation,
    kept within the column's range (integers stay integers); SWAP_SHARE of a category
    column's values are redrawn from the column. A class target (`target`) is kept; a
    number to predict (target None) moves as the other numbers do, or copies of rows whose
    features happen to come out unchanged would be duplicates."""
    if scale == 1:
        return table
    rng = np.random.default_rng(seed)
    copies = table.iloc[np.tile(np.arange(len(table)), scale - 1)].reset_index(
        drop=True
    )
    for column in table.columns.drop(target or []):
        original = table[column]
        if pd.api.types.is_numeric_dtype(original) and not pd.api.types.is_bool_dtype(
            original
        ):
            spread = NOISE * float(original.std() or 0.0)
            noised = copies[column] + rng.normal(0.0, spread, len(copies))
            noised = noised.clip(original.min(), original.max())
            if pd.api.types.is_integer_dtype(original):
                noised = noised.round().astype(original.dtype)
            copies[column] = noised
        else:
            redrawn = rng.random(len(copies)) < SWAP_SHARE
            copies.loc[redrawn, column] = rng.choice(
                original.to_numpy(), int(redrawn.sum())
            )
    upsampled = pd.concat([table, copies], ignore_index=True)
    return upsampled.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def scratch_copy(project: Path, parent: Path, name: str) -> Path:
    copy = parent / name

    def left_out(directory: str, names: list[str]) -> set[str]:
        relative = Path(directory).relative_to(project)
        return {
            name
            for name in names
            if name == "__pycache__" or (relative / name).as_posix() in NOT_COPIED
        }

    shutil.copytree(project, copy, symlinks=True, ignore=left_out)
    (copy / "dvc.lock").unlink(missing_ok=True)  # no lock: every stage is to run
    return copy


def use_source(copy: Path, table: pd.DataFrame) -> None:
    """Point the copy's params.yaml at the table, written as a CSV under data/external."""
    table.to_csv(copy / UPSAMPLED_SOURCE, index=False)
    params_file = copy / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["data"]["source"] = UPSAMPLED_SOURCE
    params["data"]["query"] = None
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))


def shim_environment(workdir: Path) -> tuple[dict[str, str], Path]:
    """The environment for `dvc repro` with the shim first on PATH, and the log it writes."""
    shims = workdir / "shims"
    shims.mkdir(exist_ok=True)
    log = workdir / "stages.jsonl"
    shim = shims / "python"
    shim.write_text(SHIM.format(python=sys.executable, log=str(log)))
    shim.chmod(0o755)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONDONTWRITEBYTECODE", "BENTOML_HOME"}
    }
    env["PATH"] = os.pathsep.join(
        [str(shims), str(Path(sys.executable).parent), env.get("PATH", "")]
    )
    env["DVC_NO_ANALYTICS"] = "1"
    return env, log


def compile_bytecode(project: Path) -> None:
    """The bytecode of the environment and the project's code, written where it is missing or
    stale (usually nowhere: `make demo` has just run every stage), so that no timed run pays
    for compiling what it imports. Files that do not compile (a package's own test data) are
    skipped, as an import would never read them."""
    places = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", "0", *sorted(places), "src"],
        cwd=project,
        capture_output=True,
        check=False,
    )


def repro(copy: Path, env: dict[str, str]) -> float:
    dvc = str(Path(sys.executable).parent / "dvc")
    started = time.perf_counter()
    done = subprocess.run(
        [dvc, "repro", "--quiet"], cwd=copy, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"dvc repro failed in {copy}:\n{done.stderr[-3000:]}")
    return seconds


def read_stages(log: Path, names: dict[str, str]) -> dict[str, tuple[float, float]]:
    stages = {}
    if log.exists():
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            command = (
                entry["argv"][2] if len(entry["argv"]) > 2 else " ".join(entry["argv"])
            )
            stages[names.get(command, command)] = (
                entry["seconds"],
                entry["peak_kib"] / 1024,
            )
        log.unlink()
    return stages


@dataclasses.dataclass
class Bench:
    """What every size's run shares: the project, its source table, where the copies go."""

    project: Path
    workdir: Path
    table: pd.DataFrame
    kept_target: str | None  # the target, if a class: kept in the noisy copies
    stage_names: dict[str, str]  # CLI command -> dvc.yaml stage
    env: dict[str, str]  # for `dvc repro`: the shim first on PATH
    stage_log: Path  # where the shim writes
    keep: bool = False

    def after_setup(self) -> float:
        """A cold `dvc repro` at 1x whose imports write no bytecode: what the first pipeline
        after `make setup` costs where nothing else has compiled the environment."""
        copy = scratch_copy(self.project, self.workdir, "after-setup")
        seconds = repro(copy, {**self.env, "PYTHONDONTWRITEBYTECODE": "1"})
        read_stages(self.stage_log, self.stage_names)
        if not self.keep:
            shutil.rmtree(copy)
        return seconds

    def run(self, scale: int) -> Run:
        """A cold `dvc repro` of a copy of the project on the table `scale` times, then a
        no-op one, which must run no stage."""
        copy = scratch_copy(self.project, self.workdir, f"{scale}x")
        upsampled = upsample(self.table, scale, self.kept_target, seed=scale)
        if scale > 1:
            use_source(copy, upsampled)
        cold = repro(copy, self.env)
        stages = read_stages(self.stage_log, self.stage_names)
        no_op = repro(copy, self.env)
        rerun = read_stages(self.stage_log, self.stage_names)
        if rerun:
            raise SystemExit(
                f"the no-op dvc repro at {scale}x ran stages: {sorted(rerun)}"
            )
        if not self.keep:
            shutil.rmtree(copy)
        return Run(scale, len(upsampled), cold, no_op, stages)


def print_run(result: Run) -> None:
    print(f"\n{result.scale}x ({result.rows:,} rows)")
    print(f"{'stage':<12} {'seconds':>8} {'peak MiB':>9}")
    for name, (seconds, peak) in result.stages.items():
        print(f"{name:<12} {seconds:>8.2f} {peak:>9.0f}")
    print(f"{'all stages':<12} {sum(s for s, _ in result.stages.values()):>8.2f}")
    print(f"{'cold repro':<12} {result.cold_seconds:>8.2f}")
    print(f"{'no-op repro':<12} {result.no_op_seconds:>8.2f}")


def print_growth(smaller: Run, larger: Run) -> list[str]:
    """Each stage's time and memory ratios between two sizes; returns the stages whose time or
    memory grew faster than the rows."""
    rows = larger.rows / smaller.rows
    print(f"\ngrowth {smaller.scale}x -> {larger.scale}x (rows x{rows:.0f})")
    print(f"{'stage':<12} {'time x':>8} {'memory x':>9}")
    faster = []
    for name, (seconds, peak) in larger.stages.items():
        before_seconds, before_peak = smaller.stages[name]
        time_ratio, memory_ratio = seconds / before_seconds, peak / before_peak
        print(f"{name:<12} {time_ratio:>8.2f} {memory_ratio:>9.2f}")
        if time_ratio > rows or memory_ratio > rows:
            faster.append(
                f"{name} ({time_ratio:.1f}x time, {memory_ratio:.1f}x memory)"
            )
    return faster


def verdict(met: bool) -> str:
    return "met" if met else "missed"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "project", type=Path, help="a baked project whose environment is active"
    )
    parser.add_argument(
        "--scales",
        type=int,
        nargs="+",
        default=[1, 100, 1000],
        help="data sizes, in multiples of the shipped rows (default: 1 100 1000)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the scratch copies (their path is printed)",
    )
    arguments = parser.parse_args()
    project = arguments.project.resolve()
    scales = sorted(set(arguments.scales) | {1})
    os.chdir(project)  # the source in params.yaml is relative to the project
    params = yaml.safe_load((project / "params.yaml").read_text())["data"]
    package, names = stage_commands(project)
    loader = importlib.import_module(f"{package}.io")
    table = loader.load_table(params["source"], params.get("query"))

    workdir = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    bench = Bench(
        project,
        workdir,
        table,
        None if params.get("task") == "regression" else params["target"],
        names,
        *shim_environment(workdir),
        keep=arguments.keep,
    )
    try:
        after_setup = bench.after_setup()
        started = time.perf_counter()
        compile_bytecode(project)
        print(
            f"bytecode compiled where missing, as the first import would: "
            f"{time.perf_counter() - started:.1f} s (not reported below)"
        )
        results = [bench.run(scale) for scale in scales]
    finally:
        if arguments.keep:
            print(f"scratch copies: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for result in results:
        print_run(result)
    faster = []
    for smaller, larger in itertools.pairwise(results):
        faster += print_growth(smaller, larger)

    shipped = results[0]
    print("\ntargets (issue 10; bytecode cache on)")
    print(
        f"no-op repro at 1x under {TARGET_NO_OP_SECONDS} s: {shipped.no_op_seconds:.2f} s, "
        f"{verdict(shipped.no_op_seconds < TARGET_NO_OP_SECONDS)}"
    )
    print(
        f"cold repro at 1x under {TARGET_COLD_SECONDS:.0f} s: {shipped.cold_seconds:.1f} s, "
        f"{verdict(shipped.cold_seconds < TARGET_COLD_SECONDS)}"
    )
    ratio = after_setup / shipped.cold_seconds
    print(
        f"first repro after setup within {TARGET_AFTER_SETUP_RATIO}x of a warm one: "
        f"{after_setup:.1f} s against {shipped.cold_seconds:.1f} s ({ratio:.2f}x), "
        f"{verdict(ratio <= TARGET_AFTER_SETUP_RATIO)}"
    )
    if len(results) > 1:
        print(
            "time and memory grow no faster than the rows: "
            + (f"missed by {'; '.join(faster)}" if faster else "met")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
