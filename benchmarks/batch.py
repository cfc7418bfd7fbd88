"""Batch scoring benchmark: `predict` (make predict) of a baked project on a Parquet file of 1x,
100x and 10,000x the shipped rows (the test split repeated), from Parquet to Parquet, each in a
fresh interpreter: wall time, rows per second and peak resident memory. Beside each, the floor:
the registered model scoring the same number of rows in this process, in memory, a chunk
(`batch.chunk_rows`) at a time, with no reading, checking or writing. The prediction log is off
(`batch.log_predictions: false`) unless `--log`: logging every row writes its features as JSON
lines. Prints a table; no thresholds (figures and targets: benchmarks/RESULTS.md).

    python benchmarks/batch.py demo/credit-risk-model                  # after `make demo`
    python benchmarks/batch.py demo/credit-risk-model --scales 1 100 --log
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from fresh_run import run_command

SHIPPED_ROWS_KEY = "rows"  # reports/registry.json's data.rows: the shipped table's size


def write_source(test_split: pd.DataFrame, rows: int, path: Path) -> None:
    """`rows` rows of the test split repeated, written a million rows at a time."""
    block = pd.concat(
        [test_split] * max(1, min(rows, 1_000_000) // len(test_split) + 1),
        ignore_index=True,
    )
    with pq.ParquetWriter(path, pa.Table.from_pandas(block.head(1)).schema) as writer:
        left = rows
        while left:
            part = block.head(min(left, len(block)))
            writer.write_table(pa.Table.from_pandas(part, preserve_index=False))
            left -= len(part)


def scratch_project(project: Path, scratch: Path, log: bool) -> None:
    """A working directory that reads the project's registered model, with its own params."""
    for name in ("models", "data", "reports", ".bentoml", "schema.yaml"):
        (scratch / name).symlink_to(project / name)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["batch"]["log_predictions"] = log
    params["serving"]["prediction_log"] = str(scratch / "log")
    params["serving"]["prediction_spool"] = str(scratch / "spool")
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def floor(project: Path, package: str, test_split: pd.DataFrame, rows: int) -> float:
    """Seconds the registered model takes to score and decide `rows` rows in memory."""
    os.environ.setdefault("BENTOML_HOME", str(project / ".bentoml"))
    sys.path.insert(0, str(project / "src"))
    os.chdir(project)
    bundle = importlib.import_module(f"{package}.bundle")
    store = importlib.import_module(f"{package}.serving.store")
    params = yaml.safe_load((project / "params.yaml").read_text())
    chunk_rows = params["batch"]["chunk_rows"]
    _, directory = store.registered_files()
    model = bundle.load_bundle(directory / store.BUNDLE_FILE)
    chunk = pd.concat(
        [test_split] * (min(rows, chunk_rows) // len(test_split) + 1), ignore_index=True
    ).head(min(rows, chunk_rows))
    model.decide(model.outputs(chunk))  # warm up
    started = time.perf_counter()
    left = rows
    while left:
        part = chunk if left >= len(chunk) else chunk.head(left)
        model.decide(model.outputs(part))
        left -= len(part)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("project", type=Path)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 100, 10_000])
    parser.add_argument("--log", action="store_true", help="with the prediction log on")
    args = parser.parse_args()
    project = args.project.resolve()
    package = project.name.replace("-", "_")
    registry = yaml.safe_load((project / "reports" / "registry.json").read_text())
    shipped = int(registry["data"][SHIPPED_ROWS_KEY])
    schema = yaml.safe_load((project / "schema.yaml").read_text())
    test_split = pd.read_csv(project / "data" / "processed" / "test.csv")[
        list(schema["columns"])
    ]
    print(
        f"batch scoring, Parquet to Parquet, prediction log {'on' if args.log else 'off'};"
        f" {os.cpu_count()} cores"
    )
    print(
        f"{'scale':>7} {'rows':>11} {'seconds':>8} {'rows/s':>10} {'peak MiB':>9}"
        f" {'floor s':>8} {'floor rows/s':>13}"
    )
    for scale in args.scales:
        rows = shipped * scale
        with tempfile.TemporaryDirectory(prefix="batch-bench-") as directory:
            scratch = Path(directory)
            source, output = scratch / "input.parquet", scratch / "scored.parquet"
            write_source(test_split, rows, source)
            scratch_project(project, scratch, args.log)
            command = ["predict", "--input", str(source), "--output", str(output)]
            seconds, peak = run_command(project, package, command, scratch)
            scored = pq.ParquetFile(output).metadata.num_rows
            if scored != rows:
                raise SystemExit(f"{scored} of {rows} rows scored")
        floor_seconds = floor(project, package, test_split, rows)
        print(
            f"{scale:>6}x {rows:>11,} {seconds:>8.1f} {rows / seconds:>10,.0f}"
            f" {peak:>9.0f} {floor_seconds:>8.1f}"
            f" {rows / floor_seconds:>13,.0f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
