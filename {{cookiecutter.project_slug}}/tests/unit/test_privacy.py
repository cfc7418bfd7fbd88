"""What the prediction log keeps of each column (schema.yaml's `log:`): the policy's three
actions, the key file and its rotation, raw values of a pseudonymised column in no log or spool
file, schema files that say something else refused naming the column, and `make schema`'s
proposal."""

from __future__ import annotations

import dataclasses
import inspect
import stat
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.privacy import (
    KEY_ENV_VAR,
    LogPolicy,
    propose_log,
    read_keys,
    rotate_key,
)
from {{ cookiecutter.package_name }}.schema import ColumnSpec, LogAction, Schema, load_schema
from {{ cookiecutter.package_name }}.serving.prediction_log import (
    DirectorySink,
    Spool,
    decided_records,
)
from tests.conftest import valid_record

pytestmark = pytest.mark.unit


def _with_actions(schema: Schema, actions: dict[str, LogAction]) -> Schema:
    columns = tuple(
        dataclasses.replace(column, log=actions.get(column.name, column.log))
        for column in schema.columns
    )
    return dataclasses.replace(schema, columns=columns)


def _pseudonymised(schema: Schema) -> ColumnSpec:
    """The shipped schema's pseudonymised column (every task ships one: a sensitive attribute
    that is not a model input)."""
    return next(column for column in schema.columns if column.log == "pseudonymise")


def test_keep_pseudonymise_and_drop(schema: Schema, log_key: Path) -> None:
    secret = _pseudonymised(schema)
    kept, dropped = [c for c in schema.columns if c.log == "keep"][:2]
    policy = LogPolicy.load(_with_actions(schema, {dropped.name: "drop"}))
    row = {**valid_record(schema), secret.name: secret.categories[-1]}
    logged = policy.apply(row)
    assert dropped.name not in logged
    assert logged[kept.name] == row[kept.name]
    key_id, digest = logged[secret.name].split(":")
    assert key_id == read_keys(log_key).current and len(digest) == 32  # 128 bits
    assert logged[secret.name] == policy.apply(row)[secret.name]  # a category stays a category
    other = policy.apply({**row, secret.name: secret.categories[0]})[secret.name]
    assert other != logged[secret.name]
    assert policy.apply({**row, secret.name: None})[secret.name] is None  # missing stays missing
    assert row[secret.name] == secret.categories[-1]  # the request row itself is untouched


def test_the_policy_costs_microseconds_per_record(schema: Schema) -> None:
    policy = LogPolicy.load(schema)
    rows = [valid_record(schema) for _ in range(5_000)]
    start = time.perf_counter()
    for row in rows:
        policy.apply(row)
    assert (time.perf_counter() - start) / len(rows) < 100e-6


def test_a_rotated_key_signs_new_values_and_old_ones_stay_readable(
    schema: Schema, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "secrets" / "log-key"
    monkeypatch.setenv(KEY_ENV_VAR, str(path))
    assert main(["log-key"]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    secret = _pseudonymised(schema)
    value = secret.categories[0]
    before = LogPolicy.load(schema).apply({secret.name: value})[secret.name]

    assert main(["log-key"]) == 0
    keys = read_keys(path)
    old_id = before.split(":")[0]
    assert list(keys.keys) == [keys.current, old_id]  # the new key first, the old one kept
    after = LogPolicy.load(schema)
    assert after.apply({secret.name: value})[secret.name].startswith(keys.current + ":")
    assert after.pseudonym(secret.name, value, key=old_id) == before  # found by its key id
    frame = pd.DataFrame({secret.name: [before, value, None]})
    current = after.pseudonym(secret.name, value)
    assert after.as_logged(frame)[secret.name].tolist()[:2] == [current, current]

    other = tmp_path / "another-key"
    rotate_key(other)  # not the key the records were signed with
    monkeypatch.setenv(KEY_ENV_VAR, str(other))
    with pytest.raises(ConfigError, match=f"under key\\(s\\) {old_id}, which the key file"):
        LogPolicy.load(schema).as_logged(frame)
    assert main(["log-key", "--if-missing"]) == 0
    assert len(read_keys(other).keys) == 1  # there was one: --if-missing made none


def test_a_pseudonymised_column_without_a_key_names_the_file_and_the_command(
    schema: Schema, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere" / "log-key"
    monkeypatch.setenv(KEY_ENV_VAR, str(missing))
    with pytest.raises(ConfigError, match="log-key") as refused:
        LogPolicy.load(schema)
    assert str(missing) in str(refused.value)
    kept = _with_actions(schema, {c.name: "keep" for c in schema.columns if c.log != "keep"})
    assert LogPolicy.load(kept).apply({"a": 1}) == {"a": 1}  # nothing to sign: no key needed


def test_raw_values_of_a_pseudonymised_column_reach_no_log_or_spool_file(
    schema: Schema, tmp_path: Path
) -> None:
    """Records as the service writes them. `decided_records(..., redact=policy.apply)` is the
    log's own hook where it has one; the policy applied to the rows first is the same."""
    policy = LogPolicy.load(schema)
    secret = _pseudonymised(schema)
    rows = [{**valid_record(schema), secret.name: value} for value in secret.categories]
    columns = [{"probability": 0.5} for _ in rows]
    if "redact" in inspect.signature(decided_records).parameters:
        record_with_hook: Any = decided_records
        records = record_with_hook(
            rows, ["x"] * len(rows), columns, "m:1", [False] * len(rows), redact=policy.apply
        )
    else:
        logged = [policy.apply(row) for row in rows]
        records = decided_records(logged, ["x"] * len(rows), columns, "m:1", [False] * len(rows))
    DirectorySink(tmp_path / "log").write("predictions", records)
    spool = Spool(tmp_path / "spool")
    spool.append("predictions", records)
    spool.close()
    assert policy.keys is not None
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert len(files) == 2
    for path in files:
        text = path.read_text()
        assert f'"{secret.name}": "{policy.keys.current}:' in text  # the pseudonyms are there
        for value in secret.categories:
            assert f'"{value}"' not in text, f"{value} of {secret.name} in {path}"


def test_a_log_action_other_than_the_three_is_refused_naming_the_column(
    tmp_path: Path, project_root: Path
) -> None:
    text = (project_root / "schema.yaml").read_text()
    name = _pseudonymised(load_schema(project_root / "schema.yaml")).name
    path = tmp_path / "schema.yaml"
    path.write_text(text.replace("log: pseudonymise", "log: hash", 1))
    with pytest.raises(ConfigError, match=rf"columns\.{name}\.log: .*'hash'.*keep, pseudonymise"):
        load_schema(path)
    number = next(
        c for c in load_schema(project_root / "schema.yaml").columns if c.type != "category"
    )
    edited = yaml.safe_load(text)  # a drafted schema already says `log:` for every column
    edited["columns"][number.name]["log"] = "pseudonymise"
    path.write_text(yaml.safe_dump(edited, sort_keys=False))
    with pytest.raises(ConfigError, match=rf"columns\.{number.name}: .*keep or drop it"):
        load_schema(path)


def test_make_schema_proposes_what_the_log_keeps_and_why() -> None:
    table = pd.DataFrame(
        {
            "application_id": range(100),
            "gender": ["f", "m"] * 50,
            "birth_year": [1950 + i % 40 for i in range(100)],
            "age": [20 + i % 50 for i in range(100)],
            "income": [1000.0 + i % 7 for i in range(100)],
            "balance": [10.0 * i + 0.5 for i in range(100)],  # every value differs: an input
            "y": [0, 1] * 50,
        }
    )
    columns = tuple(
        ColumnSpec(name, "category", categories=("f", "m"))
        if name == "gender"
        else ColumnSpec(name, "integer")
        for name in table.columns.drop("y")
    )
    drafted, reasons = propose_log(
        Schema("y", (0, 1), columns),
        table,
        ["gender", "birth_year", "age"],
        ["application_id", "gender", "birth_year"],
    )
    actions = {column.name: column.log for column in drafted.columns}
    assert actions == {
        "application_id": "drop",  # every value differs, not a model input: an identifier
        "balance": "keep",  # every value differs, but a model input: the log keeps it
        "gender": "pseudonymise",  # sensitive, not a model input, a category
        "birth_year": "drop",  # sensitive, not a model input, a number
        "age": "keep",  # sensitive but a model input
        "income": "keep",
    }
    assert "identifier" in reasons["application_id"] and "model input" in reasons["age"]
    written = drafted.to_yaml(reasons)
    assert "    log: pseudonymise  # sensitive, not a model input" in written
