"""The SQL sink: two tables in any SQLAlchemy database, for logs shared by many replicas."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .files import PRIVATE_FILE, open_private, private_directory
from .records import COLUMNS, IDENTITY, TABLES, Table
from .sink import PredictionSink, Recorded

logger = logging.getLogger(__name__)

# Columns added to tables an older service created (their older rows read them as empty).
ADDED: dict[Table, dict[str, str]] = {
    "predictions": {"outputs": "TEXT", "batch": "BOOLEAN", "caller": "VARCHAR(200)",
                    "explained": "BOOLEAN"},
    "feedback": {"labeller": "VARCHAR(200)"},
}  # fmt: skip
ONE_LABEL = "uq_feedback_prediction_id"  # the unique index: one label per prediction


def cutoff_text(cutoff: datetime) -> str:
    """`cutoff` as text that compares with the stored timestamps (UTC ISO 8601 text, so text
    order is time order): no offset, and no fraction when it is whole seconds, so that a
    timestamp at the cutoff itself compares as not older."""
    utc = cutoff.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds")


class SqlSink(PredictionSink):
    """Two tables in any SQLAlchemy database. The tables are created on the first write, so a
    service starts (and spools) while its database is down."""

    CHUNK = 500  # prediction ids per statement when asking which ones are stored

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa  # imported here: the directory sink needs no database driver

        self.url = url
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            database = Path(url.removeprefix("sqlite:///"))
            private_directory(database.parent)
            if not database.exists():  # SQLite's journals take the database file's mode
                os.close(open_private(database, os.O_WRONLY))
            elif database.stat().st_mode & 0o777 != PRIVATE_FILE:
                with contextlib.suppress(PermissionError):
                    database.chmod(PRIVATE_FILE)
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
                sa.Column("prediction_id", sa.String(36), nullable=False),  # ONE_LABEL
                sa.Column("timestamp", sa.String(40), nullable=False, index=True),
                sa.Column("label", sa.String(200), nullable=False),
                sa.Column("labeller", sa.String(200), nullable=True),
            ),
        }
        self._one_label = sa.Index(ONE_LABEL, self.tables["feedback"].c.prediction_id, unique=True)
        self._created = False

    def _create_tables(self) -> None:
        """The tables, created if missing; a table from before a column of ADDED gets it (its
        other columns are unchanged). A feedback table from before the one-label rule gets its
        unique index, unless it holds several labels for a prediction already: then it stays
        without (a warning says so), the writer's check still refuses new second labels, and
        readers take each prediction's newest label."""
        if self._created:
            return
        import sqlalchemy as sa

        self.metadata.create_all(self.engine)
        inspector = sa.inspect(self.engine)
        for table, added in ADDED.items():
            columns = {column["name"] for column in inspector.get_columns(table)}
            for name, kind in added.items():
                if name not in columns:
                    with self.engine.begin() as connection:
                        connection.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {name} {kind}"))
        try:
            self._one_label.create(self.engine, checkfirst=True)
        except sa.exc.IntegrityError:
            logger.warning(
                "the feedback table holds several labels for some predictions: it gets no"
                " unique index (%s); new second labels are still refused",
                ONE_LABEL,
            )
        self._created = True

    def refuses(self, error: Exception) -> bool:
        import sqlalchemy as sa

        self._created = False  # after any failure, check the tables again on the next write
        return isinstance(error, sa.exc.IntegrityError | sa.exc.DataError)

    @staticmethod
    def _rows(table: Table, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Records as rows: every column present (records from older spools lack the newer)."""
        if table == "feedback":
            return [{**record, "labeller": record.get("labeller")} for record in records]
        return [
            {
                **record,
                "features": json.dumps(record["features"], default=str),
                "outputs": json.dumps(record["outputs"]) if record.get("outputs") else None,
                "simulated": bool(record.get("simulated", False)),
                "batch": bool(record.get("batch", False)),
                "caller": record.get("caller"),
                "explained": bool(record.get("explained", False)),
            }
            for record in records
        ]

    def write(self, table: Table, records: list[dict[str, Any]]) -> None:
        self._create_tables()
        with self.engine.begin() as connection:
            connection.execute(self.tables[table].insert(), self._rows(table, records))

    def write_missing(self, table: Table, records: list[dict[str, Any]]) -> None:
        """Records already stored are skipped; so is a label for a prediction that got
        another one meanwhile (the first stored stays; a warning names it)."""
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
                labelled = {identity[0] for identity in stored}
                new: dict[tuple[Any, ...], dict[str, Any]] = {}
                for record in chunk:
                    identity = tuple(record[name] for name in key)
                    if identity in stored or identity in new:
                        continue
                    if table == "feedback":
                        if record["prediction_id"] in labelled:
                            logger.warning(
                                "a spooled second label for prediction %s was not stored:"
                                " it has one already",
                                record["prediction_id"],
                            )
                            continue
                        labelled.add(record["prediction_id"])
                    new[identity] = record
                if new:
                    connection.execute(sql_table.insert(), self._rows(table, list(new.values())))

    def recorded(self, prediction_ids: set[str]) -> Recorded:
        """One keyed query per CHUNK ids (the primary key, and the feedback's index)."""
        import sqlalchemy as sa

        self._create_tables()
        found: dict[str, set[str]] = {table: set() for table in TABLES}
        ids = sorted(prediction_ids)
        with self.engine.connect() as connection:
            for start in range(0, len(ids), self.CHUNK):
                chunk = ids[start : start + self.CHUNK]
                query = sa.union_all(
                    *(
                        sa.select(sa.literal(table).label("kind"), column).where(column.in_(chunk))
                        for table in TABLES
                        for column in [self.tables[table].c.prediction_id]
                    )
                )
                for kind, prediction_id in connection.execute(query):
                    found[kind].add(prediction_id)
        return found["predictions"], found["feedback"]

    def purge(self, cutoff: datetime) -> dict[Table, int]:
        """DELETE ... WHERE timestamp < cutoff, both tables in one transaction."""
        import sqlalchemy as sa

        self._create_tables()
        counts: dict[Table, int] = {}
        with self.engine.begin() as connection:
            for table in TABLES:
                sql_table = self.tables[table]
                deleted = connection.execute(
                    sa.delete(sql_table).where(sql_table.c.timestamp < cutoff_text(cutoff))
                )
                counts[table] = deleted.rowcount
        return counts

    def _read(self, table: Table) -> pd.DataFrame:
        import sqlalchemy as sa

        self._create_tables()
        query = sa.select(*(self.tables[table].c[name] for name in COLUMNS[table]))
        with self.engine.connect() as connection:
            return pd.read_sql_query(query, connection)
