"""Serving benchmark: request latency of the BentoML service in-process (its ASGI app), for one
record and for a full batch, next to the bare model's predict_proba on the same rows, with the
prediction log written to a directory and to SQLite. Shows what validation, the service and the
log add to a request. Prints a table; no thresholds.

    python benchmarks/serving.py demo/credit-risk-model      # after `make demo`, in its environment
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REQUESTS = {"one record": 200, "full batch": 30}
SINKS = ("directory", "sqlite")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(call: Any, count: int) -> tuple[float, float]:
    """Median and 95th percentile of `count` calls, in milliseconds (after two warm-up calls)."""
    for _ in range(2):
        call()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), percentile(times, 0.95)


def run_sink(project: Path, sink: str) -> None:
    """One sink in this process (BentoML's metrics allow one app per process)."""
    os.chdir(project)
    sys.path.insert(0, str(project / "src"))
    stages = yaml.safe_load(Path("dvc.yaml").read_text())["stages"]
    package = stages["ingest"]["cmd"].split()[2]
    importlib.import_module(f"{package}.serving.store").use_project_store(project)
    with tempfile.TemporaryDirectory() as scratch:
        target = (
            f"{scratch}/log" if sink == "directory" else f"sqlite:///{scratch}/log.db"
        )
        os.environ["PREDICTION_LOG"] = target
        service = importlib.import_module(f"{package}.serving.service")
        from starlette.testclient import TestClient

        schema, max_records = service.SCHEMA, service.SETTINGS.max_records
        test_rows = schema.read_csv("data/processed/test.csv")[schema.feature_names]
        batches = {
            "one record": test_rows.head(1),
            "full batch": test_rows.head(max_records),
        }
        bundle = service.BUNDLE  # what the service decides with: the registered bundle
        with TestClient(service.ModelService.to_asgi()) as client:
            for name, rows in batches.items():
                body = json.dumps(
                    {"records": json.loads(rows.to_json(orient="records"))}
                )

                def request(body: str = body) -> None:
                    response = client.post(
                        "/predict",
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
                    response.raise_for_status()

                p50, p95 = measure(request, REQUESTS[name])
                bare, _ = measure(
                    lambda rows=rows: bundle.probabilities(rows), REQUESTS[name]
                )
                print(
                    f"{name:<12} {sink:<10} {len(rows):>5} {p50:>8.1f} {p95:>8.1f} {bare:>13.1f}"
                )
        logged = importlib.import_module(f"{package}.serving.prediction_log").open_sink(
            target
        )
        expected = sum(
            (REQUESTS[name] + 2) * len(rows) for name, rows in batches.items()
        )
        print(
            f"{'':<12} {sink:<10} logged {len(logged.read_predictions())} of {expected} predictions"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "project", type=Path, help="a baked project after `make pipeline`"
    )
    parser.add_argument(
        "--sink", choices=SINKS, help="one sink only (default: each, in turn)"
    )
    args = parser.parse_args()
    project = args.project.resolve()
    if args.sink:
        run_sink(project, args.sink)
        return 0
    print(
        f"{'request':<12} {'sink':<10} {'rows':>5} {'p50 ms':>8} {'p95 ms':>8} {'model p50 ms':>13}"
    )
    sys.stdout.flush()
    for sink in SINKS:
        subprocess.run(
            [sys.executable, __file__, str(project), "--sink", sink], check=True
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
