"""Stage 1, ingest: snapshot the source table under data/raw with a manifest of what was read."""

from __future__ import annotations

from typing import Any

from {{ cookiecutter.package_name }}.config import Params, Paths
from {{ cookiecutter.package_name }}.io import (
    file_sha256,
    load_table,
    redact,
    source_kind,
    write_json,
    write_table,
)


def run(params: Params) -> dict[str, Any]:
    """Read `data.source` (and `data.query`) and write the raw copy and its manifest."""
    table = load_table(params.data.source, params.data.query)
    write_table(table, Paths.raw_data)
    manifest = {
        "source": redact(params.data.source),
        "kind": source_kind(params.data.source),
        "query": params.data.query,
        "rows": len(table),
        "columns": [str(column) for column in table.columns],
        "sha256": file_sha256(Paths.raw_data),
    }
    write_json(manifest, Paths.raw_manifest)
    return manifest
