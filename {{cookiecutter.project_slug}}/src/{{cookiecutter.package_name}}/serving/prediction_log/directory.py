"""The directory sink: JSON lines files, one per table, UTC day and writing process."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from .files import (
    AppendedLines,
    durable_append,
    fsync_directory,
    json_lines,
    open_private,
    private_directory,
    read_json_lines,
    rewrite_atomically,
)
from .records import COLUMNS, IDENTITY, TABLES, Table, record_time
from .sink import PredictionSink, Recorded

PURGED = ".purged"  # replaced by each purge: indexes over the directory start again


@contextlib.contextmanager
def _locked(path: Path, flags: int) -> Iterator[int | None]:
    """`path` opened and locked exclusively (appends and a purge's rewrite take turns); the
    descriptor, or None when the file was replaced or removed while we waited for the lock."""
    descriptor = open_private(path, flags)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            current = os.stat(path).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            current = False
        yield descriptor if current else None
    finally:
        os.close(descriptor)  # releases the lock


def _day(path: Path) -> date | None:
    """The UTC day in a file's name (`<table>-<YYYY-MM-DD>-<pid>.jsonl`)."""
    with contextlib.suppress(ValueError):
        return date.fromisoformat(path.name.split("-", 1)[1][:10])
    return None


class DirectorySink(PredictionSink):
    """JSON lines files in a directory: no server needed, easy to ship and to read."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._index = _Index(self.directory)

    def write(self, table: Table, records: list[dict[str, Any]]) -> None:
        private_directory(self.directory)
        day = datetime.now(UTC).date().isoformat()
        path = self.directory / f"{table}-{day}-{os.getpid()}.jsonl"
        data = json_lines(records)
        while True:
            created = not path.exists()
            with _locked(path, os.O_WRONLY | os.O_APPEND) as descriptor:
                if descriptor is not None:
                    durable_append(descriptor, data)
                    break
            # a purge replaced or removed the file meanwhile: append to the current one
        if created:
            fsync_directory(self.directory)

    def _read(self, table: Table) -> pd.DataFrame:
        records = [
            record
            for path in sorted(self.directory.glob(f"{table}-*.jsonl"))
            for record in read_json_lines(path)
        ]
        frame = pd.DataFrame(records, columns=COLUMNS[table])
        # A replayed spool may repeat records a cut-short write had already stored.
        repeated = frame[IDENTITY[table]].astype(str).duplicated()
        return frame[~repeated].reset_index(drop=True)

    def recorded(self, prediction_ids: set[str]) -> Recorded:
        self._index.refresh()
        return prediction_ids & self._index.predicted, prediction_ids & self._index.labelled

    def purge(self, cutoff: datetime) -> dict[Table, int]:
        """Files holding only older records are removed, files holding both rewritten (a new
        file renamed over the old one, under the lock writers take)."""
        counts: dict[Table, int] = {table: 0 for table in TABLES}
        if not self.directory.is_dir():
            return counts
        for table in TABLES:
            for path in sorted(self.directory.glob(f"{table}-*.jsonl")):
                with _locked(path, os.O_RDONLY) as descriptor:
                    if descriptor is None:
                        continue
                    records = list(read_json_lines(path))
                    kept = [record for record in records if record_time(record) >= cutoff]
                    counts[table] += len(records) - len(kept)
                    if not kept:
                        path.unlink()
                    elif len(kept) < len(records):
                        rewrite_atomically(path, json_lines(kept))
        rewrite_atomically(self.directory / PURGED, datetime.now(UTC).isoformat().encode())
        return counts


class _Index:
    """The prediction ids a directory holds predictions and labels for, kept up to date by
    reading only what was appended since the last look: files of past days are read once
    (nothing appends to them), today's and yesterday's from where the last look stopped,
    other workers' files too. A purge (its marker file changes) or a file that vanished or was
    replaced starts the index again."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.predicted: set[str] = set()
        self.labelled: set[str] = set()
        self._files: dict[str, AppendedLines] = {}
        self._purge_mark: tuple[int, int] | None = None

    def refresh(self) -> None:
        if not self._up_to_date():
            self._files.clear()
            self.predicted.clear()
            self.labelled.clear()
            self._up_to_date()

    def _up_to_date(self) -> bool:
        """Read what is new; False when what was read before no longer holds."""
        try:
            mark = os.stat(self.directory / PURGED)
            purge_mark: tuple[int, int] | None = (mark.st_ino, mark.st_mtime_ns)
        except FileNotFoundError:
            purge_mark = None
        if purge_mark != self._purge_mark:
            self._purge_mark = purge_mark
            if self._files:
                return False
        try:
            names = {
                name
                for name in os.listdir(self.directory)
                if name.endswith(".jsonl") and name.startswith(("predictions-", "feedback-"))
            }
        except FileNotFoundError:
            names = set()
        if self._files.keys() - names:
            return False
        active = datetime.now(UTC).date() - timedelta(days=1)
        for name in sorted(names):
            lines = self._files.get(name)
            if lines is None:
                lines = self._files[name] = AppendedLines(self.directory / name)
            elif (_day(lines.path) or active) < active:
                continue  # a past day's file: read already, and nothing appends to it
            records = lines.new_records()
            if records is None:
                return False
            ids = self.predicted if name.startswith("predictions-") else self.labelled
            ids.update(record["prediction_id"] for record in records)
        return True
