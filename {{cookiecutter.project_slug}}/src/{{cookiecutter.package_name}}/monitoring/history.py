"""reports/monitoring/index.html: one row per monitoring run, newest first, each linking to its
reports. Static HTML and CSS only (no script), so it works from a file, an artifact or Pages."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from {{ cookiecutter.package_name }}.io import write_text

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1d1d1f; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: .4rem .6rem; text-align: left; }
th { background: #f4f4f6; }
.passed { color: #137333; font-weight: 600; }
.failed { color: #b3261e; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
"""


def _runs(directory: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted((directory / "runs").glob("*/result.json"), reverse=True):
        result = json.loads(path.read_text())
        result["_dir"] = path.parent.relative_to(directory).as_posix()
        runs.append(result)
    return runs


def _performance(result: dict[str, Any]) -> str:
    current = (result.get("performance") or {}).get("current")
    if not current:
        return "-"
    shown = result["performance"].get("shown") or ["roc_auc", "precision"]  # older runs: binary
    return ", ".join(f"{name} {current[name]:.3f}" for name in shown if name in current)


def _row(result: dict[str, Any]) -> str:
    window = result["window"]
    status = "passed" if result["passed"] else "failed"
    failing = [check["name"] for check in result["checks"] if not check["passed"]]
    drift = next((c for c in result["checks"] if c["name"] == "drift_share"), None)
    links = [f'<a href="{result["_dir"]}/report.html">report</a>']
    if result.get("performance_report"):
        links.append(f'<a href="{result["_dir"]}/performance.html">performance</a>')
    rows = f"{window['rows']}" + (
        f" (sampled {window['compared']})" if window["compared"] < window["rows"] else ""
    )
    cells = [
        html.escape(result["time"]),
        html.escape(f"{window['source']}: {window['window']}"),
        f'<td class="num">{html.escape(rows)}</td>',
        f'<td class="num">{window["labelled"]}</td>',
        f'<td class="{status}">{status}'
        + (f" ({html.escape(', '.join(failing))})" if failing else "")
        + "</td>",
        html.escape(", ".join(result.get("drifted_columns") or []) or "none"),
        html.escape(drift["detail"].split(":")[0] if drift else "-"),
        html.escape(_performance(result)),
        " · ".join(links),
    ]
    return "<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells) + "</tr>"


def write_index(directory: Path) -> Path:
    runs = _runs(directory)
    header = [
        "date (UTC)",
        "window",
        "rows",
        "labelled",
        "gate",
        "drifted columns",
        "drift",
        "performance",
        "reports",
    ]
    body = "\n".join(_row(result) for result in runs) or (
        f'<tr><td colspan="{len(header)}">No monitoring run yet: make monitor</td></tr>'
    )
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Monitoring history</title>
<style>{STYLE}</style>
</head>
<body>
<h1>Monitoring history</h1>
<p>{len(runs)} run(s), newest first. Each report compares the run's window with the reference
(the test split, scored by the model).</p>
<table>
<thead><tr>{"".join(f"<th>{name}</th>" for name in header)}</tr></thead>
<tbody>
{body}
</tbody>
</table>
</body>
</html>
"""
    path = directory / "index.html"
    write_text(page, path)
    return path
