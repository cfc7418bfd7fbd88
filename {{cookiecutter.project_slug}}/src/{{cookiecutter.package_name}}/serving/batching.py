"""Request batching that never waits: concurrent requests are scored together, a lone one at once.

While one batch is being scored (in a worker thread, one batch at a time), the requests that
arrive queue up; when it is done, the next batch takes everything queued, up to `max_size`
(a request is never split). A request that finds the scorer idle is scored immediately: there
is no batching window, so light traffic pays nothing and heavy traffic gets batches as large as
the load makes them. BentoML's own adaptive batching waits for more requests as long as it saw
requests wait before, which after a burst held lone requests back about 100 ms (measured by the
template's serving benchmark).

The queue is bounded by time, not by a count: the batcher measures how long a record takes to
score (a moving average over recent batches) and refuses a request at once (`Overloaded`, with
the seconds to wait before retrying) when the work queued ahead of it would take longer than
`max_wait`. So under overload a client hears "come back in N s" immediately instead of waiting
out the service's timeout. The pace is the time a batch takes per record, so it includes
whatever holds a batch up (a prediction log that is slow to accept records too), and it follows
the batch sizes seen last: after lone requests it overestimates a burst's first seconds, which
only errs on the safe side.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio.to_thread

Job = Any  # one request's part of a batch, as `work` takes it
Result = Any  # what `work` returns for one job


class Overloaded(Exception):
    """The queue holds more work than `max_wait` allows; `retry_after` whole seconds from now it
    should have drained."""

    def __init__(self, queued_records: int, wait: float, max_wait: float) -> None:
        self.retry_after = max(1, math.ceil(wait))
        super().__init__(
            f"the service is at capacity: {queued_records} record(s) are queued, about {wait:.1f} s"
            f" of scoring (serving.max_queue_wait is {max_wait:g} s); retry after"
            f" {self.retry_after} s"
        )


class Batcher:
    """`await submit(job)` returns `work([..., job, ...])`'s result for that job; `work` runs in
    a thread, on the jobs of one batch, and returns one result per job, in order. An exception
    from `work` is raised to every request of its batch; past `max_wait` seconds of queued work,
    `submit` raises `Overloaded` without queueing."""

    SMOOTHING = 0.2  # weight of the newest batch in the seconds-per-record average

    def __init__(
        self,
        work: Callable[[list[Job]], Sequence[Result]],
        size_of: Callable[[Job], int],
        max_size: int,
        max_wait: float = math.inf,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._work = work
        self._size_of = size_of
        self._max_size = max_size
        self._max_wait = max_wait
        self._on_batch = on_batch  # called with each batch's size, e.g. for a metric
        self._queue: collections.deque[tuple[Job, asyncio.Future[Result]]] = collections.deque()
        self._drainer: asyncio.Task[None] | None = None  # a reference keeps the task alive
        self.queued_records = 0  # records waiting or being scored
        self.seconds_per_record: float | None = None  # None until a batch has been timed

    def expected_wait(self) -> float:
        """Seconds until the work queued now is scored, from the measured pace (0 if unknown)."""
        return self.queued_records * (self.seconds_per_record or 0.0)

    async def submit(self, job: Job) -> Result:
        wait = self.expected_wait()
        if wait > self._max_wait:
            raise Overloaded(self.queued_records, wait, self._max_wait)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        size = self._size_of(job)
        self.queued_records += size
        self._queue.append((job, future))
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        try:
            return await future
        finally:
            self.queued_records -= size

    def _next_batch(self) -> list[tuple[Job, asyncio.Future[Result]]]:
        batch = [self._queue.popleft()]
        size = self._size_of(batch[0][0])
        while self._queue:
            next_size = self._size_of(self._queue[0][0])
            if size + next_size > self._max_size:
                break
            size += next_size
            batch.append(self._queue.popleft())
        if self._on_batch is not None:
            self._on_batch(size)
        return batch

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = [
                    (job, future) for job, future in self._next_batch() if not future.done()
                ]  # a request cancelled while queued (client gone, timeout) is not scored
                if not batch:
                    continue
                jobs = [job for job, _ in batch]
                try:
                    started = time.perf_counter()
                    results = await anyio.to_thread.run_sync(self._work, jobs)
                    self._timed(time.perf_counter() - started, sum(map(self._size_of, jobs)))
                    if len(results) != len(jobs):
                        raise RuntimeError(f"{len(results)} results for {len(jobs)} jobs")
                except Exception as error:  # every request of the batch gets the error
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                else:
                    for (_, future), result in zip(batch, results, strict=True):
                        if not future.done():
                            future.set_result(result)
        finally:
            self._drainer = None

    def _timed(self, seconds: float, records: int) -> None:
        pace = seconds / max(records, 1)
        previous = self.seconds_per_record
        self.seconds_per_record = (
            pace if previous is None else previous + self.SMOOTHING * (pace - previous)
        )
