"""The prediction log: every served prediction and every feedback label, written by a background
thread so a request never waits on a disk or a database. Monitoring reads it back.

Where it goes: `serving.prediction_log` in params.yaml, or the `PREDICTION_LOG` environment
variable (it wins, for containers):

- a directory (the default, `logs/predictions`): JSON lines files
  `predictions-<YYYY-MM-DD>-<pid>.jsonl` and `feedback-<YYYY-MM-DD>-<pid>.jsonl`, one file per
  UTC day and serving process so that workers never interleave their writes;
- a database URL (`sqlite:///logs/predictions.db`, `postgresql://user@host/db`): tables
  `predictions` and `feedback`, created on first use (SQLAlchemy).

Record layout, the same in every sink (labels are text, compared as text like the pipeline does):

    predictions: prediction_id  uuid4, as text
                 timestamp      UTC, ISO 8601 text
                 model_version  the BentoML model tag that answered, e.g. `name:version`
                 features       the request record, an object keyed by feature name
                                (a JSON text column in SQL)
                 label          the predicted label
                 probability    the probability of the positive class
                 simulated      true for traffic made by `make simulate`
    feedback:    prediction_id  the prediction the label belongs to
                 timestamp      when the feedback arrived
                 label          the true label

`read_predictions()` returns one row per prediction with `features` spread into one column per
feature; `read_feedback()` one row per feedback record (a prediction may get several: the latest
timestamp is the newest word). Both return `timestamp` as a UTC datetime. `join_feedback()`
gives each prediction its newest true label and counts the feedback that matches no prediction
(the service records feedback for any well-formed id).

A location may name environment variables as `${NAME}` (a database password, say), filled in
when the sink opens.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import queue
import threading
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from {{ cookiecutter.package_name }}.io import resolve, source_kind

logger = logging.getLogger(__name__)

ENV_VAR = "PREDICTION_LOG"
Table = Literal["predictions", "feedback"]
COLUMNS: dict[Table, list[str]] = {
    "predictions": [
        "prediction_id",
        "timestamp",
        "model_version",
        "features",
        "label",
        "probability",
        "simulated",
    ],
    "feedback": ["prediction_id", "timestamp", "label"],
}


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class PredictionSink(ABC):
    """Where log records are stored; the writer thread is the only caller of `write`."""

    @abstractmethod
    def write(self, table: Table, records: list[dict[str, Any]]) -> None: ...

    @abstractmethod
    def _read(self, table: Table) -> pd.DataFrame:
        """The raw records of one table, in the layout above (features possibly JSON text)."""

    def read_predictions(self) -> pd.DataFrame:
        raw = self._read("predictions")
        features = pd.DataFrame(
            [json.loads(item) if isinstance(item, str) else item for item in raw["features"]],
            index=raw.index,
        )
        table = pd.concat([raw.drop(columns="features"), features], axis=1)
        return _typed(table)

    def read_feedback(self) -> pd.DataFrame:
        return _typed(self._read("feedback"))


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    table["timestamp"] = pd.to_datetime(table["timestamp"], utc=True, format="ISO8601")
    table["label"] = table["label"].astype(str)
    if "probability" in table:
        table["probability"] = table["probability"].astype(float)
    if "simulated" in table:
        table["simulated"] = table["simulated"].fillna(False).astype(bool)
    return table


class DirectorySink(PredictionSink):
    """JSON lines files in a directory: no server needed, easy to ship and to read."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def write(self, table: Table, records: list[dict[str, Any]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        day = datetime.now(UTC).date().isoformat()
        lines = "".join(json.dumps(record, default=str) + "\n" for record in records)
        with open(
            self.directory / f"{table}-{day}-{os.getpid()}.jsonl", "a", encoding="utf-8"
        ) as handle:
            handle.write(lines)

    def _read(self, table: Table) -> pd.DataFrame:
        records = []
        for path in sorted(self.directory.glob(f"{table}-*.jsonl")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut short by a crash: skip it, keep the rest
                    logger.warning("%s:%d is not valid JSON; skipped", path, number)
        return pd.DataFrame(records, columns=COLUMNS[table])


class SqlSink(PredictionSink):
    """Two tables in any SQLAlchemy database, for logs shared by many replicas."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa  # imported here: the directory sink needs no database driver

        self.url = url
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url)
        metadata = sa.MetaData()
        self.tables = {
            "predictions": sa.Table(
                "predictions",
                metadata,
                sa.Column("prediction_id", sa.String(36), primary_key=True),
                sa.Column("timestamp", sa.String(40), nullable=False, index=True),
                sa.Column("model_version", sa.String(200), nullable=False),
                sa.Column("features", sa.Text, nullable=False),
                sa.Column("label", sa.String(200), nullable=False),
                sa.Column("probability", sa.Float, nullable=False),
                sa.Column("simulated", sa.Boolean, nullable=False, default=False),
            ),
            "feedback": sa.Table(
                "feedback",
                metadata,
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("prediction_id", sa.String(36), nullable=False, index=True),
                sa.Column("timestamp", sa.String(40), nullable=False),
                sa.Column("label", sa.String(200), nullable=False),
            ),
        }
        metadata.create_all(self.engine)

    def write(self, table: Table, records: list[dict[str, Any]]) -> None:
        rows = [
            {
                **record,
                "features": json.dumps(record["features"], default=str),
                "simulated": bool(record.get("simulated", False)),
            }
            if "features" in record
            else record
            for record in records
        ]
        with self.engine.begin() as connection:
            connection.execute(self.tables[table].insert(), rows)

    def _read(self, table: Table) -> pd.DataFrame:
        import sqlalchemy as sa

        query = sa.select(*(self.tables[table].c[name] for name in COLUMNS[table]))
        with self.engine.connect() as connection:
            return pd.read_sql_query(query, connection)


def open_sink(target: str | None = None, base_dir: Path | str | None = None) -> PredictionSink:
    """The sink for `target` (a directory or a database URL); PREDICTION_LOG overrides it.

    A relative `target` (directory or `sqlite:///relative.db`) is taken relative to `base_dir`,
    the project (or bento) directory, not to wherever the server happens to run; the override is
    used as given.
    """
    override = os.environ.get(ENV_VAR)
    if override:
        target = resolve(override, key=ENV_VAR)
    elif target:
        target = resolve(target, key="serving.prediction_log")
        if base_dir is not None:
            target = _anchored(target, Path(base_dir))
    if not target:
        raise ValueError(f"no prediction log configured: set serving.prediction_log or {ENV_VAR}")
    return SqlSink(target) if source_kind(target) == "database" else DirectorySink(target)


def join_feedback(predictions: pd.DataFrame, feedback: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Each prediction with its newest feedback label in `true_label` (missing when none came),
    and how many feedback records name a prediction id that is not in `predictions`."""
    known = set(predictions["prediction_id"])
    matched = feedback["prediction_id"].isin(known)
    newest = (
        feedback[matched]
        .sort_values("timestamp")
        .drop_duplicates("prediction_id", keep="last")
        .set_index("prediction_id")["label"]
    )
    joined = predictions.copy()
    joined["true_label"] = joined["prediction_id"].map(newest)
    return joined, int((~matched).sum())


def _anchored(target: str, base_dir: Path) -> str:
    if source_kind(target) == "file":
        return str(base_dir / target)
    sqlite = "sqlite:///"
    if (
        target.startswith(sqlite)
        and not target.startswith(sqlite + "/")
        and target != sqlite + ":memory:"
    ):
        return sqlite + str(base_dir / target.removeprefix(sqlite))
    return target


_STOP = object()


WRITE_RETRIES = (0.1, 0.5, 2.0)  # seconds between attempts at a failing write


class PredictionLog:
    """A bounded queue in front of a sink, drained by one writer thread.

    When the sink falls behind for longer than `put_timeout`, a record is not queued: `log_*`
    return False (the service then refuses the request with a 503 rather than answer a
    prediction it cannot record) and the record is counted in `dropped`. A failing write is
    retried (WRITE_RETRIES) before its records are counted in `failed`. `close()` writes what is
    queued.
    """

    def __init__(
        self, sink: PredictionSink, max_pending: int = 1_000, put_timeout: float = 1.0
    ) -> None:
        self.sink = sink
        self.dropped = 0
        self.failed = 0
        self._put_timeout = put_timeout
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._closed = False
        self._thread = threading.Thread(target=self._drain, name="prediction-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def log_predictions(self, records: list[dict[str, Any]]) -> bool:
        """Queue predictions for writing; False if the log is full (nothing was queued)."""
        return self._put(("predictions", records))

    def log_feedback(self, record: dict[str, Any]) -> bool:
        return self._put(("feedback", [record]))

    def _put(self, item: tuple[Table, list[dict[str, Any]]]) -> bool:
        if self._closed:
            raise RuntimeError("the prediction log is closed")
        try:
            self._queue.put(item, timeout=self._put_timeout)
        except queue.Full:
            self.dropped += len(item[1])
            logger.error("prediction log is full: dropped %d %s record(s)", len(item[1]), item[0])
            return False
        return True

    def flush(self) -> None:
        """Wait until everything queued so far is written."""
        self._queue.join()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued and stop the writer thread; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=timeout)
        self._thread.join(timeout)
        atexit.unregister(self.close)

    def _write(self, table: Table, records: list[dict[str, Any]]) -> None:
        """Write, retrying a failure; a sink that keeps failing must not kill the writer."""
        for wait in (*WRITE_RETRIES, None):
            try:
                self.sink.write(table, records)
                return
            except Exception:
                if wait is None:
                    self.failed += len(records)
                    logger.exception("could not write %d %s record(s)", len(records), table)
                    return
                logger.warning("writing %d %s record(s) failed: retrying", len(records), table)
                time.sleep(wait)

    def _drain(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < 100:  # write what has piled up in one go
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            batches: dict[Table, list[dict[str, Any]]] = {}
            for item in items:
                if item is not _STOP:
                    batches.setdefault(item[0], []).extend(item[1])
            for table, records in batches.items():
                self._write(table, records)
            for _ in items:
                self._queue.task_done()
            if any(item is _STOP for item in items):
                return
