"""The one loader for tabular sources (file, URL, SQL) and atomic writers: ingest and monitoring
both read through `load_table`, and no stage ever leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from {{ cookiecutter.package_name }}.errors import DataSourceError

FILE_READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet}


def source_kind(source: str) -> str:
    """'file', 'url' or 'database', from the source's scheme."""
    scheme = urlsplit(source).scheme.lower()
    if scheme in ("", "file") or len(scheme) == 1:  # a one-letter scheme is a Windows drive
        return "file"
    if scheme in ("http", "https"):
        return "url"
    return "database"


def redact(source: str) -> str:
    """The source without its password, safe to write into manifests and logs."""
    parts = urlsplit(source)
    if parts.password is None:
        return source
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _reader_for(path: str) -> Any:
    suffix = Path(urlsplit(path).path).suffix.lower()
    try:
        return FILE_READERS[suffix]
    except KeyError:
        known = ", ".join(sorted(FILE_READERS))
        raise DataSourceError(
            f"cannot read '{path}': unknown file type '{suffix}' ({known})"
        ) from None


def load_table(source: str, query: str | None = None) -> pd.DataFrame:
    """Load a table from a CSV/Parquet path, an http(s) URL, or a SQL query on a database URL."""
    kind = source_kind(source)
    shown = redact(source)
    try:
        if kind == "file":
            path = Path(urlsplit(source).path) if source.startswith("file:") else Path(source)
            if not path.is_file():
                raise DataSourceError(f"data source not found: {path}")
            table = _reader_for(str(path))(path)
        elif kind == "url":
            table = _reader_for(source)(source)
        else:
            table = _read_sql(source, query)
    except DataSourceError:
        raise
    except pd.errors.EmptyDataError:
        return pd.DataFrame()  # an empty file is data too: validation says what is wrong with it
    except Exception as error:  # any reader failure becomes one clear message
        raise DataSourceError(f"cannot read {shown}: {error}") from error
    return table


def _read_sql(url: str, query: str | None) -> pd.DataFrame:
    import sqlalchemy  # imported here: only database sources need it

    if not query:
        raise DataSourceError(f"a database source needs data.query (source: {redact(url)})")
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            return pd.read_sql_query(sqlalchemy.text(query), connection)
    finally:
        engine.dispose()


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def write_table(table: pd.DataFrame, path: Path | str) -> None:
    """Write CSV or Parquet (by suffix) atomically."""
    path = Path(path)
    with atomic_path(path) as temporary:
        if path.suffix.lower() in (".parquet", ".pq"):
            table.to_parquet(temporary, index=False)
        else:
            table.to_csv(temporary, index=False)


def write_json(data: Any, path: Path | str) -> None:
    """Write JSON atomically, keys sorted so that reruns give identical files."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_text(text: str, path: Path | str) -> None:
    """Write text atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def read_json(path: Path | str) -> Any:
    """Read a JSON file another stage wrote."""
    return json.loads(Path(path).read_text())


def file_sha256(path: Path | str) -> str:
    """Content hash of a file, the data version recorded in manifests and model lineage."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
