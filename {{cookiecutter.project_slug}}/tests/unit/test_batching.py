"""The service's batcher: a lone request is scored at once, requests that arrive while a batch
runs are scored together (up to the size limit, never split), each gets its own result, and an
error reaches every request of its batch without stopping the next ones; past `max_wait`
seconds of queued work a request is refused at once."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from {{ cookiecutter.package_name }}.serving.batching import Batcher, Overloaded


class Recorder:
    """A `work` that records each batch and can be held inside a call until released."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail_on: str | None = None

    def __call__(self, jobs: list[str]) -> list[str]:
        self.batches.append(list(jobs))
        self.entered.set()
        self.release.wait(timeout=10)
        if self.fail_on in jobs:
            raise ValueError(f"cannot score {self.fail_on}")
        return [job.upper() for job in jobs]


async def wait_for(event: threading.Event) -> None:
    for _ in range(1000):
        if event.is_set():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the batcher never called its work")


def test_a_lone_request_is_scored_at_once_and_alone() -> None:
    work = Recorder()
    batcher = Batcher(work, size_of=len, max_size=100)

    async def scenario() -> list[str]:
        return [await batcher.submit("a"), await batcher.submit("b")]

    assert asyncio.run(scenario()) == ["A", "B"]
    assert work.batches == [["a"], ["b"]]


def test_requests_queued_behind_a_batch_are_scored_together_up_to_the_limit() -> None:
    work = Recorder()
    sizes: list[int] = []
    batcher = Batcher(work, size_of=len, max_size=4, on_batch=sizes.append)

    async def scenario() -> list[str]:
        work.release.clear()
        first = asyncio.ensure_future(batcher.submit("a"))
        await wait_for(work.entered)  # the first batch is being scored: the others queue
        rest = [asyncio.ensure_future(batcher.submit(job)) for job in ("bb", "c", "d", "eee")]
        await asyncio.sleep(0.05)
        work.release.set()
        return await asyncio.gather(first, *rest)

    assert asyncio.run(scenario()) == ["A", "BB", "C", "D", "EEE"]
    # "eee" would take the second batch past 4 records: it waits for the third
    assert work.batches == [["a"], ["bb", "c", "d"], ["eee"]]
    assert sizes == [1, 4, 3]


def test_an_error_reaches_every_request_of_its_batch_and_the_next_batch_still_runs() -> None:
    work = Recorder()
    work.fail_on = "c"
    batcher = Batcher(work, size_of=len, max_size=100)

    async def scenario() -> tuple[list[str | BaseException], str]:
        work.release.clear()
        first = asyncio.ensure_future(batcher.submit("a"))
        await wait_for(work.entered)
        queued = [asyncio.ensure_future(batcher.submit(job)) for job in ("b", "c")]
        await asyncio.sleep(0.05)
        work.release.set()
        outcomes = await asyncio.gather(first, *queued, return_exceptions=True)
        return outcomes, await batcher.submit("d")

    outcomes, after = asyncio.run(scenario())
    assert outcomes[0] == "A"
    for outcome in outcomes[1:]:
        assert isinstance(outcome, ValueError) and "cannot score c" in str(outcome)
    assert after == "D"


def test_a_request_larger_than_the_limit_is_scored_whole() -> None:
    work = Recorder()
    batcher = Batcher(work, size_of=len, max_size=2)
    assert asyncio.run(batcher.submit("abcde")) == "ABCDE"
    assert work.batches == [["abcde"]]


@pytest.mark.parametrize("results", [[], ["X", "Y"]])
def test_work_returning_the_wrong_number_of_results_fails_the_batch(results: list[str]) -> None:
    batcher = Batcher(lambda jobs: results, size_of=len, max_size=10)
    with pytest.raises(RuntimeError, match=r"results for 1 jobs"):
        asyncio.run(batcher.submit("a"))


def test_past_max_wait_a_request_is_refused_at_once_and_told_when_to_retry() -> None:
    """The bound is in seconds of queued work, from the measured pace: after one timed record
    (about 0.1 s), three queued records (about 0.3 s) leave no room under max_wait 0.25 s."""
    work = Recorder()

    def slow(jobs: list[str]) -> list[str]:
        time.sleep(0.1 * sum(map(len, jobs)))
        return work(jobs)

    batcher = Batcher(slow, size_of=len, max_size=1, max_wait=0.25)

    async def scenario() -> tuple[list[str], Overloaded]:
        await batcher.submit("a")  # times the pace
        work.release.clear()
        queued = [asyncio.ensure_future(batcher.submit(job)) for job in ("b", "c", "d")]
        await asyncio.sleep(0)  # the three are queued
        with pytest.raises(Overloaded) as refused:
            await batcher.submit("e")
        work.release.set()
        return await asyncio.gather(*queued), refused.value

    answers, refused = asyncio.run(scenario())
    assert answers == ["B", "C", "D"]  # the queued ones are still served
    assert ["e"] not in work.batches  # the refused one never reached the work
    assert refused.retry_after >= 1
    assert "at capacity" in str(refused) and "serving.max_queue_wait" in str(refused)
    assert batcher.queued_records == 0


def test_the_queue_count_falls_back_to_zero_after_errors_and_cancellations() -> None:
    work = Recorder()
    work.fail_on = "b"
    batcher = Batcher(work, size_of=len, max_size=10)

    async def scenario() -> None:
        work.release.clear()
        first = asyncio.ensure_future(batcher.submit("a"))
        await wait_for(work.entered)
        failing = asyncio.ensure_future(batcher.submit("b"))
        cancelled = asyncio.ensure_future(batcher.submit("cc"))
        await asyncio.sleep(0)
        assert batcher.queued_records == 4
        cancelled.cancel()
        work.release.set()
        await first
        with pytest.raises(ValueError):
            await failing

    asyncio.run(scenario())
    assert batcher.queued_records == 0
