"""Deadlines on one coarse timer: late reads become TimeoutError, in time; nothing else is cancelled."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest

from webhook.serve.deadlines import Deadlines

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

RESOLUTION = 0.02


async def read_within(deadlines: Deadlines, seconds: float, read: Callable[[], Awaitable[str]]) -> str:
    loop = asyncio.get_running_loop()
    return await deadlines.within(loop, loop.time() + seconds, read())


async def after(seconds: float, value: str = "body") -> str:
    await asyncio.sleep(seconds)
    return value


def test_a_read_in_time_is_untouched_and_the_task_stays_usable() -> None:
    deadlines = Deadlines(RESOLUTION)

    async def scenario() -> str:
        value = await read_within(deadlines, 0.2, lambda: after(0.01))
        await asyncio.sleep(0.3)  # past the deadline: a stale cancellation would land here
        return value

    assert asyncio.run(scenario()) == "body"
    assert len(deadlines) == 0


def test_a_late_read_times_out_within_the_resolution() -> None:
    deadlines = Deadlines(RESOLUTION)

    async def scenario() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await read_within(deadlines, 0.1, lambda: after(10))
        elapsed = time.monotonic() - started
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0  # uncancelled: an enclosing asyncio.timeout or TaskGroup is not misled
        await asyncio.sleep(0.05)
        return elapsed

    elapsed = asyncio.run(scenario())
    assert 0.1 <= elapsed < 0.1 + RESOLUTION + 0.5  # the 0.5 is slack for a loaded machine, not the resolution
    assert len(deadlines) == 0


def test_only_the_late_ones_of_many_concurrent_reads_time_out() -> None:
    deadlines = Deadlines(RESOLUTION)

    async def scenario() -> list[str]:
        reads = [
            read_within(deadlines, 0.3, lambda: after(0.05, "fast")),
            read_within(deadlines, 0.05, lambda: after(5, "stalled")),
            read_within(deadlines, 0.3, lambda: after(0.1, "in time")),
        ]
        results = await asyncio.gather(*reads, return_exceptions=True)
        return [result if isinstance(result, str) else type(result).__name__ for result in results]

    assert asyncio.run(scenario()) == ["fast", "TimeoutError", "in time"]


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    deadlines = Deadlines(RESOLUTION)

    async def scenario() -> None:
        task = asyncio.create_task(read_within(deadlines, 5, lambda: after(5)))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert len(deadlines) == 0


def test_a_new_event_loop_gets_its_own_sweep() -> None:
    deadlines = Deadlines(RESOLUTION)

    async def stalled_read() -> None:
        with pytest.raises(TimeoutError):
            await read_within(deadlines, 0.05, lambda: after(5))

    async def leave_a_watch_behind() -> None:
        loop = asyncio.get_running_loop()
        deadlines.watch(loop, loop.time() + 60)  # this loop ends with its sweep still scheduled

    asyncio.run(leave_a_watch_behind())
    asyncio.run(stalled_read())


def test_watching_needs_a_task() -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(RuntimeError, match="from a task"):
            Deadlines().watch(loop, 0.0)
    finally:
        loop.close()
