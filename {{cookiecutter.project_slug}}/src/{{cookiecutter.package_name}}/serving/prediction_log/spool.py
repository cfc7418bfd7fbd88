"""The spool: records the sink could not take, on disk until it can: a pod's own volume, or
one its replicas share (a network file system: the locks are POSIX record locks, which NFS and
its kin hold across machines)."""

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
    parse_lines,
    private_directory,
    rewrite_atomically,
)
from .records import TABLES, Table, record_time
from .sink import PredictionSink, Recorded

logger = logging.getLogger(__name__)


class SpoolFull(OSError):
    """The spool holds as many bytes as it may: the records were not written (their request is
    refused with a 503, before the volume fills and the pod is evicted)."""


class Spool:
    """Records the sink could not take, on disk until it can.

    Each process appends to a file of its own (`spool-<pid>-<random>.jsonl`) and holds an
    exclusive lock on it for as long as it runs; the lock dies with the process, however it
    ends. So a file nobody holds belongs to a process that is gone: whoever replays next (the
    same service restarted, another worker, another pod on a shared volume) takes it over.
    Appends are unbuffered and fsync'd before they return; an append that fails is cut back off,
    so the file holds exactly the records whose append succeeded. With `max_bytes`, an append
    that would take the spool's files past it is refused (SpoolFull) and writes nothing.

    The locks are POSIX record locks (`lockf`): a network file system holds them across
    machines. A process loses those locks on a file as soon as it closes any descriptor of it,
    so this process reads its own file only through the descriptor it holds, and another's only
    through the one it locked.
    """

    def __init__(self, directory: Path | str, max_bytes: int | None = None) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.pending = 0  # records in this process's own file
        self._own: Path | None = None
        self._fd: int | None = None  # this process's file, locked while we run
        self._own_ids: dict[Table, set[str]] = {table: set() for table in TABLES}
        self._index: dict[str, _FileIndex] = {}

    def append(self, table: Table, records: list[dict[str, Any]]) -> None:
        lines = json_lines([{"table": table, "record": record} for record in records])
        if self.max_bytes is not None:
            held = self.size()
            if held + len(lines) > self.max_bytes:
                raise SpoolFull(
                    f"the spool holds {held} bytes; {len(lines)} more would pass its limit of"
                    f" {self.max_bytes} (PREDICTION_SPOOL_MAX_BYTES)"
                )
        durable_append(self._own_file(), lines)
        self.pending += len(records)
        self._own_ids[table].update(record["prediction_id"] for record in records)

    def size(self) -> int:
        """Bytes in the spool's files: every process's, live or ended."""
        total = 0
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return 0
        for entry in entries:
            if entry.name.startswith("spool-"):
                with contextlib.suppress(FileNotFoundError):
                    total += entry.stat().st_size
        return total

    def waiting(self) -> int:
        """Records this process has spooled and not replayed yet (the spool gauge's value)."""
        return self.pending

    def _own_file(self) -> int:
        if self._fd is None:
            private_directory(self.directory)
            name = f"spool-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            # Locked under a name replays do not look at, then renamed (the lock stays with the
            # file): another process never sees it unlocked, so never takes it as an orphan.
            hidden = self.directory / f".{name}.new"
            descriptor = open_private(hidden, os.O_RDWR | os.O_APPEND)
            fcntl.lockf(descriptor, fcntl.LOCK_EX)
            path = self.directory / name
            os.rename(hidden, path)
            fsync_directory(self.directory)
            self._own, self._fd = path, descriptor
        return self._fd

    def orphans(self) -> bool:
        """Whether another, ended process left records here."""
        return any(path != self._own for path in self.directory.glob("spool-*.jsonl"))

    def _others(self) -> Iterator[tuple[Path, bytes]]:
        """The files of ended processes and what each holds, each locked while the caller
        handles it (a live process's file, or one replayed and removed meanwhile, is passed
        over)."""
        for path in sorted(self.directory.glob("spool-*.jsonl")):
            if path == self._own:
                continue
            with contextlib.suppress(FileNotFoundError), open(path, "r+b") as handle:
                try:
                    fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:  # EAGAIN or EACCES: a live process's own file
                    continue
                if os.fstat(handle.fileno()).st_nlink == 0:
                    continue  # removed by another process meanwhile
                yield path, handle.read()

    def _own_content(self) -> bytes:
        """This process's file, read through its locked descriptor (opening it anew and closing
        that would drop the lock)."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        chunks, offset = [], 0
        while offset < size:
            chunk = os.pread(self._fd, min(size - offset, 1 << 20), offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def replay(self, sink: PredictionSink, batch: int = 1_000, *, quiet: bool = False) -> int:
        """Move every record this process may take (its own and the orphans') into the sink;
        how many. A file leaves the spool only once all its records are stored; a failure
        raises with the rest still spooled. Each replayed file is logged as a warning (records
        that waited for the sink), unless `quiet` (records staged on purpose: batch scoring)."""
        moved = 0
        if self._own is not None and self._fd is not None:
            moved += self._replay_file(self._own, self._own_content(), sink, batch, quiet)
            os.ftruncate(self._fd, 0)
            self.pending = 0
            self._own_ids = {table: set() for table in TABLES}
        for path, content in self._others():
            moved += self._replay_file(path, content, sink, batch, quiet)
            path.unlink()
        return moved

    @staticmethod
    def _replay_file(
        path: Path, content: bytes, sink: PredictionSink, batch: int, quiet: bool
    ) -> int:
        moved = 0
        pending: dict[Table, list[dict[str, Any]]] = {"predictions": [], "feedback": []}
        for line in parse_lines(content, path):
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
        if self._own is not None:  # known as appended: reading it anew would drop its lock
            names.discard(self._own.name)
        for name in self._index.keys() - names:  # replayed (into the sink) or purged
            del self._index[name]
        predicted = prediction_ids & self._own_ids["predictions"]
        labelled = prediction_ids & self._own_ids["feedback"]
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
        for path, content in self._others():
            handled.add(path)
            lines = list(parse_lines(content, path))
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
