"""The spool: records the sink could not take, on local disk until it can."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

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
from .records import TABLES, Table, record_time
from .sink import PredictionSink, Recorded

logger = logging.getLogger(__name__)


class Spool:
    """Records the sink could not take, on local disk until it can.

    Each process appends to a file of its own (`spool-<pid>-<random>.jsonl`) and holds an
    exclusive lock on it for as long as it runs; the lock dies with the process, however it
    ends. So a file nobody holds belongs to a process that is gone: whoever replays next (the
    same service restarted, or another worker) takes it over. Appends are unbuffered and
    fsync'd before they return; an append that fails is cut back off, so the file holds exactly
    the records whose append succeeded.
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.pending = 0  # records in this process's own file
        self._own: Path | None = None
        self._fd: int | None = None  # this process's file, locked while we run
        self._index: dict[str, _FileIndex] = {}

    def append(self, table: Table, records: list[dict[str, Any]]) -> None:
        lines = json_lines([{"table": table, "record": record} for record in records])
        durable_append(self._own_file(), lines)
        self.pending += len(records)

    def _own_file(self) -> int:
        if self._fd is None:
            private_directory(self.directory)
            name = f"spool-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            # Locked under a name replays do not look at, then renamed (the lock stays with the
            # file): another process never sees it unlocked, so never takes it as an orphan.
            hidden = self.directory / f".{name}.new"
            descriptor = open_private(hidden, os.O_RDWR | os.O_APPEND)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            path = self.directory / name
            os.rename(hidden, path)
            fsync_directory(self.directory)
            self._own, self._fd = path, descriptor
        return self._fd

    def orphans(self) -> bool:
        """Whether another, ended process left records here."""
        return any(path != self._own for path in self.directory.glob("spool-*.jsonl"))

    def _others(self) -> Iterator[Path]:
        """The files of ended processes, each locked while the caller handles it (a live
        process's file, or one replayed and removed meanwhile, is passed over)."""
        for path in sorted(self.directory.glob("spool-*.jsonl")):
            if path == self._own:
                continue
            with contextlib.suppress(FileNotFoundError), open(path, "rb") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live process's own file
                if os.fstat(handle.fileno()).st_nlink == 0:
                    continue  # removed by another process meanwhile
                yield path

    def replay(self, sink: PredictionSink, batch: int = 1_000, *, quiet: bool = False) -> int:
        """Move every record this process may take (its own and the orphans') into the sink;
        how many. A file leaves the spool only once all its records are stored; a failure
        raises with the rest still spooled. Each replayed file is logged as a warning (records
        that waited for the sink), unless `quiet` (records staged on purpose: batch scoring)."""
        moved = 0
        if self._own is not None and self._fd is not None:
            moved += self._replay_file(self._own, sink, batch, quiet)
            os.ftruncate(self._fd, 0)
            self.pending = 0
        for path in self._others():
            moved += self._replay_file(path, sink, batch, quiet)
            path.unlink()
        return moved

    @staticmethod
    def _replay_file(path: Path, sink: PredictionSink, batch: int, quiet: bool) -> int:
        moved = 0
        pending: dict[Table, list[dict[str, Any]]] = {"predictions": [], "feedback": []}
        for line in read_json_lines(path):
            table: Table = line["table"]
            pending[table].append(line["record"])
            if len(pending[table]) >= batch:
                sink.write_missing(table, pending[table])
                moved += len(pending[table])
                pending[table] = []
        for table, records in pending.items():
            if records:
                sink.write_missing(table, records)
                moved += len(records)
        if moved and not quiet:
            logger.warning("replayed %d spooled record(s) from %s into the log", moved, path)
        return moved

    def recorded(self, prediction_ids: set[str]) -> Recorded:
        """Which of these ids a spool file here (this process's, a live worker's, or an
        orphan's) holds a prediction or a label for. Each file is read from where the last
        look stopped."""
        try:
            names = {name for name in os.listdir(self.directory) if name.startswith("spool-")}
        except OSError:  # no spool directory (yet, or a broken one): it holds nothing
            names = set()
        for name in self._index.keys() - names:  # replayed (into the sink) or purged
            del self._index[name]
        predicted: set[str] = set()
        labelled: set[str] = set()
        for name in names:
            index = self._index.get(name)
            if index is None:
                index = self._index[name] = _FileIndex(self.directory / name)
            index.refresh()
            predicted |= prediction_ids & index.ids["predictions"]
            labelled |= prediction_ids & index.ids["feedback"]
        return predicted, labelled

    def purge(self, cutoff: datetime) -> tuple[dict[Table, int], int]:
        """Delete spooled records timestamped before `cutoff` from the files of ended
        processes; how many of each table, and how many live processes' files were left to
        their owners (who replay them into the sink, where the next purge finds them)."""
        counts: dict[Table, int] = {table: 0 for table in TABLES}
        if not self.directory.is_dir():
            return counts, 0
        every = {path for path in self.directory.glob("spool-*.jsonl") if path != self._own}
        handled = set()
        for path in self._others():
            handled.add(path)
            lines = list(read_json_lines(path))
            kept = []
            for line in lines:
                if record_time(line["record"]) < cutoff:
                    counts[line["table"]] += 1
                else:
                    kept.append(line)
            if not kept:
                path.unlink()
            elif len(kept) < len(lines):
                rewrite_atomically(path, json_lines(kept))
        return counts, len(every - handled)

    def close(self) -> None:
        """Release this process's file; remove it when empty (else the next start replays it)."""
        if self._fd is None:
            return
        if self.pending == 0 and self._own is not None:
            with contextlib.suppress(FileNotFoundError):
                self._own.unlink()
        os.close(self._fd)
        self._fd = None


class _FileIndex:
    """The prediction ids one spool file holds records for, by table."""

    def __init__(self, path: Path) -> None:
        self._lines = AppendedLines(path)
        self.ids: dict[Table, set[str]] = {table: set() for table in TABLES}

    def refresh(self) -> None:
        records = self._lines.new_records()
        if records is None:  # cut back after a replay, or replaced by a purge: read it again
            self._lines = AppendedLines(self._lines.path)
            self.ids = {table: set() for table in TABLES}
            records = self._lines.new_records() or []
        for line in records:
            self.ids[line["table"]].add(line["record"]["prediction_id"])
