"""Lineage that holds: every file a stage reads, its own code and the package modules it imports
included, is a dependency of that stage in dvc.yaml, and nothing else is. Checked against a real
run of every stage in a scratch workspace: each stage runs as `python -m <package> <stage>` in a
fresh process (forked after the heavy third-party imports), which records the files it opens for
reading (SQLite databases included) and the package modules it imports."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import {{ cookiecutter.package_name }}

pytestmark = pytest.mark.unit

PACKAGE = "{{ cookiecutter.package_name }}"
PACKAGE_DIR = Path({{ cookiecutter.package_name }}.__file__).parent
NOT_DEPS = ("__init__.py", "__main__.py")  # entry points without logic (checked below)

PROBE = r"""
import json, os, runpy, sys
import numpy, pandas, sklearn.ensemble, sklearn.linear_model, sklearn.model_selection  # once

package, root = sys.argv[1], os.getcwd()
writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND
results = {}
for stage in sys.argv[2:]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        before, opened = set(sys.modules), set()

        def record(event, args):
            if event == "sqlite3.connect" and isinstance(args[0], (str, os.PathLike)):
                args = (args[0], "r")  # a SQLite source: the database file is read
            elif event != "open" or not isinstance(args[0], (str, bytes, os.PathLike)):
                return
            mode, flags = args[1], args[2] if len(args) > 2 else 0
            reads = (mode is None and not flags & writing) or (
                mode is not None and not set(str(mode)) & set("wax+")
            )
            path = os.path.abspath(os.fsdecode(args[0]))
            if reads and path.startswith(root + os.sep):
                opened.add(os.path.relpath(path, root))

        sys.addaudithook(record)
        sys.argv = [package, stage.replace("_", "-")]
        try:
            runpy.run_module(package, run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit:
            code = exit.code
        modules = sorted(
            getattr(sys.modules[name], "__file__", "") or ""
            for name in set(sys.modules) - before
            if name == package or name.startswith(package + ".")
        )
        report = {"code": code, "opened": sorted(opened), "modules": modules}
        os.write(write_end, json.dumps(report).encode())
        os._exit(0)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 1 << 16):
        chunks.append(chunk)
    os.waitpid(pid, 0)
    results[stage] = json.loads(b"".join(chunks))
print(json.dumps(results))
"""


def ignored(path: str) -> bool:
    """Read by every stage through `params:` (params.yaml), or not an input: the model store,
    git, and a stage's own temporary files."""
    parts = Path(path).parts
    return path == "params.yaml" or any(part.startswith(".") for part in parts)


def code_file(module_file: str) -> str | None:
    path = Path(module_file)
    if path.name in NOT_DEPS:
        return None
    return str(Path("src", PACKAGE, path.relative_to(PACKAGE_DIR)))


@pytest.fixture(scope="module")
def stages(project_root: Path) -> dict[str, dict]:
    return yaml.safe_load((project_root / "dvc.yaml").read_text())["stages"]


@pytest.fixture
def stage_reads(workspace: Path, stages: dict[str, dict]) -> dict[str, set[str]]:
    """Every stage run in order in the workspace: stage -> files read and code imported."""
    env = {
        **os.environ,
        "BENTOML_HOME": str(workspace / ".bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "GIT_CEILING_DIRECTORIES": str(workspace.parent),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, PACKAGE, *stages],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.splitlines()[-1])
    reads = {}
    for stage, result in results.items():
        assert result["code"] == 0, f"stage {stage} failed in the workspace: {done.stderr[-3000:]}"
        files = {path for path in result["opened"] if not ignored(path)}
        files |= {code for code in map(code_file, result["modules"]) if code}
        reads[stage] = files
    return reads


def covers(dep: str, path: str) -> bool:
    return path == dep or path.startswith(dep.rstrip("/") + "/")


def test_every_stage_depends_on_exactly_what_it_reads(
    stages: dict[str, dict], stage_reads: dict[str, set[str]]
) -> None:
    problems = []
    for stage, files in stage_reads.items():
        declared = [
            next(iter(dep)) if isinstance(dep, dict) else dep for dep in stages[stage]["deps"]
        ]
        missing = sorted(path for path in files if not any(covers(dep, path) for dep in declared))
        unused = sorted(dep for dep in declared if not any(covers(dep, path) for path in files))
        problems += [f"{stage}: reads {path} but dvc.yaml does not list it" for path in missing]
        problems += [f"{stage}: lists {dep} in dvc.yaml but never reads it" for dep in unused]
    assert not problems, "\n".join(problems)


def test_entry_points_left_out_of_deps_hold_no_logic() -> None:
    for path in PACKAGE_DIR.rglob("*.py"):
        if path.name not in NOT_DEPS:
            continue
        tree = ast.parse(path.read_text())
        logic = [
            node
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ]
        assert not logic, f"{path} defines {[node.name for node in logic]}: make it a dep"
