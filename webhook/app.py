"""The HTTP app: admission endpoints, health, metrics. Decoding and encoding here; deciding in ``admission``.

Before decoding, as controller-runtime's ``http.go`` does: a body over the limit is refused while it is read (413,
never buffered whole), an empty body or a wrong content type is a 400. ``/mutate`` and ``/audit`` take a lean path
(raw body, orjson) instead of FastAPI's model binding, which would parse every review twice.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

import orjson
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook.admission import Mode, Outcome, Review, parse_review, review, rewrite_candidates
from webhook.exceptions import AdmissionError
from webhook.metrics import Metrics

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from webhook.reasons import Reason
    from webhook.rules import Decision, Rules

log = logging.getLogger("webhook.decisions")

BODY_LIMIT: Final = 3 * 1024 * 1024
"""The API server's own limit on an AdmissionReview body."""
DEFAULT_DEADLINE: Final = 10.0
"""Seconds allowed when the API server sends no ``?timeout=`` (its default webhook timeout)."""
DEADLINE_MARGIN: Final = 0.9
"""Answer within 90% of the API server's timeout, leaving it time to read the answer."""
_DURATION: Final = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?(?:ns|us|µs|ms|s|m|h))+")
_DURATION_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]*)?)(ns|us|µs|ms|s|m|h)")
_SECONDS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

Health = Callable[[], tuple[bool, str]]


class TargetVerifier(Protocol):
    """Checks rewrites against the cache before they are made (``verify: true``); see ``webhook.verify``."""

    async def vetoes(self, decisions: Sequence[Decision]) -> Mapping[str, Reason]:
        """Image -> reason for each rewrite that must not happen; answers within its own time budget."""
        ...


def _always_ready() -> tuple[bool, str]:
    return True, "ok"


def parse_timeout(raw: str | None) -> float:
    """Seconds from a Go duration such as the API server's ``?timeout=10s``; the default when absent or odd."""
    if not raw or not _DURATION.fullmatch(raw):
        return DEFAULT_DEADLINE
    seconds = sum(float(number) * _SECONDS[unit] for number, unit in _DURATION_PART.findall(raw))
    return seconds if seconds > 0 else DEFAULT_DEADLINE


def create_app(
    rules: Rules | Callable[[], Rules],
    *,
    metrics: Metrics | None = None,
    readiness: Health = _always_ready,
    body_limit: int = BODY_LIMIT,
    verifier: TargetVerifier | None = None,
) -> FastAPI:
    """The webhook app.

    ``rules`` is the rule set, or a function returning the current one (``rules: discover`` swaps it);
    ``readiness`` says whether to take traffic (certificate loaded, not draining); ``verifier`` checks rewrites
    against the cache first.
    """
    metrics = metrics if metrics is not None else Metrics()
    current_rules: Callable[[], Rules] = rules if callable(rules) else (lambda: rules)
    app = FastAPI(title="ecr-ptc-webhook", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.metrics = metrics

    async def admit(request: Request, mode: Mode) -> Response:
        path = request.url.path
        started = time.perf_counter()
        try:
            async with asyncio.timeout(parse_timeout(request.query_params.get("timeout")) * DEADLINE_MARGIN):
                body = await _read_body(request, body_limit)
            response = await _answer(body, current_rules(), mode, metrics, verifier)
        except AdmissionError as error:
            metrics.errors.labels("bad_request").inc()
            response = _error(error.status, error.message)
        except TimeoutError:
            metrics.errors.labels("bad_request").inc()
            response = _error(408, "request body not received within the API server's timeout")
        metrics.requests.labels(path, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - started)
        return response

    @app.post("/mutate")
    async def mutate(request: Request) -> Response:
        """Rewrite images (or, with ``dryRun: true``, only report)."""
        return await admit(request, Mode.MUTATE)

    @app.post("/audit")
    async def audit(request: Request) -> Response:
        """Report would-be rewrites as warnings; never patch."""
        return await admit(request, Mode.AUDIT)

    @app.get("/healthz")
    async def healthz() -> Response:
        """Liveness: the event loop answers."""
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> Response:
        """Readiness: a certificate is loaded and the server is not draining."""
        ready, detail = readiness()
        body = orjson.dumps({"status": "ok" if ready else "unavailable", "detail": detail})
        return Response(body, status_code=200 if ready else 503, media_type="application/json")

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def _read_body(request: Request, limit: int) -> bytes:
    content_type = request.headers.get("content-type", "")
    if content_type.partition(";")[0].strip().lower() != "application/json":
        raise AdmissionError(400, f"content type {content_type!r} is not application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise AdmissionError(413, f"request body of {declared} bytes is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise AdmissionError(413, f"request body is over the {limit}-byte limit")
        chunks.append(chunk)
    if size == 0:
        raise AdmissionError(400, "request body is empty")
    return b"".join(chunks)


async def _answer(body: bytes, rules: Rules, mode: Mode, metrics: Metrics, verifier: TargetVerifier | None) -> Response:
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise AdmissionError(400, f"request body is not valid JSON: {error}") from None
    request = parse_review(decoded)
    effective = Mode.AUDIT if rules.config.dry_run else mode
    vetoes = None
    if verifier is not None:
        candidates = rewrite_candidates(request, rules)
        if candidates:
            vetoes = await verifier.vetoes(candidates)
    outcome = review(request, rules, effective, vetoes)
    _record(request, outcome, effective, metrics)
    return Response(orjson.dumps(outcome.body), media_type="application/json")


def _record(request: Review, outcome: Outcome, mode: Mode, metrics: Metrics) -> None:
    if outcome.error is not None:
        metrics.errors.labels("internal").inc()
        log.error("review failed open", extra={"uid": request.uid, "error": outcome.error})
    if outcome.plan is None:
        return
    logging_enabled = log.isEnabledFor(logging.INFO)
    for item in outcome.plan.decisions:
        decision = item.decision
        metrics.decisions.labels(decision.tier or "", decision.reason.value, decision.action, mode.value).inc()
        if logging_enabled:
            log.info(
                "decision",
                extra={
                    "uid": request.uid,
                    "namespace": request.namespace,
                    "pod": request.name,
                    "container": item.slot.key,
                    "original": decision.image,
                    "result": decision.result,
                    "action": decision.action,
                    "reason": decision.reason.value,
                    "tier": decision.tier,
                    "mode": mode.value,
                },
            )


def _error(status: int, message: str) -> Response:
    return Response(orjson.dumps({"error": message}), status_code=status, media_type="application/json")
