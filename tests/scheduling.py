"""How the suite shares two cores (pytest-xdist, `-n 2` in pytest.ini).

The live canaries (Envoy, Prometheus and three services under steady traffic) judge latency in
wall-clock time: two of them at once, or one beside another CPU-bound run at equal priority,
and the healthy canary's latency check fails for want of CPU, not for a fault. So the work is
split in two lanes:

- the foreground lane, the runs of the generated suite that hold a live canary (the release
  job's and each other task's), goes to the first worker only, one after the other, at normal
  priority;
- the background lane, everything else, goes to any worker: the other workers run niced
  (`BACKGROUND_NICENESS`), so that they take what the canaries leave of the CPU.

Tests are grouped as their expensive fixtures are shared (a module, or a module's parameter
where a module-scoped fixture is parametrized), each group one work unit, and units go out
longest first (`GROUP_SECONDS`, as measured on a 2-core machine; unlisted groups are short).
The workers, which collect, write each test's group to a file the controller's scheduler
reads (xdist's own loadgroup marks node ids in a way pytest 9 no longer keeps).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

FOREGROUND = "foreground"
BACKGROUND = "background"
BACKGROUND_NICENESS = 10
FIRST_WORKER = "gw0"
GROUPS_DIRECTORY = "TEMPLATE_TEST_GROUPS"  # where the workers write each test's group

# Groups whose runs hold a live canary: (module, fixture whose presence marks the group).
CANARY_GROUPS = ("test_workflows.py::release", "test_tasks.py::shipped")

# Seconds each group took on a 2-core machine (a clean run's --durations): the order work
# units go out in, longest first, so that the lanes end together.
GROUP_SECONDS = {
    "test_workflows.py::release": 600,
    "test_tasks.py::shipped/multiclass": 590,
    "test_tasks.py::shipped/regression": 410,
    "test_workflows.py": 360,
    "test_commands.py": 290,
    "test_postgres.py": 190,
    "test_second_dataset.py": 180,
    "test_pythons.py/3.12": 160,
    "test_pythons.py/3.13": 160,
    "test_e2e.py": 150,
    "test_build.py": 130,
    "test_monitoring.py": 90,
    "test_challenge.py": 75,
    "test_deploy_workflow.py": 75,
    "test_tasks.py::own_table/multiclass": 70,
    "test_tasks.py::own_table/regression": 60,
    "test_project_commands.py": 45,
    "test_manifests.py": 40,
}

# Fixtures that split a module into groups: module-scoped, so each group keeps its own.
SPLITTING_FIXTURES = {
    "test_workflows.py": ("release",),
    "test_tasks.py": ("shipped", "own_table"),
}
# Modules whose parametrized tests are independent groups, by the parameter.
SPLITTING_PARAMETERS = {"test_pythons.py": "version"}


def group_of(item: pytest.Item) -> str:
    """The work unit `item` belongs to: its module, or module::fixture/param where a
    module-scoped fixture splits the module."""
    module = item.path.name
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec else {}
    for fixture in SPLITTING_FIXTURES.get(module, ()):
        if fixture in item.fixturenames:
            param = f"/{params[fixture]}" if fixture in params else ""
            return f"{module}::{fixture}{param}"
    parameter = SPLITTING_PARAMETERS.get(module)
    if parameter in params:
        return f"{module}/{params[parameter]}"
    return module


def in_background_lane(worker: str | None) -> bool:
    """Whether xdist worker `worker` (None: no xdist) runs only the background lane."""
    return worker not in (None, FIRST_WORKER)


def lane_of(group: str) -> str:
    return FOREGROUND if group.split("/")[0] in CANARY_GROUPS else BACKGROUND


def share_groups(config: pytest.Config) -> None:
    """In the controller of a distributed run: a directory for the workers' groups, named in
    the environment the workers inherit."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker or not config.getoption("numprocesses", None):
        return
    directory = tempfile.mkdtemp(prefix="test-groups-")
    os.environ[GROUPS_DIRECTORY] = directory
    config.add_cleanup(lambda: shutil.rmtree(directory, ignore_errors=True))


def order(items: list[pytest.Item]) -> None:
    """The foreground lane first, each lane longest group first, the order pytest gave kept
    within a group (run after pytest's own reordering by fixture parameters); in a worker,
    each test's group written for the controller."""
    groups = {item.nodeid: group_of(item) for item in items}
    position: dict[str, int] = {}
    for index, item in enumerate(items):
        position.setdefault(groups[item.nodeid], index)

    def key(item: pytest.Item) -> tuple[bool, int, int]:
        group = groups[item.nodeid]
        seconds = GROUP_SECONDS.get(group, 0)
        return lane_of(group) != FOREGROUND, -seconds, position[group]

    items.sort(key=key)
    directory = os.environ.get(GROUPS_DIRECTORY)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if directory and worker:
        written = Path(directory) / f"{worker}.json.partial"
        written.write_text(json.dumps(groups))
        written.rename(written.with_suffix(""))  # whole or absent


def make_scheduler(config: pytest.Config, log: Any) -> Any:
    """The controller's scheduler: a work unit per group, the foreground lane held for the
    first worker."""
    from xdist.scheduler import LoadScopeScheduling

    class LaneScheduling(LoadScopeScheduling):
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # written before the workers reported a collection
                written = sorted(Path(os.environ[GROUPS_DIRECTORY]).glob("*.json"))
                self.groups = json.loads(written[0].read_text())
            return self.groups.get(nodeid, nodeid)

        def _may_take(self, node: Any, scope: str) -> bool:
            return lane_of(scope) == BACKGROUND or node.gateway.id == FIRST_WORKER

        def _assign_work_unit(self, node: Any) -> None:
            scope = next((s for s in self.workqueue if self._may_take(node, s)), None)
            if scope is None:
                return
            work_unit = self.workqueue.pop(scope)
            self.assigned_work.setdefault(node, {})[scope] = work_unit
            collection = self.registered_collections[node]
            pending = [nodeid for nodeid, done in work_unit.items() if not done]
            node.send_runtest_some([collection.index(nodeid) for nodeid in pending])

        def _reschedule(self, node: Any) -> None:
            self.assigned_work.setdefault(node, {})
            super()._reschedule(node)
            # A worker with nothing left to run and nothing it may take is done: without
            # this, one waiting for the first worker's lane would wait for ever.
            for other in self.nodes:
                idle = self._pending_of(self.assigned_work.setdefault(other, {})) == 0
                if (
                    idle
                    and not other.shutting_down
                    and not any(self._may_take(other, s) for s in self.workqueue)
                ):
                    other.shutdown()

    return LaneScheduling(config, log)
