"""Request deadlines on one coarse timer, instead of a timer per request.

Each admission must read its body before the API server's ``?timeout=`` runs out. ``asyncio.timeout_at`` would
arm and disarm an event-loop timer per request, which cost about a sixth of a cached review (hack/bench). Here a
request registers its task and deadline in a dict, and one sweep, every :data:`RESOLUTION` seconds while anything is
registered, cancels the tasks whose deadline has passed; the request turns that cancellation into ``TimeoutError``.
A deadline is therefore met up to :data:`RESOLUTION` late: the app aims at 90% of the API server's timeout, and the
API server's shortest timeout is 1 s, so an answer still comes in time.

Use from one event loop's thread at a time: ``body = await deadlines.within(loop, deadline, read())``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable

T = TypeVar("T")

RESOLUTION: Final = 0.05
"""Seconds between sweeps: how late a deadline may be enforced."""


class Deadlines:
    """Tasks and the loop time by which each must have released its deadline."""

    def __init__(self, resolution: float = RESOLUTION) -> None:
        """Sweep every ``resolution`` seconds while a deadline is watched."""
        self.resolution = resolution
        self._watched: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._sweeping_on: asyncio.AbstractEventLoop | None = None
        """The loop the next sweep is scheduled on (a new loop, e.g. after a restart in tests, gets its own)."""

    def __len__(self) -> int:
        """How many deadlines are watched."""
        return len(self._watched)

    async def within(self, loop: asyncio.AbstractEventLoop, deadline: float, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` in the current task; ``TimeoutError`` if ``loop.time()`` passes ``deadline`` first."""
        task = self.watch(loop, deadline)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self.release(task):
                raise TimeoutError from None
            raise
        finally:
            self.release(task)

    def watch(self, loop: asyncio.AbstractEventLoop, deadline: float) -> asyncio.Task[object]:
        """Cancel the current task once ``loop.time()`` passes ``deadline``, unless it releases first."""
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("Deadlines.watch() must be called from a task")
        self._watched[task] = deadline
        if self._sweeping_on is not loop:
            self._sweeping_on = loop
            loop.call_later(self.resolution, self._sweep, loop)
        return task

    def release(self, task: asyncio.Task[object]) -> bool:
        """Stop watching ``task``; whether its deadline had passed (it was cancelled for that, once)."""
        self._watched.pop(task, None)
        if task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()  # the cancellation was ours: it becomes a TimeoutError, not a cancelled task
        return True

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for task, deadline in list(self._watched.items()):
            if deadline <= now:
                del self._watched[task]
                self._expired.add(task)
                task.cancel()
        if self._sweeping_on is not loop:
            return  # a newer loop took over
        if self._watched:
            loop.call_later(self.resolution, self._sweep, loop)
        else:
            self._sweeping_on = None
