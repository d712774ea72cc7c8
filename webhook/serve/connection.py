"""One HTTP/1.1 connection of the admission port: limits, timers, accounting and a single write per answer.

The parser is httptools (llhttp, the parser of Node.js): it frames requests and refuses what is malformed
(``Content-Length`` with ``Transfer-Encoding``, bad chunks, bare LF, obs-fold, NUL). Everything around it is ours:

- every connection is always under exactly one bound, so no client holds one for free: the request line and headers
  must arrive within ``header_timeout`` of the connection opening (or of the first byte of a later request), the
  body within the API server's ``?timeout=`` (:func:`webhook.serve.app.deadline_seconds`), and a kept-open connection
  may sit idle for ``keepalive_timeout`` between requests;
- the request head is capped in bytes and header count (431, closed), the body at the app's limit (413), and a
  connection reads nothing more while an answer is being made or cannot be written (its memory is one request);
- each answer is one ``transport.write``: status line, headers with ``Content-Length``, body. After a 4xx, an
  HTTP/1.0 request or while the server stops, the answer says ``Connection: close`` and the connection closes.

``POST /mutate`` and ``POST /audit`` go straight to :meth:`WebhookApp.answer`; ``GET /healthz`` is answered here;
everything else goes to the FastAPI app through a small ASGI bridge (:meth:`Connection._asgi`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple, cast

import httptools
import orjson

from webhook.exceptions import AdmissionError
from webhook.serve.allocator import TRIM_AFTER_CLOSED, TRIM_INTERVAL, release_free_memory
from webhook.serve.app import ADMISSION_PATHS, DEADLINE_MARGIN, DEFAULT_DEADLINE, check_request, deadline_seconds

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, MutableMapping

    from webhook.core.admission import Mode
    from webhook.serve.app import WebhookApp

log = logging.getLogger("webhook.server")

HANDSHAKE_TIMEOUT: Final = 5.0
"""Seconds for the TLS handshake (the API server's takes milliseconds)."""
HEADER_TIMEOUT: Final = 10.0
"""Seconds for the request line and headers, from the connection's opening or a later request's first byte."""
KEEPALIVE_TIMEOUT: Final = 30.0
"""Seconds a kept-open connection may wait for its next request (the API server keeps idle ones 90 s)."""
MAX_HEADER_BYTES: Final = 16 * 1024
"""Request line and headers together; the API server sends a few hundred bytes."""
MAX_HEADERS: Final = 64
RESOLUTION: Final = 0.05
"""Seconds between checks of the connections' bounds: how late a bound may be enforced. The body's deadline is 90%
of the API server's timeout (at least 1 s), so a 408 still comes before the API server gives up."""
_NOT_IN_TIME: Final = (408, "request not received in time")
_BODY_LATE: Final = (408, "request body not received within the API server's timeout")
MAX_PIPELINED: Final = 16
"""Requests queued behind the one being answered (the API server never pipelines; a client that does is served in
order, up to this many at a time)."""
OTHER_BODY_LIMIT: Final = 64 * 1024
"""Body bytes accepted on the paths that are not admission reviews (none takes a body)."""
_REASONS: Final = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}
_JSON: Final = b"application/json"
_HEALTHY: Final = b'{"status":"ok"}'
_OVERLOADED: Final = b'{"error":"over the connection limit; try again"}'


class _Target(NamedTuple):
    """What a request target says, parsed once per distinct target (the API server sends the same one each time)."""

    raw_path: bytes
    path: str
    query: bytes
    mode: Mode | None
    """The review's mode if the path is an admission path (for a ``POST``)."""
    seconds: float
    """The API server's ``?timeout=`` (:func:`webhook.serve.app.deadline_seconds`)."""


TARGETS_KEPT: Final = 64
"""Distinct request targets kept parsed; past that, the memo starts over."""
_NO_TARGET: Final = _Target(b"", "", b"", None, DEFAULT_DEADLINE)
"""Before a connection's first request head is complete."""


class _Request(NamedTuple):
    """One request as parsed, kept apart from the parser's state so the next one can be parsed meanwhile."""

    path: str
    raw_path: bytes
    query: bytes
    method: bytes
    http_version: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool
    mode: Mode | None
    started: float
    deadline: float


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection bounds (``serve`` flags); see the module's docstring."""

    header_timeout: float = HEADER_TIMEOUT
    keepalive_timeout: float = KEEPALIVE_TIMEOUT
    max_header_bytes: int = MAX_HEADER_BYTES
    max_headers: int = MAX_HEADERS


class Registry:
    """The server's view of its connections: how many, which are idle, and whether it is stopping."""

    def __init__(self, max_connections: int) -> None:
        """Admit up to ``max_connections`` connections; those beyond are answered 503 and closed."""
        self.max_connections = max_connections
        self.connections: dict[Connection, None] = {}
        """Admitted connections, in the order they last became idle or opened (oldest first)."""
        self.open: set[Connection] = set()
        """Every connection not yet lost, admitted or not, closing or not: what a stop aborts at its end."""
        self.closing = False
        """Set while the server stops: every answer closes its connection."""
        self.shed = 0
        """Connections refused for being over the limit."""
        self._sweeping: asyncio.AbstractEventLoop | None = None
        self.closed_since_trim = 0
        """Connections lost since memory was last given back (see ``webhook.serve.allocator``)."""
        self._trimmed_at = -math.inf
        self.closed_total = 0
        """Connections lost since the start: trims begin once it reaches :data:`TRIM_AFTER_CLOSED`."""
        self.targets: dict[bytes, _Target] = {}
        """Request targets parsed (see :meth:`target`)."""

    def target(self, url: bytes) -> _Target:
        """``url`` parsed, from the memo when seen (raises ``httptools.HttpParserInvalidURLError`` as parsing does)."""
        found = self.targets.get(url)
        if found is not None:
            return found
        parsed = httptools.parse_url(url)
        path = parsed.path.decode("latin-1")
        query = cast("bytes | None", parsed.query) or b""  # the stubs say bytes; it is None without a query
        target = _Target(parsed.path, path, query, ADMISSION_PATHS.get(path), deadline_seconds(query))
        if len(self.targets) >= TARGETS_KEPT:
            self.targets.clear()
        self.targets[url] = target
        return target

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Sweep the connections' bounds every :data:`RESOLUTION` seconds while any is open."""
        if self._sweeping is not loop:
            self._sweeping = loop
            loop.call_later(RESOLUTION, self.sweep, loop)

    def sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Act on every bound that ran out; come back while connections are open.

        One sweep for all connections instead of a timer per request: arming and cancelling three event-loop timers
        per request cost more than the request's HTTP handling (hack/bench).
        """
        now = loop.time()
        for connection in [connection for connection in self.open if connection.expires <= now]:
            connection.expired()
        many = self.closed_since_trim >= TRIM_AFTER_CLOSED or (self.closed_since_trim and not self.open)
        if many and now - self._trimmed_at >= TRIM_INTERVAL and self.closed_total >= TRIM_AFTER_CLOSED:
            self.closed_since_trim = 0
            self._trimmed_at = now
            release_free_memory()
        if self._sweeping is not loop:
            return
        if self.open or self.closed_since_trim:
            loop.call_later(RESOLUTION, self.sweep, loop)
        else:
            self._sweeping = None

    def admit(self, connection: Connection) -> bool:
        """Take ``connection`` in; when full, make room by closing the longest-waiting one, else refuse it.

        Waiting: kept open between requests, or open without a byte sent yet. Those holding part of a request are
        never closed for room: the newcomer is refused instead.
        """
        if len(self.connections) >= self.max_connections:
            idle = next((other for other in self.connections if other.evictable), None)
            if idle is None:
                self.shed += 1
                return False
            idle.close()
        self.connections[connection] = None
        return True

    def became_idle(self, connection: Connection) -> None:
        """Move ``connection`` to the end: the oldest idle connection is the first evicted."""
        if connection in self.connections:
            del self.connections[connection]
            self.connections[connection] = None

    def remove(self, connection: Connection) -> None:
        """Stop counting a closing connection against the limit."""
        self.connections.pop(connection, None)


class Connection(asyncio.Protocol):
    """One client connection (after the TLS handshake): parse, bound, dispatch, answer."""

    def __init__(self, app: WebhookApp, registry: Registry, limits: Limits) -> None:
        """Serve ``app`` under ``limits``, accounted in ``registry``."""
        self.app = app
        self.registry = registry
        self.limits = limits
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.admitted = False
        self.idle = False
        """Between requests (no byte of the next one yet): what may be closed at once to make room or to stop."""
        self.expires = math.inf
        """Loop time at which the connection's current bound runs out (checked by :meth:`Registry.sweep`)."""
        self._expiry = _NOT_IN_TIME
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._url = b""
        self._target = _NO_TARGET
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_size = 0
        self._content_type = b""
        self._content_length = b""
        self._body: list[bytes] = []
        self._body_size = 0
        self._body_limit = 0
        self._refusal: tuple[int, str] | None = None
        self._mode: Mode | None = None
        self._started = 0.0
        self._deadline = 0.0
        self._busy = False
        self._paused = False
        self._write_paused = False
        self._closed = False
        self._received = False
        self._upgraded = False
        self._queue: collections.deque[_Request] = collections.deque()
        self.task: asyncio.Task[None] | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Count the connection in; over the limit it is still read, but its requests are answered 503."""
        self.transport = cast("asyncio.Transport", transport)  # uvloop's TLS transport is one, not a subclass
        self.registry.open.add(self)
        self.registry.watch(self.loop)
        self.admitted = self.registry.admit(self)
        self._arm(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - the reason changes nothing here
        """Forget the connection; an answer still being made is dropped (the client is gone)."""
        self._closed = True
        self._disarm()
        self.registry.remove(self)
        self.registry.open.discard(self)
        self.registry.closed_since_trim += 1
        self.registry.closed_total += 1
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        """Feed the parser; a head over its byte limit is refused before it is buffered further."""
        if self._closed:
            return
        if self.idle:
            self.idle = False
            self._arm(self.limits.header_timeout)
        self._received = True
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Answered as plain HTTP; what follows would be another protocol, so the connection ends with the answer.
            self._upgraded = True
            if not self._busy:
                self.close()
            return
        except httptools.HttpParserError as error:
            if self._refusal is not None:
                self._fail(*self._refusal)
            else:
                self._fail(400, f"malformed request: {error}")
            return
        except Exception:  # an error of ours, not the client's: answered 500, and the connection closed
            log.exception("request failed")
            self._fail(500, "internal error")
            return
        if self._in_head and self._head_bytes > self.limits.max_header_bytes and not self._closed:
            self._fail(431, f"request line and headers over {self.limits.max_header_bytes} bytes")

    def eof_received(self) -> bool | None:
        """The client closed its side: close ours (an answer in progress is dropped with the connection)."""
        return None

    def pause_writing(self) -> None:
        """The client does not read its answers: stop reading its requests until it does."""
        self._write_paused = True
        self._pause()

    def resume_writing(self) -> None:
        """The client read; read its requests again unless an answer is being made."""
        self._write_paused = False
        if not self._busy:
            self._resume()

    # httptools callbacks

    def on_message_begin(self) -> None:
        """A request starts: reset its state."""
        if len(self._queue) >= MAX_PIPELINED:
            self._refuse(400, f"more than {MAX_PIPELINED} requests pipelined")
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._url = b""
        self._headers = []
        self._header_size = 0
        self._content_type = b""
        self._content_length = b""
        self._body = []
        self._body_size = 0
        self._refusal = None
        self._started = time.perf_counter()

    def on_url(self, url: bytes) -> None:
        """Part of the request target."""
        self._url += url
        if len(self._url) > self.limits.max_header_bytes:
            self._refuse(431, f"request target over {self.limits.max_header_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header; only those the app reads are kept apart."""
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            self._refuse(431, f"more than {self.limits.max_headers} headers")
        lower = name.lower()
        if lower == b"content-type":
            self._content_type = value
        elif lower == b"content-length":
            self._content_length = value
        self._headers.append((lower, value))
        self._header_size += len(name) + len(value) + 4  # ": " and CRLF

    def on_headers_complete(self) -> None:
        """The head is in: check it, then wait for the body under the request's own deadline."""
        self._in_head = False
        self._upgraded = self._upgraded or self.parser.should_upgrade()
        if len(self._url) + self._header_size > self.limits.max_header_bytes:
            self._refuse(431, f"request line and headers over {self.limits.max_header_bytes} bytes")
        self._target = target = self.registry.target(self._url)
        self._mode = target.mode if target.mode is not None and self.parser.get_method() == b"POST" else None
        if self._mode is None:
            self._body_limit = OTHER_BODY_LIMIT
            self._arm(self.limits.header_timeout)
            return
        self._body_limit = self.app.body_limit
        try:
            check_request(self._content_type, self._content_length, self._body_limit)
        except AdmissionError as error:
            self._refuse(error.status, error.message)
        self._deadline = self.expires = self.loop.time() + target.seconds * DEADLINE_MARGIN
        self._expiry = _BODY_LATE

    def on_body(self, body: bytes) -> None:
        """A part of the body, counted against the limit as it arrives."""
        self._body_size += len(body)
        if self._body_size > self._body_limit:
            self._refuse(413, f"request body is over the {self._body_limit}-byte limit")
        self._body.append(body)

    def on_message_complete(self) -> None:
        """The request is in: answer it, or queue it behind the one being answered (pipelining)."""
        self._disarm()
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body = []
        mode = self._mode
        if mode is not None and body and self.admitted and not self._busy:  # a review, as the API server sends them
            self._busy = True
            self._review(
                self._target.path, mode, body, self._deadline, self._started, keep_alive=self.parser.should_keep_alive()
            )
        else:
            target = self._target
            request = _Request(
                path=target.path,
                raw_path=target.raw_path,
                query=target.query,
                method=self.parser.get_method(),
                http_version=self.parser.get_http_version(),
                headers=self._headers,
                body=body,
                keep_alive=self.parser.should_keep_alive(),
                mode=mode,
                started=self._started,
                deadline=self._deadline,
            )
            if self._busy:
                self._queue.append(request)
            else:
                self._dispatch(request)
        if self._busy:
            self._pause()  # nothing more is read until the answer is made (most are made before this line)

    def _dispatch(self, request: _Request) -> None:
        self._busy = True
        path, keep_alive = request.path, request.keep_alive
        if not self.admitted:
            self._answer(*((200, _HEALTHY) if path == "/healthz" else (503, _OVERLOADED)), keep_alive=False)
            return
        if request.mode is None:
            if path == "/healthz" and request.method == b"GET":
                self._answer(200, _HEALTHY, keep_alive=keep_alive)
                return
            self.task = self.loop.create_task(self._asgi(request))
            return
        if not request.body:
            body = self.app.refuse(path, 400, "request body is empty", request.started)
            self._answer(400, body, keep_alive=False)
            return
        self._review(path, request.mode, request.body, request.deadline, request.started, keep_alive=keep_alive)

    def _review(  # noqa: PLR0913 - one request's fields, passed once
        self, path: str, mode: Mode, body: bytes, deadline: float, started: float, *, keep_alive: bool
    ) -> None:
        """Answer an admission review, now or once the app's coroutine is done."""
        result = self.app.answer(path, mode, body, deadline, started)
        if isinstance(result, tuple):
            self._answer(*result, keep_alive=keep_alive and result[0] < 400)
        else:
            self.task = self.loop.create_task(self._await_answer(result, keep_alive=keep_alive))

    # answering

    async def _await_answer(self, pending: Coroutine[Any, Any, tuple[int, bytes]], *, keep_alive: bool) -> None:
        status, body = await pending
        self._answer(status, body, keep_alive=keep_alive and status < 400)

    async def _asgi(self, request: _Request) -> None:
        """Serve one request with the FastAPI app (readiness, metrics, 404s), its answer in one write."""
        path, body = request.path, request.body
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": request.http_version,
            "method": request.method.decode("latin-1"),
            "scheme": "https",
            "path": path,
            "raw_path": request.raw_path,
            "query_string": request.query,
            "root_path": "",
            "headers": request.headers,
            "client": None,
            "server": None,
            "state": {},
        }
        received = False
        status = 500
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def receive() -> MutableMapping[str, Any]:
            nonlocal received
            if received:
                await asyncio.Event().wait()  # as a server does: a disconnect would come here; none will
            received = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", ())]
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        try:
            await self.app.api(scope, receive, send)
        except Exception:
            log.exception("request failed", extra={"path": path})
            status, headers, chunks = 500, [(b"content-type", b"text/plain")], [b"Internal Server Error"]
        content_type = next((value for name, value in headers if name == b"content-type"), b"text/plain")
        self._answer(status, b"".join(chunks), keep_alive=request.keep_alive, content_type=content_type)

    def _answer(self, status: int, body: bytes, *, keep_alive: bool, content_type: bytes = _JSON) -> None:
        """Write one answer in one write; then read the next request, or close."""
        transport = self.transport
        self._busy = False
        self.task = None
        if transport is None or self._closed:
            return
        close = not keep_alive or self.registry.closing or not self.admitted or self._upgraded
        head = _HEADS.get((status, content_type)) or _head(status, content_type)
        transport.write(b"%s%d%s%s" % (head, len(body), _CLOSE if close else _KEEP_OPEN, body))
        if close:
            self.close()
            return
        if self._queue:
            self._dispatch(self._queue.popleft())
            return
        self.idle = True
        self.registry.became_idle(self)
        self._arm(self.limits.keepalive_timeout)
        if not self._write_paused:
            self._resume()

    def _refuse(self, status: int, message: str) -> None:
        """Stop parsing this request: the parser raises, and :meth:`data_received` answers ``status``."""
        self._refusal = (status, message)
        raise httptools.HttpParserCallbackError(message)

    def _fail(self, status: int, message: str) -> None:
        """Answer a request that cannot be served, then close: its framing can no longer be trusted."""
        if self._closed or self._busy:
            if not self._closed:
                self.close()
            return
        path = httptools.parse_url(self._url).path.decode("latin-1") if self._url else ""
        body = self.app.refuse(path, status, message, self._started) if self._mode is not None else _error(message)
        self._busy = True
        self._answer(status, body, keep_alive=False)

    @property
    def evictable(self) -> bool:
        """Waiting for a request with nothing of it received: closing it now loses nothing."""
        return self.idle or (not self._started and not self._received)

    @property
    def busy(self) -> bool:
        """A request has arrived in part or whole and is not answered yet."""
        return self._busy or (not self._in_head and not self.idle and self._started > 0)

    def close(self) -> None:
        """Close now (buffered answers are still sent)."""
        self._disarm()
        self.idle = False
        if self.transport is not None and not self._closed:
            self._closed = True
            self.transport.close()
            self.registry.remove(self)
            if self.transport.get_write_buffer_size():  # a client that does not read: not kept for long
                self.loop.call_later(self.limits.header_timeout, self.abort)

    def abort(self) -> None:
        """Close without sending what is buffered: for a client that stopped reading."""
        self._closed = True
        self._disarm()
        if self.transport is not None:
            self.transport.abort()
        self.registry.remove(self)

    # bounds: one at a time per connection, a time and what to answer; the registry's sweep enforces them

    def _arm(self, seconds: float) -> None:
        self.expires = self.loop.time() + seconds
        self._expiry = _NOT_IN_TIME

    def _disarm(self) -> None:
        self.expires = math.inf

    def expired(self) -> None:
        """The current bound ran out: close, or answer the request in progress (408) and close."""
        self.expires = math.inf
        status, message = self._expiry
        if self._closed:
            return
        if self.idle or not self._started or self._in_head:
            self.close()  # idle, or a head that never came: nothing to answer
            return
        self._fail(status, message)

    def _pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            with contextlib.suppress(RuntimeError):
                self.transport.pause_reading()

    def _resume(self) -> None:
        if self._paused and self.transport is not None and not self._closed:
            self._paused = False
            with contextlib.suppress(RuntimeError):
                self.transport.resume_reading()


_HEADS: Final[dict[tuple[int, bytes], bytes]] = {}
"""Status line and content type, up to ``content-length: ``, by status and content type (made once each)."""
HEADS_KEPT: Final = 32
"""Heads kept made; the app answers with a handful of statuses and content types."""
_KEEP_OPEN: Final = b"\r\n\r\n"
_CLOSE: Final = b"\r\nconnection: close\r\n\r\n"


def _head(status: int, content_type: bytes) -> bytes:
    """An answer's head up to its length: formatting the whole head each time cost a microsecond (timeit)."""
    head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: " % (
        status,
        _REASONS.get(status, b"Unknown"),
        content_type,
    )
    if len(_HEADS) < HEADS_KEPT:
        _HEADS[status, content_type] = head
    return head


def _error(message: str) -> bytes:
    return orjson.dumps({"error": message})


def factory(app: WebhookApp, registry: Registry, limits: Limits) -> Callable[[], Connection]:
    """What ``loop.create_server`` calls for each connection."""
    return lambda: Connection(app, registry, limits)
