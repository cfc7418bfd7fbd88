"""Monitoring benchmark: wall time and peak memory of one `monitor` run of a baked project on a
current window of 10k, 100k and 1M rows (the reference upsampled with a little noise, read from
a Parquet file through the ingest loader, scored by the model, sampled to `monitor.max_rows`
above it). Each size runs in a fresh interpreter. Prints a table; no thresholds (figures and
targets: benchmarks/RESULTS.md).

    python benchmarks/monitoring.py demo/credit-risk-model      # after `make demo`
    python benchmarks/monitoring.py demo/credit-risk-model --sizes 10000 200000  # quick
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from fresh_run import run_command

SIZES = (10_000, 100_000, 1_000_000)


def window(project: Path, rows: int, seed: int = 0) -> pd.DataFrame:
    """`rows` rows drawn from the reference, numbers nudged by up to 2%."""
    reference = pd.read_csv(project / "data/reference/reference.csv")
    schema = yaml.safe_load((project / "schema.yaml").read_text())
    rng = np.random.default_rng(seed)
    table = reference.sample(n=rows, replace=True, random_state=seed).reset_index(
        drop=True
    )
    for name, spec in schema["columns"].items():
        if spec["type"] != "category":
            noisy = table[name] * rng.uniform(0.98, 1.02, size=rows)
            table[name] = noisy.round() if spec["type"] == "integer" else noisy
    # the features and the true label; the model's outputs are left out, for monitor to score
    kept = [*schema["columns"], schema["target"]["name"]]
    return table[kept]


def scratch_project(project: Path, scratch: Path, source: Path) -> None:
    """A working directory that reads the project's model, reference and log key (`make bench`
    makes it: schema.yaml pseudonymises a column), with `monitor.current` pointing at `source`
    and its own reports and workspace."""
    for name in ("models", "data", "schema.yaml", "secrets"):
        (scratch / name).symlink_to(project / name)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["monitor"]["current"] = str(source)
    params["monitor"]["workspace"] = str(scratch / "workspace")
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("project", type=Path)
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=list(SIZES),
        help="window rows, each a run",
    )
    args = parser.parse_args()
    project = args.project.resolve()
    package = project.name.replace("-", "_")
    params = yaml.safe_load((project / "params.yaml").read_text())
    print(
        f"monitoring: one run, max_rows {params['monitor']['max_rows']} (larger windows sampled)"
    )
    print(f"{'rows':>9} {'seconds':>9} {'peak MiB':>9}")
    for rows in args.sizes:
        with tempfile.TemporaryDirectory() as directory:
            scratch = Path(directory)
            source = scratch / "current.parquet"
            window(project, rows).to_parquet(source, index=False)
            scratch_project(project, scratch, source)
            # a failed gate (exit 1) is a result, not an error; a refusal writes no summary
            seconds, peak = run_command(
                project, package, ["monitor"], scratch, ok=(0, 1)
            )
            if not (scratch / "reports" / "monitoring" / "summary.md").is_file():
                raise SystemExit(
                    f"monitor on {rows} rows wrote no summary: it was refused"
                )
            print(
                f"{rows:>9} {seconds:>9.1f} {peak:>9.0f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
