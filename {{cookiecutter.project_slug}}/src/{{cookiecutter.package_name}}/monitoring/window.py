"""The two sides of a monitoring run: the reference (the reference stage's output) and the
current window, read from the service's prediction log (joined with its feedback) or from any
source the ingest loader reads, cut to `monitor.window` and sampled above `monitor.max_rows`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from {{ cookiecutter.package_name }}.bundle import ModelBundle
from {{ cookiecutter.package_name }}.config import Params, Paths
from {{ cookiecutter.package_name }}.errors import PipelineError
from {{ cookiecutter.package_name }}.io import load_table, redact
from {{ cookiecutter.package_name }}.monitoring.frames import (
    LABELLER,
    PREDICTION,
    SIMULATED,
    TIMESTAMP,
    labelled,
    scored_frame,
    typed_features,
)
from {{ cookiecutter.package_name }}.pipeline.curate import curate
from {{ cookiecutter.package_name }}.serving.prediction_log import join_feedback, open_sink

PREDICTION_LOG = "prediction_log"


@dataclass(frozen=True)
class WindowInfo:
    """Where the current rows came from and what was done to them."""

    source: str
    rows: int  # in the window, before sampling
    compared: int  # rows in the report (sampled down to monitor.max_rows)
    labelled: int  # of the compared rows, those with a true label
    simulated: int
    unmatched_feedback: int  # feedback whose prediction id is not in the log
    window: str

    def dict(self) -> dict[str, object]:
        return asdict(self)


def load_reference(bundle: ModelBundle) -> pd.DataFrame:
    if not Paths.reference_data.is_file():
        raise PipelineError(
            f"{Paths.reference_data} is missing: run the pipeline first (make pipeline)"
        )
    reference = pd.read_csv(Paths.reference_data)
    frame = typed_features(reference, bundle.schema)
    for column in (bundle.target, PREDICTION, *bundle.task.output_names()):
        frame[column] = reference[column]
    return frame


def _from_prediction_log(params: Params, bundle: ModelBundle) -> tuple[pd.DataFrame, int]:
    sink = open_sink(params.serving.prediction_log, base_dir=Path.cwd())
    predictions = sink.read_predictions()
    feedback = sink.read_feedback()
    if predictions.empty:
        empty = scored_frame(bundle, pd.DataFrame(columns=bundle.schema.feature_names))
        return empty.assign(**{TIMESTAMP: pd.Series(dtype="datetime64[ns, UTC]")}), len(feedback)
    joined, unmatched = join_feedback(predictions, feedback)
    if "explained" in joined:  # /explain's decisions often repeat /predict's: left out of the
        # window, unless one was labelled (its outcome is evidence like any other)
        asked = joined["explained"] & joined["true_label"].isna()
        joined = joined[~asked].reset_index(drop=True)
    frame = typed_features(joined, bundle.schema)
    frame[bundle.target] = joined["true_label"]
    frame[PREDICTION] = joined["label"]
    for name in bundle.task.output_names():  # binary: `probability`, its own log column
        frame[name] = joined.get(name, np.nan)
    frame[LABELLER] = joined["prediction_id"].map(_newest_labeller(feedback))
    frame[TIMESTAMP] = joined["timestamp"]
    if SIMULATED in joined:
        frame[SIMULATED] = joined[SIMULATED].fillna(False).astype(bool)
    return frame, unmatched


def _newest_labeller(feedback: pd.DataFrame) -> pd.Series:
    """Who supplied each prediction's newest label, by prediction id (join_feedback's label)."""
    newest = feedback.sort_values("timestamp").drop_duplicates("prediction_id", keep="last")
    names = newest[LABELLER] if LABELLER in newest else pd.Series(None, index=newest.index)
    return pd.Series(names.to_numpy(dtype=object), index=newest["prediction_id"].to_numpy())


def _from_source(params: Params, bundle: ModelBundle) -> pd.DataFrame:
    monitor = params.monitor
    table = load_table(monitor.current, monitor.query)
    # A monitoring extract need not carry the identifiers that data.drop_columns removes.
    dropped = [c for c in params.data.drop_columns if c in table.columns and c != TIMESTAMP]
    table, _ = curate(table, params.curate.missing_tokens, dropped)
    target = table.get(bundle.target)
    frame = scored_frame(bundle, table, target)
    if LABELLER in table:
        frame[LABELLER] = table[LABELLER].to_numpy(dtype=object)
    if TIMESTAMP in table:
        frame[TIMESTAMP] = pd.to_datetime(table[TIMESTAMP].values, utc=True)
    return frame


def sample(frame: pd.DataFrame, rows: int, seed: int, strata: pd.Series | None) -> pd.DataFrame:
    """At most `rows` rows, seeded; stratified by `strata` (the true label) when given."""
    if len(frame) <= rows:
        return frame
    if strata is None:
        return frame.sample(n=rows, random_state=seed).sort_index()
    share = rows / len(frame)
    keys = strata.astype("string").fillna("<unlabelled>")
    parts = [
        group.sample(n=max(1, round(len(group) * share)), random_state=seed)
        for _, group in frame.groupby(keys, sort=True)
    ]
    return pd.concat(parts).sort_index().head(rows)


def load_current(
    params: Params, bundle: ModelBundle, now: datetime
) -> tuple[pd.DataFrame, WindowInfo]:
    """The current window in monitoring's layout, and what it holds."""
    monitor = params.monitor
    unmatched = 0
    if monitor.current == PREDICTION_LOG:
        frame, unmatched = _from_prediction_log(params, bundle)
        source = "prediction log"
    else:
        frame = _from_source(params, bundle)
        source = redact(monitor.current)
    limits = []
    if TIMESTAMP in frame:
        frame = frame.sort_values(TIMESTAMP, kind="stable")
        if monitor.window.last_days is not None:
            since = pd.Timestamp(now - timedelta(days=monitor.window.last_days))
            frame = frame[frame[TIMESTAMP] >= since]
            limits.append(f"last {monitor.window.last_days:g} days")
    if monitor.window.last_rows is not None:
        frame = frame.tail(monitor.window.last_rows)
        limits.append(f"newest {monitor.window.last_rows} rows")
    frame = frame.reset_index(drop=True)
    in_window = len(frame)
    known = labelled(frame, bundle)
    frame = sample(
        frame, monitor.max_rows, monitor.seed, frame[bundle.target] if known.any() else None
    )
    info = WindowInfo(
        source=source,
        rows=in_window,
        compared=len(frame),
        labelled=int(labelled(frame, bundle).sum()),
        simulated=int(frame[SIMULATED].sum()) if SIMULATED in frame else 0,
        unmatched_feedback=unmatched,
        window=", ".join(limits) or "all rows",
    )
    return frame.reset_index(drop=True), info
