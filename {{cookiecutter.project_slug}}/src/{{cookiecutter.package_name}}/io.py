"""The one loader for tabular sources (file, URL, SQL) and the one writer of stage outputs: ingest
and monitoring both read through `load_table`, and every output file goes through `stage_outputs`.

What a stage's outputs guarantee: each file is written in full beside its target and then renamed
over it, so no file is ever half-written; a failed stage renames none of its files; a stage that
succeeds renames them one by one, so a crash during those renames can leave some of its files new
and others old (rerunning the stage mends that). Files get the mode `open()` would give them.

Credentials never live in params.yaml: a source may name environment variables as `${NAME}`
(`postgresql://app:${DB_PASSWORD}@db/credit`, `https://host/x.csv?token=${DATA_TOKEN}`), which
are filled in only when the table is read. Whatever a source holds, `redact` is what any output
(manifest, reports, model metadata, messages) shows of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import pandas as pd

from {{ cookiecutter.package_name }}.errors import DataSourceError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

FILE_READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet}


def source_kind(source: str) -> str:
    """'file', 'url' or 'database', from the source's scheme."""
    scheme = urlsplit(source).scheme.lower()
    if scheme in ("", "file") or len(scheme) == 1:  # a one-letter scheme is a Windows drive
        return "file"
    if scheme in ("http", "https"):
        return "url"
    return "database"


HIDDEN = "***"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def resolve(source: str, key: str = "data.source") -> str:
    """`source` with each `${NAME}` replaced by that environment variable's value."""

    def value(match: re.Match[str]) -> str:
        name = match[1]
        if name not in os.environ:
            raise DataSourceError(
                f"{key} names the environment variable {name}, which is not set"
                f" (export {name}=... or, in CI, add it as a repository secret)"
            )
        return os.environ[name]

    return _PLACEHOLDER.sub(value, source)


def _database_url(source: str) -> URL | None:
    """SQLAlchemy's reading of a database source, the one its engine connects with; None for a
    file or http(s) source, or a database URL it cannot read as written (a `${PORT}`, say)."""
    if source_kind(source) != "database":
        return None
    from sqlalchemy.engine import make_url  # imported here: only database sources need it
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(source)
    except (ArgumentError, ValueError):
        return None


def _url_parts(source: str) -> tuple[str | None, list[tuple[str, str]], str]:
    """Password, query items and fragment: SQLAlchemy's reading of a database URL (which has no
    fragment: a '#' is part of a name), urllib's of anything else. ValueError if not a URL."""
    url = _database_url(source)
    if url is not None:
        query = [
            (name, value)
            for name, values in url.query.items()
            for value in ((values,) if isinstance(values, str) else values)
        ]
        return url.password, query, ""
    return _urllib_parts(source)


def _urllib_parts(source: str) -> tuple[str | None, list[tuple[str, str]], str]:
    parts = urlsplit(source)
    return parts.password, parse_qsl(parts.query, keep_blank_values=True), parts.fragment


def _secrets(source: str) -> list[str]:
    """The parts of a source that must never be shown: password, query values, fragment. For a
    database URL both readings count: SQLAlchemy's (decoded, as a driver's error may quote them)
    and urllib's (as written, e.g. still percent-encoded)."""
    try:
        readings = [_url_parts(source), _urllib_parts(source)]
    except ValueError:  # not a URL at all (e.g. a malformed IPv6 host): show nothing of it
        return [source]
    found = {
        secret
        for password, query, fragment in readings
        for secret in (password, *(value for _, value in query), fragment)
    }
    return sorted(secret for secret in found if secret and secret != HIDDEN)


def redact(source: str) -> str:
    """The source with its password, query values and fragment hidden (placeholders such as
    `${DB_PASSWORD}` are kept: they are names, not secrets): safe for manifests and logs."""
    try:
        password, query, fragment = _url_parts(source)
    except ValueError:
        return HIDDEN
    if not _secrets(_PLACEHOLDER.sub("", source)):
        return source  # nothing to hide: leave it exactly as written
    hide_password = bool(password) and not _PLACEHOLDER.fullmatch(password or "")
    shown_query = "&".join(
        f"{name}={value if _PLACEHOLDER.fullmatch(value) else HIDDEN}" for name, value in query
    )
    url = _database_url(source)
    if url is not None:
        if hide_password:
            head = url.set(query={}).render_as_string(hide_password=True)
        else:  # nothing to hide before the query: leave that part as written
            head = source.partition("?")[0]
        return f"{head}?{shown_query}" if shown_query else head
    parts = urlsplit(source)
    netloc = parts.netloc
    if hide_password:  # urllib can read a password but not replace one
        netloc = f"{parts.username or ''}:{HIDDEN}@{netloc.rpartition('@')[2]}"
    shown_fragment = HIDDEN if fragment else ""
    return urlunsplit(parts._replace(netloc=netloc, query=shown_query, fragment=shown_fragment))


def scrub(text: str, *sources: str) -> str:
    """`text` (an error message, say) with every secret of the given sources hidden, in the
    sources as written and as resolved from the environment."""
    for source in sources:
        with contextlib.suppress(DataSourceError):
            source = resolve(source)
        for secret in sorted(_secrets(source), key=len, reverse=True):
            text = text.replace(secret, HIDDEN)
    return text


def _reader_for(path: str) -> Any:
    suffix = Path(urlsplit(path).path).suffix.lower()
    try:
        return FILE_READERS[suffix]
    except KeyError:
        known = ", ".join(sorted(FILE_READERS))
        raise DataSourceError(
            f"cannot read '{path}': unknown file type '{suffix}' ({known})"
        ) from None


def _existing_file(source: str) -> Path:
    """The path a file source names (a `file:` URL or a path); DataSourceError if missing."""
    path = Path(urlsplit(source).path) if source.startswith("file:") else Path(source)
    if not path.is_file():
        raise DataSourceError(f"data source not found: {path}")
    return path


def load_table(source: str, query: str | None = None) -> pd.DataFrame:
    """Load a table from a CSV/Parquet path, an http(s) URL, or a SQL query on a database URL.
    `${NAME}` placeholders in `source` are filled in from the environment."""
    kind = source_kind(source)
    shown = redact(source)
    source = resolve(source)
    try:
        if kind == "file":
            path = _existing_file(source)
            table = _reader_for(str(path))(path)
        elif kind == "url":
            table = _reader_for(source)(source)
        else:
            table = _read_sql(source, query)
    except DataSourceError:
        raise
    except pd.errors.EmptyDataError:
        return pd.DataFrame()  # an empty file is data too: validation says what is wrong with it
    except Exception as error:  # any reader failure becomes one clear message, secrets hidden
        raise DataSourceError(f"cannot read {shown}: {scrub(str(error), source)}") from None
    return table


def read_chunks(
    source: str, query: str | None, rows: int, text_columns: tuple[str, ...] = ()
) -> Iterator[pd.DataFrame]:
    """The table `load_table` reads, `rows` rows at a time, so that a table of any size is read
    in flat memory: CSV and Parquet files and database results are streamed (a Parquet URL is
    read whole, then sliced). `text_columns` are read from a CSV as text, as the schema types
    them (a category of digits stays '01')."""
    kind = source_kind(source)
    shown = redact(source)
    source = resolve(source)
    try:
        if kind == "database":
            yield from _sql_chunks(source, query, rows)
            return
        name = str(_existing_file(source)) if kind == "file" else source
        reader = _reader_for(name)
        if reader is pd.read_csv:
            present = set(pd.read_csv(name, nrows=0).columns)
            text = {column: "string" for column in text_columns if column in present}
            yield from pd.read_csv(name, chunksize=rows, dtype=text)
        elif kind == "file":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(name).iter_batches(batch_size=rows):
                yield batch.to_pandas()
        else:
            table = reader(name)
            for start in range(0, len(table), rows):
                yield table.iloc[start : start + rows]
    except DataSourceError:
        raise
    except pd.errors.EmptyDataError:
        return  # an empty file: no rows
    except Exception as error:  # any reader failure becomes one clear message, secrets hidden
        raise DataSourceError(f"cannot read {shown}: {scrub(str(error), source)}") from None


def _sql_chunks(url: str, query: str | None, rows: int) -> Iterator[pd.DataFrame]:
    with _sql_query(url, query, "a query") as (connection, text):
        streamed = connection.execution_options(stream_results=True)  # a server-side cursor
        yield from pd.read_sql_query(text, streamed, chunksize=rows)


def _read_sql(url: str, query: str | None) -> pd.DataFrame:
    with _sql_query(url, query, "data.query") as (connection, text):
        return pd.read_sql_query(text, connection)


@contextlib.contextmanager
def _sql_query(url: str, query: str | None, what: str) -> Iterator[tuple[Any, Any]]:
    """A connection to the database at `url` and `query` as SQL text; the engine is disposed
    of afterwards. A database source without a query is refused, naming `what` it needs."""
    import sqlalchemy  # imported here: only database sources need it

    if not query:
        raise DataSourceError(f"a database source needs {what} (source: {redact(url)})")
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            yield connection, sqlalchemy.text(query)
    finally:
        engine.dispose()


def _new_file_beside(target: Path) -> Path:
    """A new empty file in `target`'s directory, with the mode `open(target, "w")` would give."""
    # Not tempfile.mkstemp: it makes every file 0600 and the rename keeps that mode, so reports
    # would be readable by their owner only. Nor mkstemp plus a chmod to 0o666 & ~umask: reading
    # the umask means setting it (os.umask changes it for every thread of the process) or
    # /proc/self/status (Linux only). Creating the file with mode 0o666 lets the kernel apply the
    # umask (and a directory's default ACL) itself, exactly as for open(); O_EXCL makes the name
    # ours alone, as mkstemp does.
    while True:
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return temporary


class StageOutputs:
    """The files one stage writes, staged as temporary files beside their targets and renamed
    into place by `stage_outputs` once the stage's work has succeeded."""

    def __init__(self) -> None:
        self._staged: dict[Path, Path] = {}

    def path(self, target: Path | str) -> Path:
        """A temporary file that becomes `target` when the stage succeeds."""
        target = Path(target)
        if target in self._staged:
            raise ValueError(f"{target} is written twice by one stage")
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = _new_file_beside(target)
        self._staged[target] = temporary
        return temporary

    def table(self, table: pd.DataFrame, target: Path | str) -> None:
        """CSV or Parquet, by the target's suffix."""
        temporary = self.path(target)
        if Path(target).suffix.lower() in (".parquet", ".pq"):
            table.to_parquet(temporary, index=False)
        else:
            table.to_csv(temporary, index=False)

    def json(self, data: Any, target: Path | str) -> None:
        """JSON with sorted keys, so that reruns give identical files."""
        self.path(target).write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")

    def text(self, text: str, target: Path | str) -> None:
        self.path(target).write_text(text)

    def _commit(self) -> None:
        try:
            for target, temporary in self._staged.items():
                os.replace(temporary, target)
        finally:
            self._discard()  # after a failed rename: the temporary files not yet moved

    def _discard(self) -> None:
        for temporary in self._staged.values():
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)
        self._staged.clear()


@contextlib.contextmanager
def stage_outputs() -> Iterator[StageOutputs]:
    """Write a stage's files: if the block fails, every previous file stays as it was and no
    temporary file is left; if it succeeds, the files are renamed into place one by one after
    all were written. Each file is whole; the set is not atomic (see the module docstring)."""
    outputs = StageOutputs()
    try:
        yield outputs
    except BaseException:
        outputs._discard()
        raise
    outputs._commit()


def write_table(table: pd.DataFrame, path: Path | str) -> None:
    """Write CSV or Parquet (by suffix) atomically."""
    with stage_outputs() as outputs:
        outputs.table(table, path)


def write_json(data: Any, path: Path | str) -> None:
    """Write JSON atomically, keys sorted so that reruns give identical files."""
    with stage_outputs() as outputs:
        outputs.json(data, path)


def write_text(text: str, path: Path | str) -> None:
    """Write text atomically."""
    with stage_outputs() as outputs:
        outputs.text(text, path)


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
