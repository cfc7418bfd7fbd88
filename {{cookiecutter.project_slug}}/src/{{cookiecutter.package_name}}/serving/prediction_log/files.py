"""File primitives of the directory sink and the spool: private modes, appends that leave exactly
what was accepted, atomic rewrites, and reading only what was appended since the last look."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PRIVATE_DIRECTORY = 0o700  # the log holds personal data: its owner (the service) only
PRIVATE_FILE = 0o600


def private_directory(directory: Path) -> None:
    """`directory` (and missing parents) made, then set 0700 whatever the umask: a directory
    from before this rule is tightened too."""
    directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIRECTORY)
    if directory.stat().st_mode & 0o777 != PRIVATE_DIRECTORY:
        with contextlib.suppress(PermissionError):  # not ours: leave it as its owner set it
            directory.chmod(PRIVATE_DIRECTORY)


def open_private(path: Path, flags: int) -> int:
    """A descriptor on `path`, the file created 0600 whatever the umask (an older file with
    wider modes is tightened)."""
    descriptor = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        if os.fstat(descriptor).st_mode & 0o777 != PRIVATE_FILE:
            with contextlib.suppress(PermissionError):
                os.fchmod(descriptor, PRIVATE_FILE)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def durable_append(descriptor: int, data: bytes) -> None:
    """Append with unbuffered writes, then fsync; a failed append is cut back off. Nothing of
    a refused append stays behind, in the file or in a buffer: a buffered file object kept the
    bytes a full disk refused and wrote them with the next append, so a record answered 503
    reached the log later."""
    size = os.lseek(descriptor, 0, os.SEEK_END)
    try:
        view = memoryview(data)
        while view:
            written = os.write(descriptor, view)
            if written == 0:
                raise OSError(errno.ENOSPC, "no byte written")
            view = view[written:]
        os.fsync(descriptor)
    except BaseException:
        with contextlib.suppress(OSError):
            os.ftruncate(descriptor, size)
            os.lseek(descriptor, size, os.SEEK_SET)
        raise


def fsync_directory(directory: Path) -> None:
    """Make a new (or renamed, or removed) file's name durable, not just its contents."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def rewrite_atomically(path: Path, data: bytes) -> None:
    """Replace `path`'s contents at once: a private file beside it, fsync'd, renamed over it."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.new")
    descriptor = open_private(temporary, os.O_WRONLY | os.O_EXCL)
    try:
        durable_append(descriptor, data)
    except BaseException:
        os.close(descriptor)
        temporary.unlink()
        raise
    os.close(descriptor)
    os.replace(temporary, path)
    fsync_directory(path.parent)


def json_lines(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(record, default=str) + "\n" for record in records).encode()


def parse_lines(data: bytes, origin: Path) -> Iterator[dict[str, Any]]:
    """The records of JSON lines; a line cut short by a crash is skipped (its write was never
    confirmed, so nobody was answered for it)."""
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            logger.warning("%s: line %d is not valid JSON; skipped", origin, number)


def read_json_lines(path: Path) -> Iterator[dict[str, Any]]:
    yield from parse_lines(path.read_bytes(), path)


class AppendedLines:
    """What was appended to one file since the last look, whole lines only: an index kept over
    a growing file reads each byte once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._inode: int | None = None
        self._offset = 0

    def new_records(self) -> list[dict[str, Any]] | None:
        """The records appended since the last call; None when the file was removed, replaced
        or cut back since (what was read from it before no longer holds)."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            return None if self._inode is not None else []
        if self._inode is not None and (
            status.st_ino != self._inode or status.st_size < self._offset
        ):
            return None
        self._inode = status.st_ino
        if status.st_size == self._offset:
            return []
        try:
            with open(self.path, "rb") as handle:
                if os.fstat(handle.fileno()).st_ino != self._inode:
                    return None  # replaced between the two looks
                handle.seek(self._offset)
                data = handle.read(status.st_size - self._offset)
        except FileNotFoundError:
            return None
        whole = data.rfind(b"\n") + 1  # a line still being written waits for the next look
        self._offset += whole
        return list(parse_lines(data[:whole], self.path))
