"""Progress of the long steps of a stage: a live bar on a terminal (fits done, rows processed),
and on anything else (CI logs, a pipe) one line when a step starts and one when it ends, so logs
stay short. `CI` set in the environment counts as not a terminal."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO


def interactive(stream: TextIO | None = None) -> bool:
    """True on a person's terminal: stderr is a TTY and no CI variable is set."""
    stream = stream or sys.stderr
    return stream.isatty() and not os.environ.get("CI")


class Step:
    """One step of `total` units: `advance()` after each; a bar only where someone watches."""

    def __init__(self, name: str, total: int, unit: str, stream: TextIO | None = None) -> None:
        self.name, self.total, self.unit = name, total, unit
        self.stream = stream or sys.stderr
        self.done = 0
        self._bar: Any = None
        self._started = time.perf_counter()
        if interactive(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=name, unit=f" {unit}", file=self.stream)
        else:
            self._line(f"{name}: {total} {unit}")

    def advance(self, units: int = 1) -> None:
        self.done += units
        if self._bar is not None:
            self._bar.update(units)

    def close(self, outcome: str = "done") -> None:
        if self._bar is not None:
            self._bar.close()
            return
        elapsed = time.perf_counter() - self._started
        done = f"{self.done}/{self.total} {self.unit}"
        self._line(f"{self.name}: {outcome}, {done} in {elapsed:.1f} s")

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


@contextmanager
def step(name: str, total: int, unit: str, stream: TextIO | None = None) -> Iterator[Step]:
    """A Step closed on exit, saying `failed` if the block raised."""
    progress = Step(name, total, unit, stream)
    try:
        yield progress
    except BaseException:
        progress.close("failed")
        raise
    progress.close()
