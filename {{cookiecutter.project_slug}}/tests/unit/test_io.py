import functools
import http.server
import sqlite3
import threading
from pathlib import Path

import pandas as pd
import pytest

from {{ cookiecutter.package_name }}.errors import DataSourceError
from {{ cookiecutter.package_name }}.io import (
    atomic_path,
    file_sha256,
    load_table,
    redact,
    source_kind,
    write_json,
    write_table,
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


def test_redact_hides_password_only() -> None:
    assert redact("postgresql://ana:s3cret@db:5432/credit") == "postgresql://ana:***@db:5432/credit"
    assert redact("sqlite:///data/x.db") == "sqlite:///data/x.db"


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


def test_atomic_path_keeps_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    target.write_text("good model")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half written")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "good model"
    assert list(tmp_path.iterdir()) == [target]


def test_write_json_is_stable_and_hash_follows_content(tmp_path: Path) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    write_json({"b": 1, "a": 2}, first)
    write_json({"a": 2, "b": 1}, second)
    assert first.read_text() == second.read_text()
    assert file_sha256(first) == file_sha256(second)
    write_json({"a": 3}, second)
    assert file_sha256(first) != file_sha256(second)
