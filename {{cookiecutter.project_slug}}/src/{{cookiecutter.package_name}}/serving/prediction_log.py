"""The prediction log: every served prediction and every feedback label, the service's audit
record. A request is answered only once its records are durable (`PredictionLog`); monitoring
reads them back.

Where it goes: `serving.prediction_log` in params.yaml, or the `PREDICTION_LOG` environment
variable (it wins, for containers):

- a directory (the default, `logs/predictions`): JSON lines files
  `predictions-<YYYY-MM-DD>-<pid>.jsonl` and `feedback-<YYYY-MM-DD>-<pid>.jsonl`, one file per
  UTC day and serving process so that workers never interleave their writes; each write is
  fsync'd;
- a database URL (`sqlite:///logs/predictions.db`, `postgresql://user@host/db`): tables
  `predictions` and `feedback`, created on first use (SQLAlchemy).

While the sink fails (a database restarting, a network cut), records go to the spool instead
(`serving.prediction_spool`, `PREDICTION_SPOOL` overrides it): fsync'd JSON lines files on local
disk, replayed into the sink when it answers again, and at the next start after a crash. A
replay never duplicates a record: the SQL sink skips records it already holds, the directory
sink's readers drop repeated ones.

Record layout, the same in every sink (labels are text, compared as text like the pipeline does):

    predictions: prediction_id  uuid4, as text
                 timestamp      UTC, ISO 8601 text
                 model_version  the BentoML model tag that answered, e.g. `name:version`
                 features       the request record, an object keyed by feature name
                                (a JSON text column in SQL)
                 label          the decision: the predicted label, or the number
                 probability    binary: the probability of the positive class (else empty)
                 outputs        the model's other outputs, an object keyed by column name as
                                the task names them (several classes: each one's
                                probability, `probability[<class>]`); empty for the others
                                (a JSON text column in SQL, added to an older table)
                 simulated      true for traffic made by `make simulate`
                 batch          true for rows scored by `make predict` (batch scoring)
                 caller         the name of the API token that asked (else empty)
                 explained      true for the decisions /explain answered
    feedback:    prediction_id  the prediction the label belongs to
                 timestamp      when the feedback arrived
                 label          the true label
                 labeller       the name of the API token that sent it (else empty)

`prediction_record()` and `feedback_record()` build them. `read_predictions()` returns one row
per prediction with `features` and `outputs` spread into a column per key; `read_feedback()` one
row per feedback record (a prediction may get several: the latest timestamp is the newest
word). Both return `timestamp` as a UTC datetime. `join_feedback()` gives each prediction its
newest true label and counts the feedback that matches no prediction (the service records
feedback for any well-formed id).

A location may name environment variables as `${NAME}` (a database password, say), filled in
when the sink opens.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import queue
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from {{ cookiecutter.package_name }}.io import resolve, source_kind

logger = logging.getLogger(__name__)

ENV_VAR = "PREDICTION_LOG"
SPOOL_ENV_VAR = "PREDICTION_SPOOL"
Table = Literal["predictions", "feedback"]
COLUMNS: dict[Table, list[str]] = {
    "predictions": [
        "prediction_id",
        "timestamp",
        "model_version",
        "features",
        "label",
        "probability",
        "outputs",
        "simulated",
        "batch",
        "caller",
        "explained",
    ],
    "feedback": ["prediction_id", "timestamp", "label", "labeller"],
}
# What makes a record the same record when a replay meets it again.
IDENTITY: dict[Table, list[str]] = {
    "predictions": ["prediction_id"],
    "feedback": ["prediction_id", "timestamp", "label"],
}


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def prediction_record(
    features: dict[str, Any],
    label: object,
    probability: float | None,
    model_version: str,
    *,
    outputs: dict[str, float] | None = None,
    simulated: bool = False,
    batch: bool = False,
    prediction_id: str | None = None,
    timestamp: str | None = None,
    caller: str | None = None,
    explained: bool = False,
) -> dict[str, Any]:
    """One `predictions` record in the layout above (a new id and the time now by default)."""
    return {
        "prediction_id": prediction_id or str(uuid.uuid4()),
        "timestamp": timestamp or utc_now(),
        "model_version": model_version,
        "features": features,
        "label": str(label),
        "probability": None if probability is None else float(probability),
        "outputs": outputs or None,
        "simulated": simulated,
        "batch": batch,
        "caller": caller,
        "explained": explained,
    }


def output_rows(columns: dict[str, Any], rows: int) -> list[dict[str, float]]:
    """The task's output columns (name -> one value per row) as one mapping per row."""
    return [{name: float(values[i]) for name, values in columns.items()} for i in range(rows)]


def decided_records(
    features: list[dict[str, Any]],
    labels: list[object],
    outputs: list[dict[str, float]],
    model_version: str,
    simulated: list[bool],
    batch: bool = False,
    prediction_ids: list[str] | None = None,
    callers: list[str] | None = None,
    explained: bool = False,
    redact: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """`prediction_record`s of a batch: each row's decision (`labels`) and the model's
    outputs as the task names them (`probability` gets its own field, the others `outputs`);
    `batch` marks rows of batch scoring, which bring their own `prediction_ids`; `callers`
    names who asked for each row; `explained` marks an /explain request's rows; `redact`
    maps a row to what the log keeps."""
    return [
        prediction_record(
            redact(row) if redact else row,
            label,
            own.get("probability"),
            model_version,
            outputs={name: value for name, value in own.items() if name != "probability"},
            simulated=flag,
            batch=batch,
            prediction_id=prediction_ids[i] if prediction_ids else None,
            caller=callers[i] if callers else None,
            explained=explained,
        )
        for i, (row, label, own, flag) in enumerate(
            zip(features, labels, outputs, simulated, strict=True)
        )
    ]


def feedback_record(
    prediction_id: str, label: object, labeller: str | None = None
) -> dict[str, Any]:
    """One `feedback` record: the true label of an earlier prediction, received now."""
    return {
        "prediction_id": prediction_id,
        "timestamp": utc_now(),
        "label": str(label),
        "labeller": labeller,
    }


class PredictionSink(ABC):
    """Where log records are stored; the writer thread is the only caller of `write`."""

    @abstractmethod
    def write(self, table: Table, records: list[dict[str, Any]]) -> None:
        """Store every record, durably, or raise."""

    def write_missing(self, table: Table, records: list[dict[str, Any]]) -> None:
        """Store the records the sink does not hold yet (a replay that may repeat itself)."""
        self.write(table, records)

    def refuses(self, error: Exception) -> bool:
        """Whether `error` says the sink will never take these records (not that it is away
        for now): they are refused rather than spooled, since no replay could store them."""
        return False

    @abstractmethod
    def _read(self, table: Table) -> pd.DataFrame:
        """The raw records of one table, in the layout above (features possibly JSON text)."""

    def read_predictions(self) -> pd.DataFrame:
        raw = self._read("predictions")
        spread = [
            pd.DataFrame([_mapping(item) for item in raw[column]], index=raw.index)
            for column in ("features", "outputs")
            if column in raw
        ]
        table = pd.concat(
            [raw.drop(columns=["features", "outputs"], errors="ignore"), *spread], axis=1
        )
        return _typed(table)

    def read_feedback(self) -> pd.DataFrame:
        return _typed(self._read("feedback"))


def _mapping(item: Any) -> dict[str, Any]:
    """A features or outputs cell as a mapping: JSON text in SQL, an object (or nothing) in
    JSON lines."""
    if isinstance(item, str):
        return json.loads(item) or {}
    return item if isinstance(item, dict) else {}


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    table["timestamp"] = pd.to_datetime(table["timestamp"], utc=True, format="ISO8601")
    table["label"] = table["label"].astype(str)
    if "probability" in table:
        table["probability"] = table["probability"].astype(float)
    for flag in ("simulated", "batch", "explained"):  # absent from older records: false
        if flag in table:
            table[flag] = table[flag].fillna(False).astype(bool)
    return table


def _json_lines(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(record, default=str) + "\n" for record in records)


def _read_json_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a JSON lines file; a line cut short by a crash is skipped (its write was
    never confirmed, so nobody was answered for it)."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                logger.warning("%s:%d is not valid JSON; skipped", path, number)


def _durable_append(handle: Any, data: bytes) -> None:
    """Append and fsync; a failed append is cut back off, so the file never holds half a
    record that the next good one would be glued to (and lost with, when read)."""
    size = handle.seek(0, os.SEEK_END)
    try:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            handle.truncate(size)
            handle.seek(size)
        raise


def _fsync_directory(directory: Path) -> None:
    """Make a new file's name durable, not just its contents."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class DirectorySink(PredictionSink):
    """JSON lines files in a directory: no server needed, easy to ship and to read."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def write(self, table: Table, records: list[dict[str, Any]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        day = datetime.now(UTC).date().isoformat()
        path = self.directory / f"{table}-{day}-{os.getpid()}.jsonl"
        created = not path.exists()
        with open(path, "ab") as handle:
            _durable_append(handle, _json_lines(records).encode())
        if created:
            _fsync_directory(self.directory)

    def _read(self, table: Table) -> pd.DataFrame:
        records = [
            record
            for path in sorted(self.directory.glob(f"{table}-*.jsonl"))
            for record in _read_json_lines(path)
        ]
        frame = pd.DataFrame(records, columns=COLUMNS[table])
        # A replayed spool may repeat records a cut-short write had already stored.
        repeated = frame[IDENTITY[table]].astype(str).duplicated()
        return frame[~repeated].reset_index(drop=True)


class SqlSink(PredictionSink):
    """Two tables in any SQLAlchemy database, for logs shared by many replicas. The tables are
    created on the first write, so a service starts (and spools) while its database is down."""

    CHUNK = 500  # records per statement when a replay checks which ones are stored already

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa  # imported here: the directory sink needs no database driver

        self.url = url
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        connect_args: dict[str, Any] = {}
        if sa.engine.make_url(url).get_backend_name() == "postgresql":
            # A server that is away fails fast, so the records go to the spool: connecting
            # gives up after 5 s; on an open connection a silent network (no reset) is noticed
            # by TCP keepalives and a 10 s limit on unacknowledged data, a stuck statement
            # after 10 s.
            connect_args = {
                "connect_timeout": 5,
                "keepalives": 1,
                "keepalives_idle": 5,
                "keepalives_interval": 2,
                "keepalives_count": 2,
                "tcp_user_timeout": 10_000,
                "options": "-c statement_timeout=10000",
            }
        self.engine = sa.create_engine(url, connect_args=connect_args)
        self.metadata = sa.MetaData()
        self.tables = {
            "predictions": sa.Table(
                "predictions",
                self.metadata,
                sa.Column("prediction_id", sa.String(36), primary_key=True),
                sa.Column("timestamp", sa.String(40), nullable=False, index=True),
                sa.Column("model_version", sa.String(200), nullable=False),
                sa.Column("features", sa.Text, nullable=False),
                sa.Column("label", sa.String(200), nullable=False),
                sa.Column("probability", sa.Float, nullable=True),
                sa.Column("outputs", sa.Text, nullable=True),
                sa.Column("simulated", sa.Boolean, nullable=False, default=False),
                sa.Column("batch", sa.Boolean, nullable=True, default=False),
                sa.Column("caller", sa.String(200), nullable=True),
                sa.Column("explained", sa.Boolean, nullable=True, default=False),
            ),
            "feedback": sa.Table(
                "feedback",
                self.metadata,
                sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                sa.Column("prediction_id", sa.String(36), nullable=False, index=True),
                sa.Column("timestamp", sa.String(40), nullable=False),
                sa.Column("label", sa.String(200), nullable=False),
                sa.Column("labeller", sa.String(200), nullable=True),
            ),
        }
        self._created = False

    def _create_tables(self) -> None:
        """The tables, created if missing; a predictions table from before the `outputs` or
        `batch` column gets it (its other columns are unchanged: binary records fill them
        all; older rows read `batch` as false)."""
        if not self._created:
            import sqlalchemy as sa

            self.metadata.create_all(self.engine)
            added = {
                "predictions": {
                    "outputs": "TEXT",
                    "batch": "BOOLEAN",
                    "caller": "VARCHAR(200)",
                    "explained": "BOOLEAN",
                },
                "feedback": {"labeller": "VARCHAR(200)"},
            }
            inspector = sa.inspect(self.engine)
            for table, kinds in added.items():
                columns = {column["name"] for column in inspector.get_columns(table)}
                for name, kind in kinds.items():
                    if name not in columns:
                        with self.engine.begin() as connection:
                            connection.execute(
                                sa.text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                            )
            self._created = True

    def refuses(self, error: Exception) -> bool:
        import sqlalchemy as sa

        self._created = False  # after any failure, check the tables again on the next write
        return isinstance(error, sa.exc.IntegrityError | sa.exc.DataError)

    @staticmethod
    def _rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {
                **record,
                "features": json.dumps(record["features"], default=str),
                "outputs": json.dumps(record["outputs"]) if record.get("outputs") else None,
                "simulated": bool(record.get("simulated", False)),
                "batch": bool(record.get("batch", False)),
                "explained": bool(record.get("explained", False)),
                "caller": record.get("caller"),
            }
            if "features" in record
            else {**record, "labeller": record.get("labeller")}
            for record in records
        ]

    def write(self, table: Table, records: list[dict[str, Any]]) -> None:
        self._create_tables()
        with self.engine.begin() as connection:
            connection.execute(self.tables[table].insert(), self._rows(records))

    def write_missing(self, table: Table, records: list[dict[str, Any]]) -> None:
        import sqlalchemy as sa

        self._create_tables()
        sql_table = self.tables[table]
        key = IDENTITY[table]
        with self.engine.begin() as connection:
            for start in range(0, len(records), self.CHUNK):
                chunk = records[start : start + self.CHUNK]
                ids = {record["prediction_id"] for record in chunk}
                stored = {
                    tuple(row)
                    for row in connection.execute(
                        sa.select(*(sql_table.c[name] for name in key)).where(
                            sql_table.c.prediction_id.in_(ids)
                        )
                    )
                }
                new: dict[tuple[Any, ...], dict[str, Any]] = {}
                for record in chunk:
                    identity = tuple(record[name] for name in key)
                    if identity not in stored:
                        new.setdefault(identity, record)
                if new:
                    connection.execute(sql_table.insert(), self._rows(list(new.values())))

    def _read(self, table: Table) -> pd.DataFrame:
        import sqlalchemy as sa

        self._create_tables()
        query = sa.select(*(self.tables[table].c[name] for name in COLUMNS[table]))
        with self.engine.connect() as connection:
            return pd.read_sql_query(query, connection)


def open_sink(target: str | None = None, base_dir: Path | str | None = None) -> PredictionSink:
    """The sink for `target` (a directory or a database URL); PREDICTION_LOG overrides it.

    A relative `target` (directory or `sqlite:///relative.db`) is taken relative to `base_dir`,
    the project (or bento) directory, not to wherever the server happens to run; the override is
    used as given.
    """
    target = _located(target, ENV_VAR, "serving.prediction_log", base_dir)
    if not target:
        raise ValueError(f"no prediction log configured: set serving.prediction_log or {ENV_VAR}")
    return SqlSink(target) if source_kind(target) == "database" else DirectorySink(target)


def open_spool(target: str | None = None, base_dir: Path | str | None = None) -> Spool:
    """The spool directory `target`; PREDICTION_SPOOL overrides it (taken as open_sink does)."""
    target = _located(target, SPOOL_ENV_VAR, "serving.prediction_spool", base_dir)
    if not target or source_kind(target) != "file":
        raise ValueError(
            f"serving.prediction_spool (or {SPOOL_ENV_VAR}) must be a local directory, got"
            f" {target!r}"
        )
    return Spool(target)


def _located(target: str | None, env_var: str, key: str, base_dir: Path | str | None) -> str | None:
    override = os.environ.get(env_var)
    if override:
        return resolve(override, key=env_var)
    if target:
        target = resolve(target, key=key)
        if base_dir is not None:
            target = _anchored(target, Path(base_dir))
    return target


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


class Spool:
    """Records the sink could not take, on local disk until it can.

    Each process appends to a file of its own (`spool-<pid>-<random>.jsonl`) and holds an
    exclusive lock on it for as long as it runs; the lock dies with the process, however it
    ends. So a file nobody holds belongs to a process that is gone: whoever replays next (the
    same service restarted, or another worker) takes it over. Appends are fsync'd before they
    return; an append that fails is cut back off, so the file never holds half a record
    followed by good ones.
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.pending = 0  # records in this process's own file
        self._own: Path | None = None
        self._handle: Any = None

    def append(self, table: Table, records: list[dict[str, Any]]) -> None:
        lines = _json_lines([{"table": table, "record": record} for record in records])
        _durable_append(self._own_file(), lines.encode())
        self.pending += len(records)

    def _own_file(self) -> Any:
        if self._handle is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"spool-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
            # Locked under a name replays do not look at, then renamed (the lock stays with the
            # file): another process never sees it unlocked, so never takes it as an orphan.
            hidden = self.directory / f".{name}.new"
            handle = open(hidden, "ab+")  # noqa: SIM115 (held while we run)
            fcntl.flock(handle, fcntl.LOCK_EX)
            path = self.directory / name
            os.rename(hidden, path)
            _fsync_directory(self.directory)
            self._own, self._handle = path, handle
        return self._handle

    def orphans(self) -> bool:
        """Whether another, ended process left records here."""
        return any(path != self._own for path in self.directory.glob("spool-*.jsonl"))

    def replay(self, sink: PredictionSink, batch: int = 1_000, *, quiet: bool = False) -> int:
        """Move every record this process may take (its own and the orphans') into the sink;
        how many. A file leaves the spool only once all its records are stored; a failure
        raises with the rest still spooled. Each replayed file is logged as a warning (records
        that waited for the sink), unless `quiet` (records staged on purpose: batch scoring)."""
        moved = 0
        for path in sorted(self.directory.glob("spool-*.jsonl")):
            if path == self._own:
                moved += self._replay_file(path, sink, batch, quiet)
                self._handle.truncate(0)
                self._handle.seek(0)
                self.pending = 0
                continue
            with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as held:
                try:
                    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live process's own file
                if os.fstat(held.fileno()).st_nlink == 0:
                    continue  # replayed and removed by another process meanwhile
                moved += self._replay_file(path, sink, batch, quiet)
                path.unlink()
        return moved

    @staticmethod
    def _replay_file(path: Path, sink: PredictionSink, batch: int, quiet: bool) -> int:
        moved = 0
        pending: dict[Table, list[dict[str, Any]]] = {"predictions": [], "feedback": []}
        for line in _read_json_lines(path):
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

    def close(self) -> None:
        """Release this process's file; remove it when empty (else the next start replays it)."""
        if self._handle is None:
            return
        empty = self.pending == 0
        if empty and self._own is not None:
            with contextlib.suppress(FileNotFoundError):
                self._own.unlink()
        self._handle.close()
        self._handle = None


class LogUnavailable(Exception):
    """Records that neither the sink nor the spool could take: their request must not be
    answered as if they were logged."""


class FeedbackRefused(Exception):
    """A label the log does not take; str() is a sentence safe to show the client."""


class UnknownPrediction(FeedbackRefused):
    """The label's prediction id was never recorded."""


class AlreadyLabelled(FeedbackRefused):
    """The prediction has a label already (a second one is refused, not a correction)."""


Receipt = Future[None]  # resolves to None once the records are durable; LogUnavailable otherwise
_STOP = object()


class PredictionLog:
    """One writer thread in front of a sink and a spool: `log_predictions` / `log_feedback`
    return a `Receipt` that resolves once the records are durable, in the sink or, while the
    sink fails, in the spool.

    The writer takes everything queued in one go (a group commit: one transaction or one fsync
    for many requests). After a sink failure it spools without trying the sink on every batch,
    and every `retry_interval` seconds tries to replay the spool; once that succeeds, records go
    straight to the sink again. On start it replays what a crashed run left in the spool; on
    close it writes what is queued and tries the spool once more (what stays is replayed at the
    next start). A full queue (the sink slower than traffic for `put_timeout`) refuses at once.
    """

    def __init__(
        self,
        sink: PredictionSink,
        spool: Spool | None = None,
        max_pending: int = 1_000,
        put_timeout: float = 1.0,
        retry_interval: float = 1.0,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self.refused = 0  # records neither the sink nor the spool took, or the queue had no room
        self.spooled = 0  # records written to the spool
        self.replayed = 0  # records moved from the spool into the sink
        self._put_timeout = put_timeout
        self._retry_interval = retry_interval
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._sink_error: str | None = None  # why the sink last failed; None while it works
        self._unreplayed = False  # a replay failed: spool files (maybe others') still wait
        self._last_attempt = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def log_predictions(self, records: list[dict[str, Any]]) -> Receipt:
        return self._put("predictions", records)

    def log_feedback(self, record: dict[str, Any]) -> Receipt:
        return self._put("feedback", [record])

    def _put(self, table: Table, records: list[dict[str, Any]]) -> Receipt:
        if self._closed:
            raise RuntimeError("the prediction log is closed")
        receipt: Receipt = Future()
        # Running: a waiter that gives up (a request timed out, a client gone) cannot cancel
        # it, which would cancel it for every request of its batch and stop the writer.
        receipt.set_running_or_notify_cancel()
        try:
            self._queue.put((table, records, receipt), timeout=self._put_timeout)
        except queue.Full:
            self.refused += len(records)
            logger.error("prediction log is full: refused %d %s record(s)", len(records), table)
            receipt.set_exception(
                LogUnavailable("the prediction log is not keeping up: retry shortly")
            )
        return receipt

    def flush(self) -> None:
        """Wait until everything queued so far is durable."""
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

    def _run(self) -> None:
        self._replay()  # what an earlier, crashed run left behind
        while True:
            items = self._next_items()
            entries = [item for item in items if item is not _STOP]
            try:
                for table in ("predictions", "feedback"):
                    batch = [entry for entry in entries if entry[0] == table]
                    if batch:
                        self._commit(table, batch)
                if self._replay_due():
                    self._replay()
            except Exception as error:  # a bug must not stop the writer: refuse, carry on
                logger.exception("the prediction log's writer failed")
                for _, records, receipt in entries:
                    if not receipt.done():
                        self.refused += len(records)
                        receipt.set_exception(LogUnavailable(f"the prediction log failed: {error}"))
            finally:
                for _ in items:
                    self._queue.task_done()
            if len(entries) < len(items):  # _STOP: last chance for the spool, then stop
                self._replay()
                if self.spool is not None:
                    self.spool.close()
                return

    def _next_items(self) -> list[Any]:
        """Everything queued, at least one item; while spooled records wait for the sink, the
        wait is cut every `retry_interval` to try a replay."""
        while True:
            try:
                timeout = self._retry_interval if self._spool_waits() else None
                items = [self._queue.get(timeout=timeout)]
                break
            except queue.Empty:
                self._replay()
        while len(items) < 1_000:  # a group commit: everything queued meanwhile
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _spool_waits(self) -> bool:
        """Whether spooled records (this process's, or others' after a failed replay) wait."""
        return self._unreplayed or (self.spool is not None and self.spool.pending > 0)

    def _replay_due(self) -> bool:
        due = time.monotonic() - self._last_attempt >= self._retry_interval
        return self._spool_waits() and due

    def _commit(
        self, table: Table, batch: list[tuple[Table, list[dict[str, Any]], Receipt]]
    ) -> None:
        records = [record for _, entry_records, _ in batch for record in entry_records]
        refusal = self._store(table, records)
        for _, entry_records, receipt in batch:
            if refusal is None:
                receipt.set_result(None)
            else:
                self.refused += len(entry_records)
                receipt.set_exception(LogUnavailable(refusal))

    def _store(self, table: Table, records: list[dict[str, Any]]) -> str | None:
        """Store in the sink or else the spool; None, or why neither took the records. A sink
        that failed is tried again only every `retry_interval` (a dead database would otherwise
        cost every batch its connection timeout)."""
        retry_due = time.monotonic() - self._last_attempt >= self._retry_interval
        if self.spool is None or self._sink_error is None or retry_due:
            try:
                self.sink.write(table, records)
                self._sink_answered()
                return None
            except Exception as error:
                if self.sink.refuses(error):  # no replay could store them: refuse now
                    logger.error(
                        "the prediction log's sink refused %d %s record(s): %s",
                        len(records),
                        table,
                        error,
                    )
                    return f"the prediction log refused this record: {type(error).__name__}"
                self._sink_failed(error)
        if self.spool is None:
            logger.error(
                "could not write %d %s record(s): %s", len(records), table, self._sink_error
            )
            return f"the prediction log cannot record this: {self._sink_error}"
        try:
            self.spool.append(table, records)
        except Exception as error:
            logger.exception("could not spool %d %s record(s)", len(records), table)
            return (
                f"the prediction log cannot record this: the sink failed ({self._sink_error})"
                f" and so did the spool ({type(error).__name__}: {error})"
            )
        self.spooled += len(records)
        return None

    def _sink_failed(self, error: Exception) -> None:
        first_line = str(error).splitlines()[0] if str(error) else ""
        if self._sink_error is None:
            logger.error(
                "the prediction log's sink failed (%s: %s); spooling until it answers again",
                type(error).__name__,
                first_line,
            )
        self._sink_error = f"{type(error).__name__}: {first_line}"
        self._last_attempt = time.monotonic()

    def _replay(self) -> None:
        """Try to move the spool into the sink; the sink counts as working again once it did."""
        if self.spool is None or (self.spool.pending == 0 and not self.spool.orphans()):
            return
        self._last_attempt = time.monotonic()
        try:
            self.replayed += self.spool.replay(self.sink)
        except Exception as error:
            self._unreplayed = True
            self._sink_failed(error)
            return
        self._unreplayed = False
        self._sink_answered()

    def _sink_answered(self) -> None:
        if self._sink_error is not None:
            logger.warning("the prediction log's sink answers again")
        self._sink_error = None
