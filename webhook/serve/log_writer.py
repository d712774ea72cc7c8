"""Log lines to stderr from a thread of their own: a reader that stalls costs lines, never the event loop.

A write to stderr blocks when its reader (the container runtime's log pipe, a ``kubectl logs -f`` through it, a
sidecar) stops reading and the pipe fills. Written from the event loop, that froze every admission (issue 13).
:class:`StderrWriter` takes bytes without blocking, up to :data:`PENDING_BYTES` waiting, and writes them from one
daemon thread; what does not fit is dropped and its lines counted
(``ecr_ptc_webhook_decision_log_lines_dropped_total``).
:class:`WriterHandler` sends ``logging`` records the same way, so the server's own warnings cannot block it either,
and every line keeps its order.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
from typing import TYPE_CHECKING, BinaryIO, Final

if TYPE_CHECKING:
    from collections.abc import Callable

PENDING_BYTES: Final = 8 * 1024 * 1024
"""Bytes waiting for the writer thread at most: about 20 s of decision lines at 1,000 admissions/s."""


class StderrWriter:
    """Bytes handed over at once, written in order by one thread; the excess dropped and counted in lines."""

    def __init__(self, stream: BinaryIO | None = None, *, pending_bytes: int = PENDING_BYTES) -> None:
        """Write to ``stream`` (stderr's bytes by default); start the thread."""
        self._stream = stream
        self._limit = pending_bytes
        self._pending: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._closing = False
        self.dropped_lines = 0
        """Lines dropped because the stream was not taking them."""
        self._thread = threading.Thread(target=self._run, name="stderr writer", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        """Queue ``data`` (whole lines) without blocking; drop it, counted, if too much is waiting already."""
        with self._lock:
            if self._closing or self._size + len(data) > self._limit:
                self.dropped_lines += data.count(b"\n")
                return
            self._pending.append(data)
            self._size += len(data)
            self._ready.notify()

    def close(self, timeout: float = 1.0) -> bool:
        """Write what waits, for at most ``timeout`` seconds (a stalled reader is not waited for longer).

        Returns whether everything was written.
        """
        with self._lock:
            self._closing = True
            self._ready.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closing:
                    self._ready.wait()
                if not self._pending:
                    return
                data = b"".join(self._pending)
                self._pending.clear()
                self._size = 0
            try:
                stream = self._stream if self._stream is not None else sys.stderr.buffer
                stream.write(data)
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed or odd stderr loses lines, nothing else
                with self._lock:
                    self.dropped_lines += data.count(b"\n")


class WriterHandler(logging.Handler):
    """A ``logging`` handler that formats on the caller's thread and hands the line to a :class:`StderrWriter`."""

    def __init__(self, write: Callable[[bytes], None], formatter: logging.Formatter | None = None) -> None:
        """Send each formatted record, and a newline, to ``write``."""
        super().__init__()
        self._write = write
        if formatter is not None:
            self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        """Format and queue one record."""
        try:
            self._write(self.format(record).encode(errors="backslashreplace") + b"\n")
        except Exception:  # noqa: BLE001 - logging must not fail the caller
            self.handleError(record)


def send_logs_to(writer: StderrWriter) -> None:
    """Route the root logger's stderr handlers through ``writer``, keeping their formatters."""
    root = logging.getLogger()
    for index, handler in enumerate(root.handlers):
        if isinstance(handler, logging.StreamHandler) and handler.stream in {sys.stderr, sys.__stderr__}:
            replacement = WriterHandler(writer.write, handler.formatter)
            replacement.setLevel(handler.level)
            root.handlers[index] = replacement
