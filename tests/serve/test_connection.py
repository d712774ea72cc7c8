"""The connection layer against the ASGI path uvicorn served: the same answers, byte for byte, for any review.

In-process: a :class:`Connection` is fed raw request bytes through a fake transport and its single write is
parsed; the old path is :class:`WebhookApp` called as the ASGI app it was under uvicorn.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from reviews import make_pod, make_review
from strategies import pods

from webhook.serve import app as app_module
from webhook.serve import connection as connection_module
from webhook.serve.app import DEADLINE_MARGIN, MAX_DEADLINE, RENDERED_ANSWERS, create_app
from webhook.serve.connection import TARGETS_KEPT, Connection, Limits, Registry
from webhook.serve.decision_log import DecisionLog
from webhook.serve.sparse import SparseReview

if TYPE_CHECKING:
    from collections.abc import MutableMapping

    from webhook.core.rules import Rules
    from webhook.serve.app import WebhookApp

QUAY = "quay.io/prometheus/node-exporter:v1.8.2"


class FakeTransport:
    """What a Connection needs of a transport; records each write and whether it closed."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.reading = True
        self.pauses = 0

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return 0


def parse_answers(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    answers = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        answers.append((int(lines[0].split()[1]), headers, rest[:length]))
        data = rest[length:]
    return answers


def exchange(app: WebhookApp, data: bytes, *, max_connections: int = 8) -> tuple[FakeTransport, list[Any]]:
    """Feed ``data`` to a new connection; the transport and the answers it wrote."""

    async def run() -> FakeTransport:
        connection = Connection(app, Registry(max_connections), Limits())
        transport = FakeTransport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        connection.data_received(data)
        for _ in range(100):  # answers that await (none here: no verifier) need a few loop turns
            if connection.task is None:
                break
            await asyncio.sleep(0)
        connection.connection_lost(None)
        return transport

    transport = asyncio.run(run())
    for write in transport.writes:  # one write per answer
        assert len(parse_answers(write)) == 1
    return transport, parse_answers(b"".join(transport.writes))


def request(body: bytes, path: str = "/mutate", extra: bytes = b"") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    ).encode()
    return head + extra + b"\r\n" + body


def asgi_answer(app: WebhookApp, body: bytes, path: str = "/mutate") -> tuple[int, bytes]:
    """What the app answered under uvicorn: its ASGI entry, given the same request."""
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path.partition("?")[0],
        "query_string": path.partition("?")[2].encode(),
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], sent[1]["body"]


ODD_TEXT = [
    ('"image": "', '"image": 7, "x": "'),  # an image that is not a string
    ('"containers": [', '"containers": [null, '),  # a container that is not an object
    ('"annotations": {', '"annotations": {"n": 1, '),  # an annotation that is not a string
    ('"metadata": {', '"metadata": {"labels": {"a": "\\ud800"}, '),  # a lone surrogate where nothing reads
    ('"metadata": {', '"metadata": {"labels": {"a": "\xff"}, '),  # invalid UTF-8 where nothing reads
    ('"name": "', '"name": "first", "name": "'),  # a duplicate key: the last one counts
    ('"image": "', '"image": "first", "image": "'),
    ('"spec": {', '"spec": {"imagePullSecrets": [{"name": "pull"}], '),
    ('"spec": {', '"spec": {"volumes": [{"name": "v", "image": {"reference": "quay.io/a/b:1"}}, {"name": "w"}], '),
    ('"volumes": [', '"volumes": [{"name": "x", "image": "quay.io/a/b:1"}, '),  # an image that is not an object
    ('"object": {', '"object": {"spec": null, '),
    ('"uid": "', '"uid": 5, "x": "'),
    ('"kind": {"group": "", ', '"kind": {"group": 0, '),
]


@st.composite
def request_bodies(draw: st.DrawFn) -> bytes:
    """API-server-shaped reviews of odd pods, and bodies that are not reviews at all."""
    text = draw(plain_bodies()).decode("latin-1")
    for old, new in draw(st.lists(st.sampled_from(ODD_TEXT), max_size=3)):
        index = text.find(old)
        if index >= 0:
            text = text[:index] + new + text[index + len(old) :]
    return text.encode("latin-1")


@st.composite
def plain_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["pod", "pod", "pod", "update", "debug", "odd-json", "not-json", "other-kind"]))
    if kind == "not-json":
        return draw(st.sampled_from([b"{", b"\xff\xfe", b"NaN", b'{"a": 1, "a": 2', b"[" * 1000]))
    if kind == "odd-json":
        return draw(st.sampled_from([b"[]", b"1", b'"x"', b"null", b'{"apiVersion": "v1"}', b'{"a": 1, "a": 2}']))
    pod = draw(pods())
    if kind == "other-kind":
        review = make_review(make_pod(QUAY))
        review["request"]["kind"] = {"group": "apps", "version": "v1", "kind": "Deployment"}
        review["request"]["object"] = pod
    elif kind == "update":
        review = make_review(make_pod(QUAY), operation="UPDATE")
        review["request"]["object"] = pod
    elif kind == "debug":
        review = make_review(make_pod(QUAY), operation="UPDATE", sub_resource="ephemeralcontainers")
        review["request"]["object"] = pod
    else:
        review = make_review(make_pod(QUAY))
        review["request"]["object"] = pod
    return json.dumps(review, ensure_ascii=draw(st.booleans())).encode()


def reference_app(rules: Rules) -> WebhookApp:
    """The app as it answered before the sparse decode: every body decoded whole with orjson."""
    app = create_app(rules)
    app.sparse = False
    return app


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=request_bodies(), path=st.sampled_from(["/mutate", "/audit", "/mutate?timeout=3s"]))
def test_answers_are_byte_identical_to_the_asgi_path(rules: Rules, body: bytes, path: str) -> None:
    """The ASGI path with the whole-body decode (as under uvicorn) against the connection with the sparse one."""
    expected = asgi_answer(reference_app(rules), body, path)
    _, answers = exchange(create_app(rules), request(body, path))
    assert [(status, answer) for status, _, answer in answers] == [expected]


def test_pipelined_requests_are_answered_in_order(rules: Rules) -> None:
    bodies = [json.dumps(make_review(make_pod(QUAY))).encode() for _ in range(3)]
    transport, answers = exchange(create_app(rules), b"".join(request(body) for body in bodies))
    assert [json.loads(answer)["response"]["uid"] for _, _, answer in answers] == [
        json.loads(body)["request"]["uid"] for body in bodies
    ]
    assert len(transport.writes) == 3
    assert not transport.closed


def test_a_chunked_body_is_read_whole(rules: Rules) -> None:
    body = json.dumps(make_review(make_pod(QUAY))).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:100], body[100:])) + b"0\r\n\r\n"
    head = b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    _, answers = exchange(create_app(rules), head + chunks)
    assert [status for status, _, _ in answers] == [200]


def test_reading_pauses_only_while_an_answer_is_pending(rules: Rules) -> None:
    """An answer made at once needs no pause; one that awaits (the FastAPI app here) stops reading until written."""

    async def run() -> tuple[FakeTransport, bool, int]:
        connection = Connection(create_app(rules), Registry(8), Limits())
        transport = FakeTransport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        connection.data_received(request(json.dumps(make_review(make_pod(QUAY))).encode()))
        after_mutate = transport.pauses
        connection.data_received(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        reading_while_pending = transport.reading
        for _ in range(100):
            if connection.task is None:
                break
            await asyncio.sleep(0)
        connection.connection_lost(None)
        return transport, reading_while_pending, after_mutate

    transport, reading_while_pending, after_mutate = asyncio.run(run())
    assert after_mutate == 0
    assert not reading_while_pending
    assert transport.reading
    assert [status for status, _, _ in parse_answers(b"".join(transport.writes))] == [200, 200]


@pytest.mark.parametrize(
    "data",
    [
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
        b"POST /mutate HTTP/1.1\nHost: x\nContent-Length: 2\n\n{}",
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /mutate HTTP/1.1\r\nHost: x\x00\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    ],
    ids=["cl-and-te", "bad-chunk", "bare-lf", "obs-fold", "nul", "two-lengths"],
)
def test_framing_attacks_are_400_and_closed(rules: Rules, data: bytes) -> None:
    transport, answers = exchange(create_app(rules), data)
    assert [(status, headers.get("connection")) for status, headers, _ in answers] == [(400, "close")]
    assert transport.closed


def test_an_upgrade_is_answered_as_plain_http_and_closed(rules: Rules) -> None:
    data = b"GET /healthz HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nrest"
    transport, answers = exchange(create_app(rules), data)
    assert [(status, headers.get("connection")) for status, headers, _ in answers] == [(200, "close")]
    assert transport.closed


def test_over_the_body_limit_is_413_before_the_body_is_read(rules: Rules) -> None:
    app = create_app(rules)
    head = b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 3145729\r\n\r\n"
    transport, answers = exchange(app, head + b"{")
    assert [status for status, _, _ in answers] == [413]
    assert transport.closed


def test_a_streamed_body_over_the_limit_is_413(rules: Rules) -> None:
    head = b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    block = b"a" * 65536
    chunks = b"%x\r\n%s\r\n" % (len(block), block) * 49  # 3.06 MiB, over 3 MiB
    transport, answers = exchange(create_app(rules), head + chunks)
    assert [status for status, _, _ in answers] == [413]
    assert transport.closed


def test_over_the_connection_limit_admissions_are_503_and_health_is_200(rules: Rules) -> None:
    _, answers = exchange(create_app(rules), request(b"{}"), max_connections=0)
    assert [(status, headers.get("connection")) for status, headers, _ in answers] == [(503, "close")]
    _, answers = exchange(create_app(rules), b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", max_connections=0)
    assert [status for status, _, _ in answers] == [200]


def test_other_paths_go_to_the_fastapi_app(rules: Rules) -> None:
    app = create_app(rules)
    _, answers = exchange(app, b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\nGET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [status for status, _, _ in answers] == [200, 404]  # pipelined behind an answer that awaits: in order
    assert json.loads(answers[0][2])["status"] == "ok"


def test_each_answer_has_its_own_status_content_type_and_length(rules: Rules) -> None:
    review = json.dumps(make_review(make_pod(QUAY))).encode()
    data = (
        request(review)
        + b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        + request(review)
        + b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"
        + request(b"{}")
    )
    _, answers = exchange(create_app(rules), data)
    assert [status for status, _, _ in answers] == [200, 200, 200, 404, 400]
    kinds = [headers["content-type"].partition(";")[0] for _, headers, _ in answers]
    assert kinds == ["application/json", "text/plain", "application/json", "application/json", "application/json"]
    assert [headers.get("connection") for _, headers, _ in answers] == [None, None, None, None, "close"]
    assert json.loads(answers[2][2])["response"]["patchType"] == "JSONPatch"


def test_answer_heads_kept_made_stay_bounded() -> None:
    for index in range(3 * connection_module.HEADS_KEPT):
        head = connection_module._head(200, b"text/x-%d" % index)  # the memo's bound
        assert head == b"HTTP/1.1 200 OK\r\ncontent-type: text/x-%d\r\ncontent-length: " % index
    assert len(connection_module._HEADS) <= connection_module.HEADS_KEPT


def test_only_a_post_is_a_review(rules: Rules) -> None:
    body = json.dumps(make_review(make_pod(QUAY))).encode()
    for method in ("GET", "PUT"):
        _, answers = exchange(create_app(rules), request(body).replace(b"POST", method.encode(), 1))
        assert [status for status, _, _ in answers] == [404], method  # the FastAPI app's answer: no such route


def test_an_empty_review_is_400_and_closes(rules: Rules) -> None:
    transport, answers = exchange(create_app(rules), request(b""))
    assert [(status, json.loads(body)["error"]) for status, _, body in answers] == [(400, "request body is empty")]
    assert transport.closed


def test_a_review_pipelined_behind_an_awaited_answer_waits_its_turn(rules: Rules) -> None:
    review = request(json.dumps(make_review(make_pod(QUAY))).encode())
    _, answers = exchange(create_app(rules), b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n" + review)
    assert [(status, "response" in json.loads(body)) for status, _, body in answers] == [(200, False), (200, True)]


def test_a_body_past_the_api_servers_deadline_is_408_and_counted_as_failing_open(rules: Rules) -> None:
    app = create_app(rules)

    async def run() -> FakeTransport:
        connection = Connection(app, Registry(8), Limits())
        transport = FakeTransport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        head = b"POST /mutate?timeout=1s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9\r\n"
        connection.data_received(head + b"\r\n{")  # a body that stops short
        assert connection.expires < asyncio.get_running_loop().time() + 1  # 90% of the API server's 1 s
        connection.expired()  # what the registry's sweep does when that time comes
        connection.connection_lost(None)
        return transport

    transport = asyncio.run(run())
    assert [status for status, _, _ in parse_answers(b"".join(transport.writes))] == [408]
    assert transport.closed
    samples = app.metrics.registry.get_sample_value
    assert samples("ecr_ptc_webhook_failed_open_total", {"cause": "body_deadline"}) == 1
    assert samples("ecr_ptc_webhook_requests_total", {"path": "/mutate", "code": "408"}) == 1


def test_each_request_target_has_its_own_deadline_and_mode(rules: Rules) -> None:
    """Targets are parsed once and kept (the API server sends one target each time): never one for another."""
    app = create_app(rules)
    registry = Registry(8)
    body = json.dumps(make_review(make_pod(QUAY))).encode()
    seen: list[tuple[str, float, float, bool]] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for seconds in range(1, TARGETS_KEPT + 40):  # more targets than are kept: the memo starts over
            for path in ("/mutate", "/audit"):
                connection = Connection(app, registry, Limits())
                transport = FakeTransport()
                connection.connection_made(transport)  # type: ignore[arg-type]
                head = request(body, f"{path}?timeout={seconds}s")
                connection.data_received(head[:-1])  # all but the body's last byte
                left = connection.expires - loop.time()
                connection.data_received(head[-1:])
                ((_, _, answer),) = parse_answers(b"".join(transport.writes))
                seen.append((path, seconds, left, "patch" in json.loads(answer)["response"]))
                connection.connection_lost(None)
                assert len(registry.targets) <= TARGETS_KEPT

    asyncio.run(run())
    for path, seconds, left, patched in seen:
        expected = min(seconds, MAX_DEADLINE) * DEADLINE_MARGIN
        assert expected - 0.5 < left <= expected, (path, seconds, left)
        assert patched == (path == "/mutate"), (path, seconds)


def _with_identity(body: bytes, uid: str, name: str) -> bytes:
    """``body`` as another pod of the same template would send it: another uid and pod name, nothing else."""
    try:
        review = json.loads(body)
    except ValueError:
        return body
    request = review.get("request") if isinstance(review, dict) else None
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str):
        return body
    request["uid"] = uid
    pod = request.get("object")
    metadata = pod.get("metadata") if isinstance(pod, dict) else None
    if isinstance(metadata, dict):
        metadata["name"] = name
    return json.dumps(review).encode()


def _decision_lines(app: WebhookApp) -> list[bytes]:
    app.decision_log.flush()
    stream = app.decision_log._stream
    assert isinstance(stream, io.BytesIO)
    return stream.getvalue().splitlines()


def _logging_app(rules: Rules, *, sparse: bool) -> WebhookApp:
    app = create_app(rules)
    app.sparse = sparse
    app.decision_log = DecisionLog(io.BytesIO(), clock=lambda: 0.0)
    return app


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=request_bodies(),
    uids=st.lists(st.text(min_size=1, max_size=8), min_size=2, max_size=3),
    path=st.sampled_from(["/mutate", "/audit"]),
)
def test_answers_from_the_cache_are_byte_identical_to_deciding_in_full(
    rules: Rules, body: bytes, uids: list[str], path: str
) -> None:
    """Pods of one template, one after another: the second and later come from the cache without building the pod.

    Their answers, decision lines and decision counts equal those of the general path deciding each in full.
    """
    logging.getLogger("webhook.decisions").setLevel(logging.INFO)
    fast, reference = _logging_app(rules, sparse=True), _logging_app(rules, sparse=False)
    bodies = [_with_identity(body, uid, f"pod-{index}") for index, uid in enumerate(uids)]
    for each in bodies:
        _, answers = exchange(fast, request(each, path))
        assert [(status, answer) for status, _, answer in answers] == [asgi_answer(reference, each, path)]
    assert _decision_lines(fast) == _decision_lines(reference)
    assert _decision_counts(fast) == _decision_counts(reference)
    assert fast.reviews.hits == reference.reviews.hits  # the same pods were answered from the cache


def _decision_counts(app: WebhookApp) -> list[bytes]:
    scrape = generate_latest(app.metrics.registry).splitlines()
    return [line for line in scrape if line.startswith(b"ecr_ptc_webhook_decisions_total")]


def test_a_template_seen_before_is_answered_without_building_the_pod(
    rules: Rules, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(rules)
    first = json.dumps(make_review(make_pod(QUAY))).encode()
    exchange(app, request(first))
    assert app.reviews.misses == 1

    def built(_self: object) -> None:
        raise AssertionError("the pod was built")

    monkeypatch.setattr(SparseReview, "review", built)
    second = _with_identity(first, 'a"uid\\é', "other")
    _, answers = exchange(app, request(second))
    assert app.reviews.hits == 1
    answer = json.loads(answers[0][2])
    assert answer["response"]["uid"] == 'a"uid\\é'
    assert answer["response"]["patchType"] == "JSONPatch"


def test_an_error_while_answering_from_the_cache_decides_in_full(rules: Rules, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(rules)
    body = json.dumps(make_review(make_pod(QUAY))).encode()
    expected = exchange(app, request(body))[1]

    def broken(*_args: object) -> None:
        raise RuntimeError("broken")

    monkeypatch.setattr(app, "_render", broken)
    assert exchange(app, request(body))[1] == expected


def test_kept_renderings_stay_within_their_bounds(rules: Rules, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "RENDERED_BYTES", 2 * 1024 * 1024)  # 400 templates' renderings hold about 7 MiB
    app = create_app(rules)
    images = [f"quay.io/team/app-{index}:1.{index}" for index in range(400)]
    for image in images:  # each template twice: the second is answered from the cache, and rendered
        body = json.dumps(make_review(make_pod(image, f"docker.io/library/nginx:1.{len(image)}"))).encode()
        exchange(app, request(body) + request(_with_identity(body, "other", "other")))
        assert app.rendered_bytes <= app_module.RENDERED_BYTES
        assert len(app._rendered) <= RENDERED_ANSWERS
    assert app.reviews.hits == len(images)
    assert 0 < len(app._rendered) < len(images)  # started over at least once


def test_a_huge_answer_is_rendered_for_its_review_only(rules: Rules) -> None:
    app = create_app(rules)
    pod = make_pod(*(f"quay.io/team/app:{index}" for index in range(170)))
    body = json.dumps(make_review(pod)).encode()
    first, second = exchange(app, request(body) + request(_with_identity(body, "other", "other")))[1]
    assert app.reviews.hits == 1
    assert json.loads(second[2])["response"]["patch"] == json.loads(first[2])["response"]["patch"]
    assert not app._rendered
    assert app.rendered_bytes == 0
