"""Retention: records older than `monitor.retention_days` leave the sink and the spool."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .records import Table
from .sink import PredictionSink
from .spool import Spool


@dataclass(frozen=True)
class Purged:
    """What a purge deleted, per table, and the spool files it had to leave to their owners."""

    cutoff: datetime
    sink: dict[Table, int]
    spool: dict[Table, int]
    live_spool_files: int

    def describe(self) -> str:
        lines = [f"deleted the records timestamped before {self.cutoff.isoformat()}:"]
        for where, counts in (("log", self.sink), ("spool", self.spool)):
            lines += [f"  {where} {table}: {count}" for table, count in counts.items()]
        if self.live_spool_files:
            lines.append(
                f"  {self.live_spool_files} spool file(s) of running services were left: they"
                " replay them into the log, where the next purge finds them"
            )
        return "\n".join(lines)


def retention_cutoff(retention_days: int, now: datetime | None = None) -> datetime:
    """The oldest time kept: `retention_days` before now, in whole seconds."""
    return ((now or datetime.now(UTC)) - timedelta(days=retention_days)).replace(microsecond=0)


def purge(sink: PredictionSink, spool: Spool, cutoff: datetime) -> Purged:
    """Delete predictions and labels timestamped before `cutoff` from the sink and the spool."""
    spooled, live = spool.purge(cutoff)
    return Purged(cutoff, sink.purge(cutoff), spooled, live)
