"""The decision log: JSON lines like the other logs, written in batches, never failing an admission."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook.logs import JsonFormatter
from webhook.serve import decision_log
from webhook.serve.decision_log import RENDERED_BYTES, DecisionLog

REVIEW = {"uid": "0b6f", "namespace": "apps", "pod": "web-7d4b9c8f6-", "mode": "mutate"}
DECISIONS = (
    {"container": "c0", "original": "nginx", "result": "r/docker-hub/library/nginx", "action": "rewrite",
     "reason": "rewritten", "tier": "docker-hub"},
    {"container": "c1", "original": "gcr.io/x/y", "result": "gcr.io/x/y", "action": "skip",
     "reason": "upstream-unsupported", "tier": None},
)  # fmt: skip
NOW = 1_790_000_000.25


@pytest.fixture(autouse=True)
def decisions_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="webhook.decisions")


def lines(stream: io.BytesIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_per_decision_shaped_like_every_other_log_line() -> None:
    stream = io.BytesIO()
    log = DecisionLog(stream, clock=lambda: NOW)
    log.write(REVIEW, DECISIONS)
    log.flush()
    fields = {"name": "webhook.decisions", "levelname": "INFO", "msg": "decision", "created": NOW}
    record = logging.makeLogRecord(fields)
    for key, value in {**REVIEW, **DECISIONS[0]}.items():
        setattr(record, key, value)
    expected = json.loads(JsonFormatter().format(record))
    assert lines(stream)[0] == expected
    assert list(lines(stream)[0]) == list(expected)  # same keys in the same order
    assert [line["container"] for line in lines(stream)] == ["c0", "c1"]
    assert all(line["uid"] == "0b6f" for line in lines(stream))


@given(
    review=st.dictionaries(st.sampled_from(["uid", "namespace", "pod", "mode"]), st.text(), max_size=4),
    decisions=st.lists(
        st.dictionaries(st.sampled_from(["container", "original", "tier"]), st.none() | st.text(), max_size=3),
        max_size=4,
    ),
)
def test_every_line_is_one_valid_json_object(review: dict[str, str], decisions: list[dict[str, str | None]]) -> None:
    stream = io.BytesIO()
    log = DecisionLog(stream)
    log.write(review, decisions)
    log.flush()
    written = stream.getvalue()
    assert written.count(b"\n") == len(decisions)
    for line, decision in zip(lines(stream), decisions, strict=True):
        assert line == {"time": line["time"], "level": "info", "logger": "webhook.decisions", "msg": "decision"} | (
            review | decision
        )


def test_lines_wait_for_the_flush_interval_on_an_event_loop() -> None:
    stream = io.BytesIO()
    log = DecisionLog(stream, flush_seconds=0.05)

    async def review_then_wait() -> tuple[bytes, bytes]:
        log.write(REVIEW, DECISIONS)
        log.write(REVIEW, DECISIONS[:1])
        before = stream.getvalue()
        await asyncio.sleep(0.2)
        return before, stream.getvalue()

    before, after = asyncio.run(review_then_wait())
    assert before == b""
    assert after.count(b"\n") == 3


def test_a_full_batch_is_written_at_once() -> None:
    stream = io.BytesIO()
    log = DecisionLog(stream, flush_seconds=60, batch_bytes=1000)

    async def reviews() -> int:
        written = 0
        while not stream.getvalue():
            log.write(REVIEW, DECISIONS)
            written += 1
        return written

    count = asyncio.run(reviews())
    assert 1 < count <= 1000 // 300 + 1
    assert stream.getvalue().count(b"\n") == 2 * count


def test_off_an_event_loop_each_review_is_written_at_once() -> None:
    stream = io.BytesIO()
    DecisionLog(stream).write(REVIEW, DECISIONS)
    assert stream.getvalue().count(b"\n") == 2


def test_the_log_level_turns_decisions_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="webhook.decisions")
    stream = io.BytesIO()
    log = DecisionLog(stream)
    assert not log.enabled
    log.write(REVIEW, DECISIONS)
    log.flush()
    assert stream.getvalue() == b""


def test_the_time_follows_the_clock() -> None:
    stream = io.BytesIO()
    now = [NOW]
    log = DecisionLog(stream, clock=lambda: now[0])
    log.write(REVIEW, DECISIONS[:1])
    now[0] += 61
    log.write(REVIEW, DECISIONS[:1])
    first, second = (line["time"] for line in lines(stream))
    assert first == time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(NOW))
    assert second == time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(NOW + 61))


def test_reused_decisions_are_rendered_once_and_new_ones_afresh() -> None:
    stream = io.BytesIO()
    log = DecisionLog(stream)
    shared = ({"container": "c0", "original": "a"},)
    log.write(REVIEW, shared)
    log.write(REVIEW, shared)
    log.write(REVIEW, ({"container": "c0", "original": "b"},))
    assert [line["original"] for line in lines(stream)] == ["a", "a", "b"]


def test_a_broken_stream_loses_lines_but_raises_nothing(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.BytesIO()
    stream.close()
    log = DecisionLog(stream)
    log.write(REVIEW, DECISIONS)
    log.flush()
    assert "decision log lines lost" in caplog.text


def test_each_flush_interval_writes_what_came_since_the_last() -> None:
    stream = io.BytesIO()
    log = DecisionLog(stream, flush_seconds=0.02)

    async def two_rounds() -> list[int]:
        counts = []
        for _ in range(2):
            log.write(REVIEW, DECISIONS[:1])
            await asyncio.sleep(0.15)
            counts.append(stream.getvalue().count(b"\n"))
        return counts

    assert asyncio.run(two_rounds()) == [1, 2]


def test_a_loop_that_ended_with_a_flush_scheduled_does_not_stall_the_next() -> None:
    stream = io.BytesIO()
    log = DecisionLog(stream, flush_seconds=0.02)

    async def write_and_leave() -> None:
        log.write(REVIEW, DECISIONS[:1])  # the loop ends before its flush is due

    async def write_and_wait() -> None:
        log.write(REVIEW, DECISIONS[:1])
        await asyncio.sleep(0.15)

    asyncio.run(write_and_leave())
    asyncio.run(write_and_wait())
    assert stream.getvalue().count(b"\n") == 2
    log.write(REVIEW, DECISIONS[:1])  # and off any loop, at once
    assert stream.getvalue().count(b"\n") == 3


def test_a_reused_id_is_not_mistaken_for_the_decisions_rendered_before(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decision_log, "id", lambda _: 1, raising=False)  # every object gets the same id
    stream = io.BytesIO()
    log = DecisionLog(stream)
    log.write(REVIEW, ({"container": "c0", "original": "a"},))
    log.write(REVIEW, ({"container": "c0", "original": "b"},))
    assert [line["original"] for line in lines(stream)] == ["a", "b"]


def test_what_is_kept_rendered_stays_bounded() -> None:
    log = DecisionLog(io.BytesIO())
    for index in range(3000):
        log.write(REVIEW, ({"container": "c0", "original": f"quay.io/team/{index:04}/" + "x" * 2000},))
        assert log.rendered_bytes <= RENDERED_BYTES
    huge = ({"container": "c0", "original": "x" * RENDERED_BYTES},)
    kept = log.rendered_bytes
    log.write(REVIEW, huge)
    assert log.rendered_bytes == kept  # too big to keep: rendered, written, forgotten


def test_a_value_orjson_cannot_encode_loses_the_line_not_the_review(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.BytesIO()
    log = DecisionLog(stream)
    log.write({"uid": "\ud800"}, DECISIONS)  # a lone surrogate
    log.flush()
    assert stream.getvalue() == b""
    assert "decision log line not written" in caplog.text


def test_a_review_that_cannot_be_written_loses_only_its_own_lines(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.BytesIO()
    log = DecisionLog(stream, flush_seconds=60)

    async def three_reviews() -> None:  # on a loop: batched, so made into lines together when flushed
        log.write({**REVIEW, "uid": "first"}, DECISIONS)
        log.write({**REVIEW, "uid": "\ud800"}, DECISIONS)
        log.write({**REVIEW, "uid": "third"}, DECISIONS[:1])
        log.flush()

    asyncio.run(three_reviews())
    assert [(line["uid"], line["container"]) for line in lines(stream)] == [
        ("first", "c0"),
        ("first", "c1"),
        ("third", "c0"),
    ]
    assert "decision log line not written" in caplog.text
