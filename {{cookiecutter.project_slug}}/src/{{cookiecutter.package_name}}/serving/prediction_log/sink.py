"""What every sink offers (`PredictionSink`), and its tables as monitoring reads them."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any

import pandas as pd

from .records import Table

Recorded = tuple[set[str], set[str]]  # of some prediction ids: those predicted, those labelled


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

    def recorded(self, prediction_ids: set[str]) -> Recorded:
        """Which of these ids the sink holds a prediction for, and which a label for; raises
        when the sink cannot say. Sinks answer from an index or a keyed query: this fallback
        reads the whole log."""
        predicted = set(self._read("predictions")["prediction_id"]) & prediction_ids
        return predicted, set(self._read("feedback")["prediction_id"]) & prediction_ids

    @abstractmethod
    def purge(self, cutoff: datetime) -> dict[Table, int]:
        """Delete the records timestamped before `cutoff`; how many of each table."""

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
    for name in ("caller", "labeller"):  # absent from older records: empty
        if name in table:
            table[name] = table[name].fillna("").astype(str)
    return table


def join_feedback(predictions: pd.DataFrame, feedback: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Each prediction with its newest feedback label in `true_label` (missing when none came),
    and how many feedback records name a prediction id that is not in `predictions` (the
    service refuses such labels; older logs, or a window that leaves their prediction out,
    may hold some)."""
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
