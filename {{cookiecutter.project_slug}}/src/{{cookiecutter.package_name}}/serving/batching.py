"""Request batching that never waits: concurrent requests are scored together, a lone one at once.

While one batch is being scored (in a worker thread, one batch at a time), the requests that
arrive queue up; when it is done, the next batch takes everything queued, up to `max_size`
(a request is never split). A request that finds the scorer idle is scored immediately: there
is no batching window, so light traffic pays nothing and heavy traffic gets batches as large as
the load makes them. BentoML's own adaptive batching waits for more requests as long as it saw
requests wait before, which after a burst held lone requests back about 100 ms (RESULTS.md).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from typing import Any

import anyio.to_thread

Job = Any  # one request's part of a batch, as `work` takes it
Result = Any  # what `work` returns for one job


class Batcher:
    """`await submit(job)` returns `work([..., job, ...])`'s result for that job; `work` runs in
    a thread, on the jobs of one batch, and returns one result per job, in order. An exception
    from `work` is raised to every request of its batch."""

    def __init__(
        self,
        work: Callable[[list[Job]], Sequence[Result]],
        size_of: Callable[[Job], int],
        max_size: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._work = work
        self._size_of = size_of
        self._max_size = max_size
        self._on_batch = on_batch  # called with each batch's size, e.g. for a metric
        self._queue: collections.deque[tuple[Job, asyncio.Future[Result]]] = collections.deque()
        self._drainer: asyncio.Task[None] | None = None  # a reference keeps the task alive

    async def submit(self, job: Job) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._queue.append((job, future))
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        return await future

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
                    results = await anyio.to_thread.run_sync(self._work, jobs)
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
