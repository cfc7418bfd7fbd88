"""Stage 1, ingest: snapshot the source table under data/raw with a manifest of what was read."""

from __future__ import annotations

from typing import Any

from {{ cookiecutter.package_name }}.config import Params, Paths
from {{ cookiecutter.package_name }}.io import (
    file_sha256,
    load_table,
    redact,
    source_kind,
    stage_outputs,
)


def run(params: Params) -> dict[str, Any]:
    """Read `data.source` (and `data.query`) and write the raw copy and its manifest."""
    table = load_table(params.data.source, params.data.query)
    with stage_outputs() as outputs:
        raw = outputs.path(Paths.raw_data)
        table.to_csv(raw, index=False)
        manifest = {
            "source": redact(params.data.source),
            "kind": source_kind(params.data.source),
            "query": params.data.query,
            "rows": len(table),
            "columns": [str(column) for column in table.columns],
            "sha256": file_sha256(raw),
        }
        outputs.json(manifest, Paths.raw_manifest)
    return manifest
