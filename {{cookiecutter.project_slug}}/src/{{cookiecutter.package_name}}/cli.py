"""The entry point dvc.yaml and the Makefile call:
`python -m {{ cookiecutter.package_name }} <command>`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from {{ cookiecutter.package_name }}.config import load_params
from {{ cookiecutter.package_name }}.errors import PipelineError

STAGES = (
    "ingest",
    "curate",
    "validate",
    "split",
    "train",
    "evaluate",
    "fairness",
    "model_card",
    "register",
)


def generate_schema() -> str:
    """Draft schema.yaml from the configured source, for a person to review before committing."""
    from pathlib import Path

    from {{ cookiecutter.package_name }}.io import load_table, write_text
    from {{ cookiecutter.package_name }}.pipeline.curate import curate
    from {{ cookiecutter.package_name }}.schema import infer_schema

    params = load_params()
    target = Path(params.data.schema_file)
    table, _ = curate(
        load_table(params.data.source, params.data.query),
        params.curate.missing_tokens,
        params.data.drop_columns,
    )
    schema = infer_schema(table, params.data.target)
    header = (
        f"# Data contract for {params.data.source},"
        f" drafted by `make schema` from {len(table)} rows.\n"
        "# Review it: widen ranges and add categories the data did not show but may, then commit.\n"
    )
    write_text(header + schema.to_yaml(), target)
    columns = len(schema.columns)
    return f"wrote {target}: {columns} feature columns, target '{schema.target}'. Review it."


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="{{ cookiecutter.package_name }}", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for stage in STAGES:
        commands.add_parser(stage.replace("_", "-"), help=f"run the {stage} stage")
    commands.add_parser("schema", help="draft schema.yaml from the data source (review it after)")
    args = parser.parse_args(argv)

    try:
        if args.command == "schema":
            print(generate_schema())
            return 0
        stage = args.command.replace("-", "_")
        module = importlib.import_module(f"{{ cookiecutter.package_name }}.pipeline.{stage}")
        module.run(load_params())
    except PipelineError as error:
        print(f"{args.command} failed: {error}", file=sys.stderr)
        return 1
    return 0
