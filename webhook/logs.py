"""Structured logs: one JSON object per line, with the ``extra`` fields of each record as keys."""

from __future__ import annotations

import logging
import sys
from typing import Any, Final

import orjson

_STANDARD: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "msg", ...extra}``, one line per record.

    Decision lines are written by :mod:`webhook.serve.decision_log`, in the same shape.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as a JSON line."""
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update((key, value) for key, value in record.__dict__.items() if key not in _STANDARD)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str = "info") -> None:
    """Send every log record to stderr as JSON lines at ``level``."""
    # The JSON lines carry none of the caller, thread or process fields: skip gathering them for each record (the
    # logging HOWTO's "Optimization" switches; finding the caller walks the stack on every call).
    logging._srcfile = None  # noqa: SLF001 - documented there as the way to turn caller lookup off
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
