"""The writer: one thread in front of a sink and a spool, answering each request's records with
a receipt once they are durable; and the refusals it answers with."""

from __future__ import annotations

import atexit
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .records import Table
from .sink import PredictionSink, Recorded
from .spool import Spool, SpoolFull

logger = logging.getLogger(__name__)

RETRY = "retry shortly"


class LogUnavailable(Exception):
    """Records that neither the sink nor the spool could take: their request must not be
    answered as if they were logged. str() is for the client (no host, port, path or error
    text); `detail` is for the server's log."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class FeedbackRefused(Exception):
    """A label the log does not take; str() is a sentence for the client."""


class UnknownPrediction(FeedbackRefused):
    """The label names a prediction id the log never recorded (HTTP 404)."""

    def __init__(self, prediction_id: str) -> None:
        super().__init__(
            "no prediction with this prediction_id was recorded: send the prediction_id"
            " that a /predict answer gave"
        )
        self.prediction_id = prediction_id


class AlreadyLabelled(FeedbackRefused):
    """The prediction has a label already; labels are not corrected through the API (409)."""

    def __init__(self, prediction_id: str) -> None:
        super().__init__(
            "this prediction has a label already: a label is given once and not changed"
            " through the API"
        )
        self.prediction_id = prediction_id


Receipt = Future[None]  # None once durable; LogUnavailable or FeedbackRefused otherwise
_STOP = object()
Entry = tuple[Table, list[dict[str, Any]], Receipt]


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

    A label is taken only for a prediction the log recorded (in the sink or waiting in a spool
    file here) that has no label yet: each group commit asks the spool and the sink about its
    labels' ids at once. While the sink is away, a label whose prediction no spool file here
    holds cannot be checked: it is refused as unavailable (retry later), not taken unchecked.
    """

    def __init__(
        self,
        sink: PredictionSink,
        spool: Spool | None = None,
        max_pending: int = 1_000,
        put_timeout: float = 1.0,
        retry_interval: float = 1.0,
        on_change: Callable[[PredictionLog], None] | None = None,
    ) -> None:
        self.sink = sink
        self.spool = spool
        self.refused = 0  # records neither the sink nor the spool took, or the queue had no room
        self.spooled = 0  # records written to the spool
        self.replayed = 0  # records moved from the spool into the sink
        self.replay_failures = 0  # replays of the spool that failed (the sink still away)
        self._on_change = on_change  # told after each group commit and replay (the metrics)
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
        """The receipt raises UnknownPrediction or AlreadyLabelled for a label refused."""
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
                LogUnavailable(f"the prediction log is not keeping up: {RETRY}", "queue full")
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
            entries: list[Entry] = [item for item in items if item is not _STOP]
            try:
                predictions = [entry for entry in entries if entry[0] == "predictions"]
                if predictions:
                    self._commit("predictions", predictions)
                feedback = [entry for entry in entries if entry[0] == "feedback"]
                if feedback:  # after the predictions: a label may follow its prediction at once
                    self._commit_feedback(feedback)
                if self._replay_due():
                    self._replay()
            except Exception as error:  # a bug must not stop the writer: refuse, carry on
                logger.exception("the prediction log's writer failed")
                for _, records, receipt in entries:
                    if not receipt.done():
                        self.refused += len(records)
                        receipt.set_exception(
                            LogUnavailable(f"the prediction log failed: {RETRY}", repr(error))
                        )
            finally:
                self._changed()
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
                self._changed()
        while len(items) < 1_000:  # a group commit: everything queued meanwhile
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _changed(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change(self)
            except Exception:  # the metrics must not stop the writer
                logger.exception("the prediction log's change hook failed")

    def _spool_waits(self) -> bool:
        """Whether spooled records (this process's, or others' after a failed replay) wait."""
        return self._unreplayed or (self.spool is not None and self.spool.pending > 0)

    def _replay_due(self) -> bool:
        due = time.monotonic() - self._last_attempt >= self._retry_interval
        return self._spool_waits() and due

    def _sink_due(self) -> bool:
        """Whether to try the sink: it works, or it failed longer than `retry_interval` ago
        (a dead database would otherwise cost every batch its connection timeout)."""
        retry_due = time.monotonic() - self._last_attempt >= self._retry_interval
        return self.spool is None or self._sink_error is None or retry_due

    def _commit(self, table: Table, batch: list[Entry]) -> None:
        records = [record for _, entry_records, _ in batch for record in entry_records]
        refusal = self._store(table, records)
        for _, entry_records, receipt in batch:
            if refusal is None:
                receipt.set_result(None)
            else:
                self.refused += len(entry_records)
                receipt.set_exception(refusal)

    def _commit_feedback(self, batch: list[Entry]) -> None:
        """Labels checked, then the ones taken stored. If storing fails because another
        writer stored a label for the same prediction meanwhile (the SQL sink's unique index),
        they are checked again once, so that one is refused and the others stored."""
        for attempt in range(2):
            verdicts = self._check([records for _, records, _ in batch])
            taken = [entry for entry, verdict in zip(batch, verdicts, strict=True) if not verdict]
            records = [record for _, entry_records, _ in taken for record in entry_records]
            refusal = self._store("feedback", records) if records else None
            if refusal is None or attempt:
                break
        for (_, entry_records, receipt), verdict in zip(batch, verdicts, strict=True):
            if verdict is not None:
                receipt.set_exception(verdict)
            elif refusal is None:
                receipt.set_result(None)
            else:
                self.refused += len(entry_records)
                receipt.set_exception(refusal)

    def _check(self, entries: list[list[dict[str, Any]]]) -> list[Exception | None]:
        """For each entry's labels: None (take them), or why not. The first label for a
        prediction in the batch is the one taken."""
        ids = {record["prediction_id"] for records in entries for record in records}
        predicted, labelled, checked = self._recorded(ids)
        verdicts: list[Exception | None] = []
        taken: set[str] = set()
        for records in entries:
            verdict: Exception | None = None
            for record in records:
                prediction_id = record["prediction_id"]
                if prediction_id in labelled or prediction_id in taken:
                    verdict = AlreadyLabelled(prediction_id)
                elif prediction_id not in predicted:
                    verdict = (
                        UnknownPrediction(prediction_id)
                        if checked
                        else LogUnavailable(
                            "the prediction log cannot record this label now: its store is"
                            " unavailable to check the prediction, and its spool does not"
                            f" hold it; {RETRY}",
                            f"the sink is away ({self._sink_error})",
                        )
                    )
            if verdict is None:
                taken.update(record["prediction_id"] for record in records)
            verdicts.append(verdict)
        return verdicts

    def _recorded(self, ids: set[str]) -> tuple[set[str], set[str], bool]:
        """Of these ids, those with a prediction and those with a label, in the spool or the
        sink; and whether the sink answered. The spool is asked first: a file replayed by
        another worker meanwhile is in the sink by the time it leaves the spool."""
        predicted, labelled = self.spool.recorded(ids) if self.spool is not None else (set(), set())
        if not self._sink_due():
            return predicted, labelled, False
        try:
            in_sink: Recorded = self.sink.recorded(ids)
        except Exception as error:
            self._sink_failed(error)
            return predicted, labelled, False
        return predicted | in_sink[0], labelled | in_sink[1], True

    def _store(self, table: Table, records: list[dict[str, Any]]) -> LogUnavailable | None:
        """Store in the sink or else the spool; None, or why neither took the records."""
        if self._sink_due():
            try:
                self.sink.write(table, records)
                self._sink_answered()
                return None
            except Exception as error:
                if self.sink.refuses(error):  # no replay could store them: refuse now
                    detail = f"{type(error).__name__}: {error}"
                    logger.error(
                        "the prediction log's sink refused %d %s record(s): %s",
                        len(records),
                        table,
                        detail,
                    )
                    return LogUnavailable(
                        "the prediction log refused this record; the server's log says why",
                        detail,
                    )
                self._sink_failed(error)
        if self.spool is None:
            logger.error(
                "could not write %d %s record(s): %s", len(records), table, self._sink_error
            )
            return LogUnavailable(
                f"the prediction log cannot record this now: its store is unavailable; {RETRY}",
                f"sink: {self._sink_error}",
            )
        try:
            self.spool.append(table, records)
        except SpoolFull as error:  # as sized: not a fault of the spool's
            logger.error("could not spool %d %s record(s): %s", len(records), table, error)
            return LogUnavailable(
                "the prediction log cannot record this now: its store is unavailable and its"
                f" local spool is full; {RETRY}",
                f"sink: {self._sink_error}; spool: {error}",
            )
        except Exception as error:
            logger.exception("could not spool %d %s record(s)", len(records), table)
            return LogUnavailable(
                "the prediction log cannot record this now: its store and its local spool"
                f" both failed; {RETRY}",
                f"sink: {self._sink_error}; spool: {type(error).__name__}: {error}",
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
            self.replay_failures += 1
            self._sink_failed(error)
            return
        self._unreplayed = False
        self._sink_answered()

    def _sink_answered(self) -> None:
        if self._sink_error is not None:
            logger.warning("the prediction log's sink answers again")
        self._sink_error = None
