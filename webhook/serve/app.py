"""The HTTP app: admission endpoints, health, metrics. Decoding and encoding here; deciding in ``admission``.

Before decoding, as controller-runtime's ``http.go`` does: a body over the limit is refused while it is read (413,
never buffered whole), an empty body or a wrong content type is a 400. ``POST /mutate`` and ``POST /audit`` take a
lean path, raw ASGI and orjson, in front of FastAPI: FastAPI's routing, middleware and request objects cost more
than deciding a pod. Everything else (health, readiness, metrics, 404s) is served by FastAPI.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol
from urllib.parse import parse_qs

import orjson
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook.core.admission import Mode, Outcome, Review, failed_open, parse_review, review
from webhook.core.reasons import Reason
from webhook.core.review_cache import ReviewCache
from webhook.exceptions import AdmissionError
from webhook.serve.deadlines import Deadlines
from webhook.serve.decision_log import DecisionLog
from webhook.serve.metrics import DecisionCounts, Metrics
from webhook.serve.sparse import SparseReview, decode_sparse

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from webhook.core.patch import PodPlan
    from webhook.core.rules import Decision, Rules

log = logging.getLogger("webhook.decisions")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Health = Callable[[], tuple[bool, str]]

BODY_LIMIT: Final = 3 * 1024 * 1024
"""The API server's own limit on an AdmissionReview body."""
DEFAULT_DEADLINE: Final = 10.0
"""Seconds allowed when the API server sends no ``?timeout=`` (its default webhook timeout)."""
MAX_DEADLINE: Final = 30.0
"""The API server's largest webhook ``timeoutSeconds``: a longer ``?timeout=`` is a client choosing how long we
wait, and is cut to this."""
MAX_IMAGE_SLOTS: Final = 2000
"""Containers (all kinds) and volumes beyond which a pod is admitted unchanged at once, without planning: planning
costs about 20 us per image on the event loop, so this bounds one review to about 40 ms. No real pod comes near."""
DEADLINE_MARGIN: Final = 0.9
"""Answer within 90% of the API server's timeout, leaving it time to read the answer."""
ADMISSION_PATHS: Final[dict[str, Mode]] = {"/mutate": Mode.MUTATE, "/audit": Mode.AUDIT}
_JSON_HEADERS: Final = [(b"content-type", b"application/json")]
_JSON_CLOSE_HEADERS: Final = [*_JSON_HEADERS, (b"connection", b"close")]
_DURATION: Final = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?(?:ns|us|µs|ms|s|m|h))+")
_DURATION_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]*)?)(ns|us|µs|ms|s|m|h)")
_SECONDS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class TargetVerifier(Protocol):
    """Checks rewrites against the cache before they are made (``verify: true``); see ``webhook.cache.verify``."""

    async def vetoes(self, decisions: Sequence[Decision]) -> Mapping[str, Reason]:
        """Image -> reason for each rewrite that must not happen; answers within its own time budget."""
        ...


def _always_ready() -> tuple[bool, str]:
    return True, "ok"


def parse_timeout(raw: str | None) -> float:
    """Seconds from a Go duration such as the API server's ``?timeout=10s``; the default when absent or odd.

    At most :data:`MAX_DEADLINE`.
    """
    if not raw or not _DURATION.fullmatch(raw):
        return DEFAULT_DEADLINE
    seconds = sum(float(number) * _SECONDS[unit] for number, unit in _DURATION_PART.findall(raw))
    return min(seconds, MAX_DEADLINE) if seconds > 0 else DEFAULT_DEADLINE


class WebhookApp:
    """The ASGI app: the admission paths answered directly, the rest handed to FastAPI (``.api``)."""

    def __init__(
        self,
        rules: Callable[[], Rules],
        api: FastAPI,
        metrics: Metrics,
        body_limit: int,
        verifier: TargetVerifier | None,
    ) -> None:
        """Wire the admission path to its collaborators; see :func:`create_app`."""
        self.api = api
        self.metrics = metrics
        self.decision_log = DecisionLog()
        """A line per image decision, to stderr in batches: the server flushes it when it stops."""
        self._rules = rules
        self.body_limit = body_limit
        """Bytes of body accepted (413 past it)."""
        self.sparse = True
        """Decode reviews sparsely (``webhook.serve.sparse``); ``False`` decodes every body whole, as the reference
        the differential test compares with."""
        self._verifier = verifier
        self._deadlines = Deadlines()
        """The body must arrive within the API server's ``?timeout=`` (see ``webhook.serve.deadlines``)."""
        self.reviews = ReviewCache()
        self._rendered: dict[int, _Rendered] = {}
        self.rendered_bytes = 0
        """What the kept renderings hold, estimated (:func:`_rendered_weight`), at most :data:`RENDERED_BYTES`."""
        """Cached answers ready to serve again, by the identity of their outcome (see :meth:`_from_cache`)."""
        """Answers per pod template (see ``webhook.core.review_cache``)."""
        metrics.count_review_cache(self.reviews)
        self.closing_connections = False
        """Set while the server stops: each answer then closes its connection, so a client (the API server) opens
        a new one for its next request instead of reusing one that is about to close under it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope."""
        mode = ADMISSION_PATHS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if mode is None or scope["method"] != "POST":
            await self.api(scope, receive, send)
            return
        status, body = await self.admit(scope, receive, mode)
        headers = _JSON_CLOSE_HEADERS if self.closing_connections else _JSON_HEADERS
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def admit(self, scope: Scope, receive: Receive, mode: Mode) -> tuple[int, bytes]:
        """Read, decide, encode: the status and body of one admission answer."""
        metrics = self.metrics
        path = scope["path"]
        started = time.perf_counter()
        status = 200
        try:
            headers = dict(scope["headers"])
            check_request(headers.get(b"content-type", b""), headers.get(b"content-length", b""), self.body_limit)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + deadline_seconds(scope.get("query_string", b"")) * DEADLINE_MARGIN
            raw = await self._deadlines.within(loop, deadline, _read_body(receive, self.body_limit))
            body = await self._answer(raw, mode, deadline)
        except AdmissionError as error:
            metrics.errors.labels("bad_request").inc()
            status, body = error.status, _error(error.message)
        except TimeoutError:
            metrics.errors.labels("bad_request").inc()
            metrics.fail_open("body_deadline")
            status, body = 408, _error("request body not received within the API server's timeout")
        metrics.observe_request(path, str(status), time.perf_counter() - started)
        return status, body

    def answer(
        self, path: str, mode: Mode, raw: bytes, deadline: float, started: float
    ) -> tuple[int, bytes] | Coroutine[Any, Any, tuple[int, bytes]]:
        """The status and body for a body already read: the connection layer's entry.

        At once, unless a verifier must be asked first (then a coroutine to await). ``started`` is
        ``time.perf_counter()`` when the request began.
        """
        try:
            result = self.respond(raw, mode, deadline)
        except AdmissionError as error:
            return error.status, self.refuse(path, error.status, error.message, started)
        if isinstance(result, bytes):
            self.metrics.observe_request(path, "200", time.perf_counter() - started)
            return 200, result
        return self._answered(path, result, started)

    async def _answered(self, path: str, pending: Awaitable[bytes], started: float) -> tuple[int, bytes]:
        body = await pending
        self.metrics.observe_request(path, "200", time.perf_counter() - started)
        return 200, body

    def refuse(self, path: str, status: int, message: str, started: float) -> bytes:
        """Count a request refused before deciding (4xx, or 500 for an error of ours) and return its error body."""
        self.metrics.errors.labels("bad_request").inc()
        if status == 408:  # the body did not arrive within the API server's ?timeout=: its call fails
            self.metrics.fail_open("body_deadline")
        elif status >= 500:  # an error of ours in the connection layer
            self.metrics.fail_open("internal")
        self.metrics.observe_request(path, str(status), time.perf_counter() - started)
        return _error(message)

    async def _answer(self, raw: bytes, mode: Mode, deadline: float) -> bytes:
        result = self.respond(raw, mode, deadline)
        return result if isinstance(result, bytes) else await result

    def respond(self, raw: bytes, mode: Mode, deadline: float) -> bytes | Coroutine[Any, Any, bytes]:
        """Decode, decide, encode: the answer's body, or a coroutine for it when a verifier must be asked.

        Raises :class:`AdmissionError` for a body that is not an AdmissionReview; past that, never raises.
        """
        sparse = decode_sparse(raw) if self.sparse else None  # the fields a decision reads; None: decode it all
        if sparse is not None and sparse.key is not None and self._verifier is None:
            answer = self._from_cache(sparse, mode)
            if answer is not None:
                return answer
        request = sparse.review() if sparse is not None else None
        if request is None:
            try:
                decoded = orjson.loads(raw)
            except orjson.JSONDecodeError as error:
                raise AdmissionError(400, f"request body is not valid JSON: {error}") from None
            request = parse_review(decoded)
        try:
            rules = self._rules()
            effective = Mode.AUDIT if rules.config.dry_run else mode
            slots = _image_slot_count(request)
            if slots > MAX_IMAGE_SLOTS:
                return self._too_large(request, slots)
            outcome = self.reviews.review(request, rules, effective, key=None if sparse is None else sparse.key)
            if self._verifier is not None and outcome.plan is not None and outcome.plan.rewrites:
                return self._verified(self._verifier, request, rules, effective, outcome, deadline)
            _record(request, outcome, effective, self.metrics, self.decision_log)
            return orjson.dumps(outcome.body)
        except Exception:  # noqa: BLE001 - past a valid review, any failure admits the pod unchanged: never a 500
            return self._failed_open(request)

    def _from_cache(self, sparse: SparseReview, mode: Mode) -> bytes | None:
        """The answer to a Pod CREATE whose template was answered before, if kept; ``None``: decide it in full.

        Without a verifier only: a kept rewrite is checked against the cache again for every pod when one is set.
        """
        try:
            rules = self._rules()
            effective = Mode.AUDIT if rules.config.dry_run else mode
            outcome = sparse.cached(self.reviews, rules, effective)
            if outcome is None:
                return None
            rendered = self._rendered.get(id(outcome))
            if rendered is None or rendered.outcome is not outcome:
                rendered = self._render(outcome, effective)
            identity = sparse.identity()
            if outcome.plan is not None:
                self.metrics.count_served(rendered.counts)
                _log_decisions(self.decision_log, outcome.plan, identity, effective, left_out=rendered.left_out)
            return b"".join((rendered.prefix, orjson.dumps(identity[0]), rendered.suffix))
        except Exception:  # the full path then answers, or fails open as it does
            log.exception("answer from the review cache failed; deciding in full")
            return None

    def _render(self, outcome: Outcome, mode: Mode) -> _Rendered:
        """What serving ``outcome`` again needs, made once: its body around the uid, its counts, its log flag."""
        response = outcome.body["response"].copy()
        response["uid"] = _UID_MARK
        body = orjson.dumps({**outcome.body, "response": response})
        prefix, mark, suffix = body.partition(orjson.dumps(_UID_MARK))
        if not mark or suffix.find(orjson.dumps(_UID_MARK)) >= 0:
            raise ValueError("the uid mark is not in the answer once")
        plan = outcome.plan
        counts = DecisionCounts({} if plan is None else plan.counts, mode.value)
        left_out = _record_left_out_of(outcome)
        rendered = _Rendered(outcome, prefix, suffix, counts, left_out)
        weight = _rendered_weight(len(body))
        if weight > RENDERED_BYTES // 64:
            return rendered  # a huge answer: rendered for this review only, never kept
        if len(self._rendered) >= RENDERED_ANSWERS or self.rendered_bytes + weight > RENDERED_BYTES:
            self._rendered.clear()
            self.rendered_bytes = 0
        self._rendered[id(outcome)] = rendered
        self.rendered_bytes += weight
        return rendered

    async def _verified(  # noqa: PLR0913, PLR0917 - the state of one review, passed along once
        self, verifier: TargetVerifier, request: Review, rules: Rules, mode: Mode, outcome: Outcome, deadline: float
    ) -> bytes:
        try:
            if outcome.plan is not None:
                candidates = [item.decision for item in outcome.plan.rewrites]
                vetoes = await self._verify(verifier, candidates, deadline)
                if vetoes:
                    outcome = review(request, rules, mode, vetoes)
            _record(request, outcome, mode, self.metrics, self.decision_log)
            return orjson.dumps(outcome.body)
        except Exception:  # noqa: BLE001 - as in respond()
            return self._failed_open(request)

    def _failed_open(self, request: Review) -> bytes:
        self.metrics.errors.labels("internal").inc()
        self.metrics.fail_open("internal")
        log.exception("review failed open", extra={"uid": request.uid})  # noqa: LOG004 - called from handlers only
        return orjson.dumps(failed_open(request, "ecr-ptc-webhook: internal error; pod admitted unchanged"))

    def _too_large(self, request: Review, slots: int) -> bytes:
        self.metrics.errors.labels("too_large").inc()
        self.metrics.fail_open("too_large")
        log.warning("pod has too many images to plan; admitted unchanged", extra={"uid": request.uid, "images": slots})
        warning = f"ecr-ptc-webhook: {slots} containers and volumes, over {MAX_IMAGE_SLOTS}; pod admitted unchanged"
        return orjson.dumps(failed_open(request, warning))

    async def _verify(
        self, verifier: TargetVerifier, candidates: Sequence[Decision], deadline: float
    ) -> Mapping[str, Reason]:
        """The verifier's vetoes, within the request's own deadline.

        If the verifier fails or runs late, every rewrite is vetoed (the originals are kept): never a 500, and never
        an answer after the API server gave up.
        """
        try:
            async with asyncio.timeout_at(deadline):
                return await verifier.vetoes(candidates)
        except Exception as error:  # noqa: BLE001 - a broken check must fail open like everything else
            self.metrics.errors.labels("verify").inc()
            self.metrics.fail_open("verify_deadline" if isinstance(error, TimeoutError) else "verify_failed")
            detail = "request deadline reached" if isinstance(error, TimeoutError) else f"{type(error).__name__}"
            log.warning("verify failed; keeping the original images", extra={"error": f"{detail}: {error}"})
            return dict.fromkeys((decision.image for decision in candidates), Reason.VERIFY_FAILED)


def create_app(
    rules: Rules | Callable[[], Rules],
    *,
    metrics: Metrics | None = None,
    readiness: Health = _always_ready,
    body_limit: int = BODY_LIMIT,
    verifier: TargetVerifier | None = None,
) -> WebhookApp:
    """The webhook app.

    ``rules`` is the rule set, or a function returning the current one (``rules: discover`` swaps it);
    ``readiness`` says whether to take traffic (certificate loaded, not draining); ``verifier`` checks rewrites
    against the cache first.
    """
    metrics = metrics if metrics is not None else Metrics()
    current_rules: Callable[[], Rules] = rules if callable(rules) else (lambda: rules)
    api = FastAPI(title="ecr-ptc-webhook", docs_url=None, redoc_url=None, openapi_url=None)

    @api.get("/healthz")
    async def healthz() -> Response:
        """Liveness: the event loop answers."""
        return Response(b'{"status":"ok"}', media_type="application/json")

    @api.get("/readyz")
    async def readyz() -> Response:
        """Readiness: a certificate is loaded and the server is not draining."""
        ready, detail = readiness()
        body = orjson.dumps({"status": "ok" if ready else "unavailable", "detail": detail})
        return Response(body, status_code=200 if ready else 503, media_type="application/json")

    @api.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return WebhookApp(current_rules, api, metrics, body_limit, verifier)


@functools.lru_cache(maxsize=64)  # the API server sends the same `timeout=3s` every time
def deadline_seconds(query_string: bytes) -> float:
    """Seconds the API server waits for this request, from the query string's ``timeout``."""
    if not query_string:
        return DEFAULT_DEADLINE
    values = parse_qs(query_string.decode("latin-1")).get("timeout")
    return parse_timeout(values[0] if values else None)


def check_request(raw_type: bytes, declared: bytes, limit: int) -> None:
    """Refuse, before reading the body, a content type that is not JSON (400) or a declared length over ``limit``."""
    if raw_type != b"application/json":  # what the API server sends; anything else is looked at closer
        content_type = raw_type.decode("latin-1")
        if content_type.partition(";")[0].strip().lower() != "application/json":
            raise AdmissionError(400, f"content type {content_type!r} is not application/json")
    if declared.isdigit() and int(declared) > limit:
        raise AdmissionError(413, f"request body of {declared.decode()} bytes is over the {limit}-byte limit")


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise AdmissionError(400, "client disconnected before sending the whole body")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise AdmissionError(413, f"request body is over the {limit}-byte limit")
        chunks.append(chunk)
        more = message.get("more_body", False)
    if size == 0:
        raise AdmissionError(400, "request body is empty")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _image_slot_count(request: Review) -> int:
    """Containers of every kind and volumes: an upper bound on the images a review plans (a cheap one)."""
    pod = request.object
    spec = pod.get("spec") if pod is not None else None
    if not isinstance(spec, dict):
        return 0
    return sum(len(items) for field in _SLOT_FIELDS if isinstance(items := spec.get(field), list))


_SLOT_FIELDS: Final = ("containers", "initContainers", "ephemeralContainers", "volumes")


def _record(request: Review, outcome: Outcome, mode: Mode, metrics: Metrics, decisions: DecisionLog) -> None:
    if outcome.error is not None:
        metrics.errors.labels("internal").inc()
        metrics.fail_open("internal")
        log.error("review failed open", extra={"uid": request.uid, "error": outcome.error})
    if outcome.plan is None:
        return
    metrics.count_decisions(outcome.plan.counts, mode.value)
    left_out = _record_left_out(request, outcome)
    _log_decisions(decisions, outcome.plan, (request.uid, request.namespace, request.name), mode, left_out=left_out)


def _log_decisions(
    decisions: DecisionLog, plan: PodPlan, identity: tuple[str, str, str], mode: Mode, *, left_out: bool
) -> None:
    """The decision lines of one review; ``identity``: its uid, namespace and pod name."""
    if plan.decisions:  # the log's level is checked by write()
        uid, namespace, name = identity
        review = {"uid": uid, "namespace": namespace, "pod": name, "mode": mode.value}
        if left_out:
            review["annotation"] = ANNOTATION_LEFT_OUT
        decisions.write(review, plan.records)


ANNOTATION_LEFT_OUT: Final = "left out: the pod's annotations would exceed 262144 bytes"
"""The decision lines' ``annotation`` field when the rewrites were made without the original-images record."""


def _record_left_out(request: Review, outcome: Outcome) -> bool:
    """Whether a patch rewrites images without writing the record (no room for it; see ``webhook.core.patch``)."""
    return not request.sub_resource and _record_left_out_of(outcome)


def _record_left_out_of(outcome: Outcome) -> bool:
    """:func:`_record_left_out` for a pod creation."""
    plan = outcome.plan
    if plan is None or not plan.patch or "patch" not in outcome.body["response"]:
        return False
    return not plan.patch[-1]["path"].startswith("/metadata")


class _Rendered(NamedTuple):
    """An answer kept in the review cache, ready to serve again (see :meth:`WebhookApp._from_cache`)."""

    outcome: Outcome
    prefix: bytes
    suffix: bytes
    """The encoded answer before and after its uid's JSON string."""
    counts: DecisionCounts
    left_out: bool
    """Whether the patch was made without the original-images record (the decision lines say so)."""


RENDERED_ANSWERS: Final = 2048
"""Answers kept rendered, by the identity of the review cache's outcome (twice the cache's size); then it starts
over. Each holds its outcome, so an identity is never reused while it is here."""
RENDERED_BYTES: Final = 16 * 1024 * 1024
"""What the kept renderings may hold, estimated, outcomes kept alive included (an outcome the review cache dropped
stays alive while its rendering is kept): the review cache's own bound. An answer over a sixty-fourth of it is
rendered for its review only."""


def _rendered_weight(body_bytes: int) -> int:
    """Bytes a kept rendering holds, estimated.

    The encoded answer, and its outcome (decoded patch, decisions and decision records: a 10-container pod's outcome
    holds about ten times its 1.9 KB answer, measured with tracemalloc; see ``webhook.core.review_cache``).
    """
    return 12 * body_bytes + 2048


_UID_MARK: Final = "\x00ecr-ptc-webhook uid\x00"
"""A uid no review has (the API server's are UUIDs): where the answer is cut to put each review's uid in."""


def _error(message: str) -> bytes:
    return orjson.dumps({"error": message})
