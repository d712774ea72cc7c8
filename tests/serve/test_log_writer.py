"""Log lines go to stderr from a thread: a reader that stalls loses lines (counted), never blocks the caller."""

from __future__ import annotations

import io
import logging
import threading

from webhook.serve.log_writer import StderrWriter, WriterHandler


class StalledStream(io.BytesIO):
    """A stream whose writes block until released, like a pipe nobody reads."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def write(self, data: bytes, /) -> int:  # type: ignore[override]
        self.entered.set()
        self.release.wait()
        return super().write(data)


def write_from_a_thread(writer: StderrWriter, lines: list[bytes]) -> bool:
    """Whether every write returned (a blocking one would leave the thread running)."""

    def write_all() -> None:
        for line in lines:
            writer.write(line)

    thread = threading.Thread(target=write_all, daemon=True)
    thread.start()
    thread.join(timeout=30)
    return not thread.is_alive()


def test_a_stalled_reader_costs_lines_counted_and_never_blocks_the_writer() -> None:
    stream = StalledStream()
    writer = StderrWriter(stream, pending_bytes=1000)
    writer.write(b"first\n")
    assert stream.entered.wait(10)  # the thread is stuck writing "first"
    lines = [b"line %03d\n" % index for index in range(500)]  # 9 bytes each: 111 fit in 1000
    assert write_from_a_thread(writer, lines)
    assert writer.dropped_lines == 500 - 111
    stream.release.set()
    assert writer.close(timeout=10)
    written = stream.getvalue().splitlines()
    assert written == [b"first", *(line.rstrip() for line in lines[:111])]


def test_a_broken_stream_counts_what_it_lost() -> None:
    class Broken(io.BytesIO):
        def write(self, _data: bytes, /) -> int:  # type: ignore[override]
            raise OSError("stderr closed")

    writer = StderrWriter(Broken())
    writer.write(b"a\nb\n")
    assert writer.close(timeout=10)
    assert writer.dropped_lines == 2


def test_log_records_keep_their_format_and_order_with_decision_lines() -> None:
    stream = io.BytesIO()
    writer = StderrWriter(stream)
    handler = WriterHandler(writer.write, logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test.log_writer")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        writer.write(b"decision 1\n")
        logger.warning("warned")
        writer.write(b"decision 2\n")
    finally:
        logger.removeHandler(handler)
    assert writer.close(timeout=10)
    assert stream.getvalue() == b"decision 1\nWARNING warned\ndecision 2\n"
