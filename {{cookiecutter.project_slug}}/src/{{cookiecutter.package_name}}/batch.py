"""Batch scoring: `python -m {{ cookiecutter.package_name }} predict --input SOURCE --output DEST`
(`make predict`) scores a table of any size with the registered model, the one the service
serves.

- SOURCE is anything the ingest loader reads (a CSV or Parquet file, an http(s) URL, a database
  URL with `--query`), read `batch.chunk_rows` rows at a time, so memory stays flat.
- Values are cleaned as curate cleans the pipeline's source (`curate.missing_tokens` made
  missing, `data.drop_columns` dropped), row by row: no row is dropped.
- Each row is checked by the schema's rules for a request record (`Schema.checked_rows`): a row
  the service would refuse is never scored; it goes to the rejects (`<DEST>.rejects.csv`, or the
  table `<table>_rejects`) with its 1-based row number, its key columns and every reason. More
  rejects than `batch.max_reject_share` of the rows fail the run; the rejects are kept, to read.
- DEST is a CSV or Parquet file, or a table of a database (`--output URL --output-table NAME`).
  Each output row: the `batch.key_columns`, a prediction id, the decision (`label`), the model's
  outputs as the service answers them (the probability, each class's, or nothing more for a
  number) and the model version. DEST appears only whole, at the end: a file is written beside
  and renamed over it, a table is filled as `<table>__partial_<random>` and renamed; an existing
  DEST is replaced only with `--overwrite`.
- With `batch.log_predictions`, the scored rows also go to the prediction log, marked `batch`,
  under the same prediction ids, once the output is whole (staged on disk meanwhile): monitoring
  sees them, and their true labels can come back through the service's /feedback as for served
  predictions.
- With `--explain`, each output row also gets its decision's explanation (explanations.py):
  `base` and one `contribution[<input>]` column per model input, adding up to the output
  explained (binary: toward the positive class; multiclass: toward the class decided).

The model's inputs reach the scikit-learn pipeline as whole columns (the service's fast path is
for small requests; the two agree to 1e-6, which the tests check).
"""

from __future__ import annotations

import binascii
import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from {{ cookiecutter.package_name }}.bundle import ModelBundle, load_bundle
from {{ cookiecutter.package_name }}.config import Params
from {{ cookiecutter.package_name }}.errors import ConfigError, DataSourceError, PipelineError
from {{ cookiecutter.package_name }}.io import (
    read_chunks,
    redact,
    resolve,
    source_kind,
    stage_outputs,
)
from {{ cookiecutter.package_name }}.pipeline.curate import clean_values
from {{ cookiecutter.package_name }}.privacy import LogPolicy
from {{ cookiecutter.package_name }}.serving.prediction_log import (
    Redact,
    Spool,
    decided_records,
    open_sink,
    open_spool,
)
from {{ cookiecutter.package_name }}.serving.store import BUNDLE_FILE, registered_files
from {{ cookiecutter.package_name }}.task import output_rows

if TYPE_CHECKING:
    from {{ cookiecutter.package_name }}.explanations import Explainer

FILE_SUFFIXES = (".csv", ".parquet", ".pq")
TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ROW, PROBLEMS = "row", "problems"  # the rejects' own columns
Append = Callable[[pd.DataFrame], None]


@dataclass(frozen=True)
class BatchRun:
    """What one run did."""

    rows: int
    scored: int
    rejected: int
    output: str
    rejects: str
    model_version: str
    explains: str = ""  # what the explanations' contributions add up to, if any
    logged: str = ""  # where the scored rows were logged, if they were

    def describe(self) -> str:
        explained = f"; each row's contributions explain {self.explains}" if self.explains else ""
        logged = f"; the scored rows {self.logged}" if self.logged else ""
        return (
            f"scored {self.scored} of {self.rows} rows into {self.output} with {self.model_version}"
            f"; {self.rejected} rejected (listed in {self.rejects}){logged}{explained}"
        )


def rejects_location(output: str, table: str | None) -> tuple[str, str | None]:
    """Where a run's rejects go: beside a file DEST, or a table beside a database one."""
    if table:
        return output, f"{table}_rejects"
    path = Path(output)
    return str(path.with_name(f"{path.stem}.rejects.csv")), None


def run(
    params: Params,
    source: str,
    output: str,
    *,
    query: str | None = None,
    output_table: str | None = None,
    overwrite: bool = False,
    explain: bool = False,
) -> BatchRun:
    """Score `source` into `output` (see the module docstring); PipelineError when the rejects
    pass `batch.max_reject_share`, after the rejects are written and with no output."""
    settings = params.batch
    tag, directory = registered_files()
    bundle = load_bundle(directory / BUNDLE_FILE)
    explainer = None
    if explain:
        from {{ cookiecutter.package_name }}.explanations import Explainer

        explainer = Explainer(bundle)
    clash = sorted(set(settings.key_columns) & {*answer_columns(bundle, explainer), ROW, PROBLEMS})
    if clash:
        raise ConfigError(f"batch.key_columns: {clash} would clash with the output's own columns")
    rejects, rejects_table = rejects_location(output, output_table)
    text = (*bundle.schema.categorical_features, *settings.key_columns)
    chunks = (  # each value cleaned as curate cleans the pipeline's source (no row dropped)
        clean_values(chunk, params.curate.missing_tokens, params.data.drop_columns, text)[0]
        for chunk in read_chunks(source, query, settings.chunk_rows, text_columns=text)
    )
    refused: TooManyRejects | None = None
    logged = ""
    # the log's records wait beside the service's spool (PREDICTION_SPOOL overrides it)
    staging = open_spool(params.serving.prediction_spool, base_dir=Path.cwd()).directory.parent
    staging.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix=".batch-log-", dir=staging) as staged,
        destination(rejects, rejects_table, overwrite=True) as reject,
    ):
        log = Spool(staged) if settings.log_predictions else None
        # the log keeps of each row what schema.yaml's `log:` says, as the service's log does
        policy = (
            LogPolicy.load(bundle.schema, params.serving.privacy.key_file, base_dir=Path.cwd())
            if log is not None
            else None
        )
        try:  # the rejects are kept when the output is refused for them
            with destination(output, output_table, overwrite=overwrite) as append:
                counts = score_all(
                    bundle,
                    chunks,
                    settings.key_columns,
                    tag,
                    log,
                    append,
                    reject,
                    explainer,
                    redact=None if policy is None else policy.apply,
                )
                share = counts["rejected"] / max(counts["rows"], 1)
                if share > settings.max_reject_share:
                    raise TooManyRejects(
                        f"{counts['rejected']} of {counts['rows']} rows ({share:.1%}) break the"
                        " schema, more than batch.max_reject_share"
                        f" {settings.max_reject_share:.1%}: no output written; the rows and"
                        f" reasons are in {shown(rejects, rejects_table)}"
                    )
        except TooManyRejects as error:
            refused = error
        if log is not None and not refused:
            logged = log_batch(log, params)
    if refused:
        raise refused
    return BatchRun(
        rows=counts["rows"],
        scored=counts["scored"],
        rejected=counts["rejected"],
        output=shown(output, output_table),
        rejects=shown(rejects, rejects_table),
        model_version=tag,
        explains=explainer.explains() if explainer else "",
        logged=logged,
    )


def log_batch(staged: Spool, params: Params) -> str:
    """The scored rows, staged while the run went on, into the prediction log now that the
    output is whole (a failed run logs nothing); where they went, in words. If the log's sink
    fails, they wait in the service's spool (`serving.prediction_spool`), which the service
    replays into the log when it next starts or finds the sink answering."""
    spool = open_spool(params.serving.prediction_spool, base_dir=Path.cwd())
    try:
        sink = open_sink(params.serving.prediction_log, base_dir=Path.cwd())
        staged.replay(sink, 10_000, quiet=True)
    except Exception as error:  # any sink failure: the records go where replays find them
        staged.close()
        spool.directory.mkdir(parents=True, exist_ok=True)
        for path in staged.directory.glob("spool-*.jsonl"):
            os.replace(path, spool.directory / path.name)
        print(
            f"the prediction log refused the batch's records ({error}); they wait in"
            f" {spool.directory} and go into the log at its next replay",
            file=sys.stderr,
        )
        return f"wait in {spool.directory} for the prediction log"
    staged.close()
    return "are in the prediction log (marked batch)"


def score_all(
    bundle: ModelBundle,
    chunks: Iterator[pd.DataFrame],
    keys: list[str],
    tag: str,
    log: Spool | None,
    append: Append,
    reject: Append,
    explainer: Explainer | None = None,
    redact: Redact | None = None,
) -> dict[str, int]:
    """Every chunk scored into `append` and its rejects into `reject`; the counts."""
    counts = {"rows": 0, "scored": 0, "rejected": 0}
    for chunk in chunks:
        scored, rejected = score_chunk(
            bundle, chunk, keys, counts["rows"], tag, log, explainer, redact=redact
        )
        for write, rows, count in ((append, scored, "scored"), (reject, rejected, "rejected")):
            if len(rows):  # an empty frame first would fix a Parquet column's type as null
                write(rows)
                counts[count] += len(rows)
        counts["rows"] += len(chunk)
    if not counts["scored"]:  # none: the output still gets its columns
        append(pd.DataFrame(columns=[*keys, *answer_columns(bundle, explainer)]))
    if not counts["rejected"]:
        reject(pd.DataFrame(columns=[ROW, *keys, PROBLEMS]))
    return counts


class TooManyRejects(PipelineError):
    """The rejects passed the limit: the rejects are written, the output is not."""


def answer_columns(bundle: ModelBundle, explainer: Explainer | None = None) -> list[str]:
    """The output's columns after the key columns: what the service answers for a record,
    then its explanation's (with an explainer)."""
    answer = ["prediction_id", "label", *bundle.task.output_names(), "model_version"]
    if explainer is None:
        return answer
    return [*answer, "base", *(f"contribution[{name}]" for name in bundle.features)]


def score_chunk(
    bundle: ModelBundle,
    chunk: pd.DataFrame,
    keys: list[str],
    offset: int,
    tag: str,
    log: Spool | None,
    explainer: Explainer | None = None,
    redact: Redact | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One chunk's output rows and rejects; its scored rows staged for the log in `log`."""
    schema = bundle.schema
    absent = [
        name
        for name in (*schema.feature_names, *keys)
        if name not in chunk.columns and name not in bundle.measured_only
    ]
    if absent:
        raise DataSourceError(
            f"the input has no column {', '.join(absent)}: every feature of schema.yaml (and each"
            " of batch.key_columns) is needed"
        )
    features, problems = schema.checked_rows(chunk, optional=bundle.measured_only)
    bad = (problems != "").to_numpy()
    row_numbers = np.arange(offset + 1, offset + len(chunk) + 1)
    rejected = pd.DataFrame(
        {
            ROW: row_numbers[bad],
            **{key: chunk[key].to_numpy()[bad] for key in keys if key in chunk},
            PROBLEMS: problems.to_numpy()[bad],
        }
    )
    good = features[~bad]
    outputs = bundle.outputs(good) if len(good) else np.zeros((0,))
    decisions = bundle.decide(outputs) if len(good) else np.zeros((0,))
    labels = [bundle.label(decision) for decision in decisions]
    ids = prediction_ids(len(good))
    columns = {name: values for name, values in bundle.task.output_columns(outputs).items()}
    scored = pd.DataFrame(
        {
            **{key: chunk[key].to_numpy()[~bad] for key in keys if key in chunk},
            "prediction_id": ids,
            "label": pd.Series(labels, dtype=object if schema.target_values else "float64"),
            **{name: np.asarray(values, dtype=np.float64) for name, values in columns.items()},
            "model_version": tag,
            **(explanation_columns(explainer, good, decisions) if explainer else {}),
        },
        columns=[*keys, *answer_columns(bundle, explainer)],
    )
    if log is not None and len(good):
        records = cast(
            list[dict[str, Any]], good.astype(object).where(good.notna(), None).to_dict("records")
        )
        logged = decided_records(
            records,
            labels,
            output_rows(columns, len(good)),
            tag,
            [False] * len(good),
            batch=True,
            prediction_ids=ids,
            callers=["batch"] * len(good),
            redact=redact,
        )
        log.append("predictions", logged)
    return scored, rejected


def explanation_columns(
    explainer: Explainer, good: pd.DataFrame, decisions: np.ndarray
) -> dict[str, np.ndarray]:
    """The scored rows' explanations as output columns."""
    if not len(good):
        return {}
    found = explainer.explain(explainer.table_matrix(good), decisions)
    inputs = explainer.bundle.features
    return {
        "base": found.base,
        **{f"contribution[{name}]": found.contributions[:, i] for i, name in enumerate(inputs)},
    }


def prediction_ids(count: int) -> list[str]:
    """`count` random (version 4) UUIDs as text, made in bulk: uuid.uuid4() one by one would be
    a fifth of the time a chunk takes to score."""
    raw = np.frombuffer(os.urandom(16 * count), dtype=np.uint8).reshape(count, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = binascii.hexlify(raw.tobytes()).decode()
    return [
        f"{t[:8]}-{t[8:12]}-{t[12:16]}-{t[16:20]}-{t[20:32]}"
        for t in (text[i : i + 32] for i in range(0, 32 * count, 32))
    ]


def shown(location: str, table: str | None) -> str:
    """A destination as messages show it (secrets hidden)."""
    return f"{redact(location)} (table {table})" if table else location


@contextlib.contextmanager
def destination(location: str, table: str | None, *, overwrite: bool) -> Iterator[Append]:
    """Appends chunks to `location`, which shows them only when the block succeeds; an existing
    file or table is refused unless `overwrite`."""
    if source_kind(location) == "database":
        with _table_destination(location, table, overwrite) as append:
            yield append
        return
    if table:
        raise ConfigError(f"--output-table is for a database output, not {location}")
    with _file_destination(Path(location), overwrite) as append:
        yield append


@contextlib.contextmanager
def _file_destination(path: Path, overwrite: bool) -> Iterator[Append]:
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise ConfigError(
            f"cannot write '{path}': the output is a {', '.join(FILE_SUFFIXES)} file, or a"
            " database URL with --output-table"
        )
    if path.exists() and not overwrite:
        raise PipelineError(
            f"{path} exists: pass --overwrite (make predict OVERWRITE=1) to replace it"
        )
    with stage_outputs() as staged:  # written beside, renamed over the target on success
        temporary = staged.path(path)
        if suffix == ".csv":
            with open(temporary, "w", newline="") as handle:
                header = [True]

                def append_csv(frame: pd.DataFrame) -> None:
                    if header[0] or len(frame):
                        frame.to_csv(handle, header=header[0], index=False)
                        header[0] = False

                yield append_csv
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        writers: list[pq.ParquetWriter] = []

        def append_parquet(frame: pd.DataFrame) -> None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if not writers:
                writers.append(pq.ParquetWriter(temporary, table.schema))
            writers[0].write_table(table.cast(writers[0].schema))

        try:
            yield append_parquet
        finally:
            for writer in writers:
                writer.close()


@contextlib.contextmanager
def _table_destination(url: str, table: str | None, overwrite: bool) -> Iterator[Append]:
    """Chunks go into a staging table (`<table>__partial_<random>`, one short transaction
    each, so other writers of the database are not held up), renamed to `table` in one
    transaction at the end; dropped if the block fails."""
    import secrets

    import sqlalchemy as sa

    if not table or not TABLE_NAME.fullmatch(table):
        raise ConfigError(
            f"the output {redact(url)} is a database: name its table with --output-table"
            " (letters, digits, underscores)"
        )
    engine = sa.create_engine(resolve(url, key="--output"))
    staging = f"{table}__partial_{secrets.token_hex(4)}"

    def refuse_existing(connection: sa.Connection) -> None:
        if sa.inspect(connection).has_table(table):
            if not overwrite:
                raise PipelineError(
                    f"table {table} exists in {redact(url)}: pass --overwrite"
                    " (make predict OVERWRITE=1) to replace it"
                )
            sa.Table(table, sa.MetaData()).drop(connection)

    def append_rows(frame: pd.DataFrame) -> None:
        with engine.begin() as connection:
            frame.to_sql(staging, connection, if_exists="append", index=False)

    try:
        with engine.connect() as connection:  # refused before any work
            if sa.inspect(connection).has_table(table) and not overwrite:
                refuse_existing(connection)
        try:
            yield append_rows
        except BaseException:
            with contextlib.suppress(Exception), engine.begin() as connection:
                sa.Table(staging, sa.MetaData()).drop(connection, checkfirst=True)
            raise
        with engine.begin() as connection:  # published in one transaction
            refuse_existing(connection)
            quote = connection.dialect.identifier_preparer.quote
            connection.execute(sa.text(f"ALTER TABLE {quote(staging)} RENAME TO {quote(table)}"))
    finally:
        engine.dispose()
