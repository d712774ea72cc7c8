"""The decision log: one JSON line per image decision of every review, written in batches.

Every pod the API server sends is logged, image by image, so this is the webhook's access log rather than a
diagnostic: it is written the way access logs are. Each line is rendered with orjson, the part a pod template
shares (container, original, result, action, reason, tier) once per template, and lines are written to stderr in
batches, every :data:`FLUSH_SECONDS` or at :data:`BATCH_BYTES`, and when the server stops. An admission only
queues its review's fields beside the shared renderings; the lines are put together when their batch is written.
Through ``logging``, a record per review cost more than the review itself (hack/bench). The lines read exactly like
the other log lines (``webhook.logs``): ``{"time", "level", "logger": "webhook.decisions", "msg": "decision", "uid",
...}``.

The ``webhook.decisions`` logger's level decides whether anything is written: ``--log-level warning`` turns the
decision log off. A crash (SIGKILL, OOM) loses at most the last :data:`FLUSH_SECONDS` of lines; errors and warnings go
through ``logging`` unbatched, so a decision line can follow a warning logged up to that long after it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import TYPE_CHECKING, BinaryIO, Final

import orjson

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

LOGGER: Final = "webhook.decisions"
_LOG_NAME: Final = "webhook.decision_log"
"""This module's own warnings (a line not written); a stable name, as every logger name users filter on."""
FLUSH_SECONDS: Final = 0.2
BATCH_BYTES: Final = 128 * 1024
"""Pending bytes that are written at once rather than at the next timer. Each batch is a hand-over to the writer
thread, which takes the interpreter's lock from the event loop: at full load 64 KiB batches cost about 3% more CPU
per admission than 512 KiB ones, but those grew the RSS 8 MiB more in a minute (allocator heaps, hack/bench's mixed
cases). 128 KiB grew it no more than 64 KiB."""
_FIELDS_BYTES: Final = 120
"""A line's review fields (uid, namespace, pod, mode), estimated: what a batch's size counts before they are written."""
RENDERED_BYTES: Final = 4 * 1024 * 1024
"""Per-decision JSON kept rendered for reuse, in bytes; past that, the memo starts over. A review whose lines alone
are over an eighth of it (a pod with thousands of containers or huge image strings) is rendered but not kept."""


class DecisionLog:
    """Batched JSON lines for the decisions of each review; used from the event loop's thread only."""

    def __init__(
        self,
        stream: BinaryIO | None = None,
        *,
        flush_seconds: float = FLUSH_SECONDS,
        batch_bytes: int = BATCH_BYTES,
        clock: Callable[[], float] = time.time,
        writer: Callable[[bytes], None] | None = None,
    ) -> None:
        """Write to ``stream`` (stderr's bytes by default), at least every ``flush_seconds``.

        With ``writer`` (the server's :class:`webhook.serve.log_writer.StderrWriter`), batches are handed to it
        instead, which never blocks.
        """
        self.writer = writer
        self._stream = stream
        self._flush_seconds = flush_seconds
        self._batch_bytes = batch_bytes
        self._clock = clock
        self._logger = logging.getLogger(LOGGER)
        self._pending: list[tuple[bytes, Mapping[str, str], tuple[bytes, ...]]] = []
        """Each review's time prefix, fields and rendered decisions, made into lines when flushed: one loop over a
        batch instead of work in every admission (hack/bench)."""
        self._size = 0
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        """The loop a flush is scheduled on, if any (a loop that ended with one scheduled is replaced by the next)."""
        self._second = -1
        self._head_prefix = b""
        self._rendered: dict[int, tuple[Sequence[Mapping[str, str | None]], tuple[bytes, ...], int]] = {}
        self.rendered_bytes = 0
        """Bytes of per-decision JSON kept for reuse (at most :data:`RENDERED_BYTES`)."""

    @property
    def enabled(self) -> bool:
        """Whether decisions are logged (the ``webhook.decisions`` logger's level is ``info`` or lower)."""
        return self._logger.isEnabledFor(logging.INFO)

    def write(self, review: Mapping[str, str], decisions: Sequence[Mapping[str, str | None]]) -> None:
        """Log one review: a line per decision, each with the ``review`` fields (uid, namespace, pod, mode) first.

        ``review`` is read when its batch is written: it must not change after this call. Never raises: losing log
        lines must not fail an admission.
        """
        if not decisions or not self._logger.isEnabledFor(logging.INFO):
            return
        try:
            lines, size = self._lines(decisions)
        except Exception as error:  # noqa: BLE001 - e.g. a value orjson cannot encode
            logging.getLogger(_LOG_NAME).warning("decision log line not written: %s", error)
            return
        head = self._head()
        self._pending.append((head, review, lines))
        self._size += size + (len(lines) - 1) * (len(head) + _FIELDS_BYTES)
        if self._size >= self._batch_bytes:
            self.flush()
        elif self._timer_loop is None or not self._timer_loop.is_running():  # else one is scheduled on this loop
            self._schedule_flush()

    def flush(self) -> None:
        """Write what is pending now. Never raises."""
        if not self._pending:
            return
        data = b"".join(_joined(self._pending))
        self._pending.clear()
        self._size = 0
        if self.writer is not None:
            self.writer(data)
            return
        try:
            stream = self._stream if self._stream is not None else sys.stderr.buffer
            stream.write(data)
            stream.flush()
        except Exception as error:  # noqa: BLE001 - a closed, missing or odd stderr must not fail an admission
            logging.getLogger(_LOG_NAME).warning("decision log lines lost: %s", error)

    def _schedule_flush(self) -> None:
        """Flush later on the running loop (none is scheduled on it: :meth:`write` checks), or now off a loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop (a script, a test): nothing would flush later
            self.flush()
            return
        self._timer_loop = loop
        loop.call_later(self._flush_seconds, self._flush_on_timer)

    def _flush_on_timer(self) -> None:
        self._timer_loop = None
        self.flush()

    def _head(self) -> bytes:
        """``{"time":...,"level":"info","logger":...,"msg":"decision",`` for the current second."""
        now = self._clock()
        second = int(now)
        if second != self._second:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now))  # as logging.Formatter.formatTime
            line = {"time": stamp, "level": "info", "logger": LOGGER, "msg": "decision"}
            self._head_prefix = orjson.dumps(line)[:-1] + b","
            self._second = second
        return self._head_prefix

    def _lines(self, decisions: Sequence[Mapping[str, str | None]]) -> tuple[tuple[bytes, ...], int]:
        """An empty first item, then each decision as the rest of a line (``,"container":...}`` and a newline).

        Joined by a line's head, they are the review's lines. Rendered once per object; returned with their size.

        A cached review's decisions are one shared object (see ``webhook.core.review_cache``); the memo keeps a
        reference to each so its id is not reused while it is in there.
        """
        found = self._rendered.get(id(decisions))
        if found is not None and found[0] is decisions:
            return found[1], found[2]
        lines = (b"", *((b"," + orjson.dumps(decision)[1:] if decision else b"}") + b"\n" for decision in decisions))
        size = sum(len(line) for line in lines)
        if size <= RENDERED_BYTES // 8:
            if self.rendered_bytes + size > RENDERED_BYTES:
                self._rendered.clear()
                self.rendered_bytes = 0
            self._rendered[id(decisions)] = (decisions, lines, size)
            self.rendered_bytes += size
        return lines, size


def _joined(pending: Iterable[tuple[bytes, Mapping[str, str], tuple[bytes, ...]]]) -> Iterator[bytes]:
    """Each pending review's lines: its head (time prefix and review fields) before each decision's rendering."""
    for prefix, review, lines in pending:
        try:
            head = prefix + memoryview(orjson.dumps(review))[1:-1] if review else prefix[:-1]
        except Exception as error:  # noqa: BLE001 - e.g. a value orjson cannot encode
            logging.getLogger(_LOG_NAME).warning("decision log line not written: %s", error)
            continue
        yield head.join(lines)  # "", head, line, head, line...: each line complete
