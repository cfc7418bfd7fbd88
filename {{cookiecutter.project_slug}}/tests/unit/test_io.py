import functools
import http.server
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.errors import DataSourceError
from {{ cookiecutter.package_name }}.io import (
    file_sha256,
    load_table,
    read_json,
    redact,
    scrub,
    source_kind,
    stage_outputs,
    write_json,
    write_table,
    write_text,
)

pytestmark = pytest.mark.unit

TABLE = pd.DataFrame({"age": [30, 41], "housing": ["own", "rent"], "risk": [1, 0]})


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("data/external/x.csv", "file"),
        ("file:///tmp/x.parquet", "file"),
        ("C:/data/x.csv", "file"),
        ("https://example.org/x.csv", "url"),
        ("sqlite:///data/x.db", "database"),
        ("postgresql+psycopg://user:pw@db/credit", "database"),
    ],
)
def test_source_kind(source: str, kind: str) -> None:
    assert source_kind(source) == kind


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_load_table_reads_files(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"table{suffix}"
    write_table(TABLE, path)
    pd.testing.assert_frame_equal(load_table(str(path)), TABLE)


def test_load_table_runs_sql_query(tmp_path: Path) -> None:
    database = tmp_path / "credit.db"
    with sqlite3.connect(database) as connection:
        TABLE.to_sql("applications", connection, index=False)
    loaded = load_table(f"sqlite:///{database}", "SELECT * FROM applications WHERE age > 35")
    assert loaded.to_dict("records") == [{"age": 41, "housing": "rent", "risk": 0}]


def test_load_table_reads_http_url(tmp_path: Path) -> None:
    write_table(TABLE, tmp_path / "table.csv")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/table.csv"
        pd.testing.assert_frame_equal(load_table(url), TABLE)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize(
    ("source", "query", "message"),
    [
        ("missing/nowhere.csv", None, "data source not found: missing/nowhere.csv"),
        ("sqlite:///x.db", None, "needs data.query"),
        ("postgresql://ana:s3cret@127.0.0.1:9/credit", "SELECT 1", "postgresql://ana:***@"),
    ],
)
def test_load_table_errors_name_the_source(source: str, query: str | None, message: str) -> None:
    with pytest.raises(DataSourceError) as caught:
        load_table(source, query)
    assert message in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_load_table_refuses_unknown_file_type(tmp_path: Path) -> None:
    path = tmp_path / "table.xlsx"
    path.write_text("not a table")
    with pytest.raises(DataSourceError, match=r"unknown file type '\.xlsx'"):
        load_table(str(path))


def test_empty_file_loads_as_empty_table(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    assert load_table(str(path)).empty


def test_a_failed_stage_leaves_every_previous_file(tmp_path: Path) -> None:
    first, second = tmp_path / "model.bin", tmp_path / "report.json"
    first.write_text("good model")
    second.write_text("good report")
    with pytest.raises(RuntimeError), stage_outputs() as outputs:
        outputs.text("new model", first)  # written in full ...
        outputs.path(second).write_text("half a rep")
        raise RuntimeError("crash while writing the second file")  # ... yet not put in place
    assert (first.read_text(), second.read_text()) == ("good model", "good report")
    assert sorted(tmp_path.iterdir()) == [first, second]  # no temporary file left


def test_a_successful_stage_replaces_all_its_files(tmp_path: Path) -> None:
    first, second = tmp_path / "a" / "table.csv", tmp_path / "b.json"
    with stage_outputs() as outputs:
        outputs.table(TABLE, first)
        outputs.json({"rows": len(TABLE)}, second)
        assert not first.exists() and not second.exists()  # nothing moves before the end
    assert load_table(str(first)).shape == TABLE.shape
    assert read_json(second) == {"rows": len(TABLE)}


@pytest.mark.skipif(os.name != "posix", reason="file modes and the umask are POSIX")
@pytest.mark.parametrize(
    ("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)], ids=["umask-022", "umask-077"]
)
def test_outputs_get_the_mode_open_gives(tmp_path: Path, umask: int, mode: int) -> None:
    """Reports and plots are readable by whoever the umask lets read a file made by open()."""
    previous = os.umask(umask)
    try:
        (tmp_path / "by_open.txt").write_text("the reference")
        write_json({"auc": 0.8}, tmp_path / "metrics.json")
        write_text("# Model card\n", tmp_path / "model_card.md")
        write_table(TABLE, tmp_path / "roc.csv")
        write_table(TABLE, tmp_path / "train.parquet")
        with stage_outputs() as outputs:  # as a library's own writer (Evidently's HTML) uses it
            outputs.path(tmp_path / "explore.html").write_text("<html></html>")
    finally:
        os.umask(previous)
    modes = {path.name: oct(stat.S_IMODE(path.stat().st_mode)) for path in tmp_path.iterdir()}
    assert modes == dict.fromkeys(modes, oct(mode))
    assert len(modes) == 6


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("data/external/x.csv", "data/external/x.csv"),
        ("sqlite:///data/x.db", "sqlite:///data/x.db"),
        ("postgresql://app:pw@db:5432/credit", "postgresql://app:***@db:5432/credit"),
        ("postgresql://app:${DB_PASSWORD}@db/credit", "postgresql://app:${DB_PASSWORD}@db/credit"),
        ("https://host/x.csv?token=abc&sig=def", "https://host/x.csv?token=***&sig=***"),
        ("https://host/x.csv?token=${TOKEN}", "https://host/x.csv?token=${TOKEN}"),
        ("https://user:pw@host/x.csv#key", "https://user:***@host/x.csv#***"),
    ],
)
def test_redact_hides_passwords_query_values_and_fragments(source: str, shown: str) -> None:
    assert redact(source) == shown


def test_placeholders_are_filled_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_table(TABLE, tmp_path / "table.csv")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    assert load_table("${DATA_DIR}/table.csv").shape == TABLE.shape
    monkeypatch.delenv("DATA_DIR")
    with pytest.raises(DataSourceError, match="environment variable DATA_DIR, which is not set"):
        load_table("${DATA_DIR}/table.csv")


def test_read_errors_never_show_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PASSWORD", "hunter2")
    source = "postgresql://app:${DB_PASSWORD}@127.0.0.1:9/credit?sslkey=k3y"
    assert scrub(f"failed: {source.replace('${DB_PASSWORD}', 'hunter2')}", source) == (
        "failed: postgresql://app:***@127.0.0.1:9/credit?sslkey=***"
    )
    with pytest.raises(DataSourceError) as caught:
        load_table("postgresql://app@127.0.0.1:9/credit?password=hunter2", "SELECT 1")
    assert "hunter2" not in str(caught.value)


def test_a_database_password_is_hidden_as_written_and_as_the_driver_gets_it() -> None:
    source = "postgresql://app:p%40ss@db/credit"  # SQLAlchemy decodes it: the driver gets p@ss
    assert redact(source) == "postgresql://app:***@db/credit"
    assert scrub("login failed for p@ss (p%40ss)", source) == "login failed for *** (***)"


def test_write_json_is_stable_and_hash_follows_content(tmp_path: Path) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    write_json({"b": 1, "a": 2}, first)
    write_json({"a": 2, "b": 1}, second)
    assert first.read_text() == second.read_text()
    assert file_sha256(first) == file_sha256(second)
    write_json({"a": 3}, second)
    assert file_sha256(first) != file_sha256(second)
