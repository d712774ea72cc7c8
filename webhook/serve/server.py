"""Serving the app over TLS with uvicorn: rotating certificates, bounded concurrency, draining on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import uvicorn

from webhook.core.rules import Rules
from webhook.serve.app import create_app
from webhook.serve.metrics import Metrics
from webhook.serve.tls import WATCH_INTERVAL, CertificateSource, LoadedCertificate

if TYPE_CHECKING:
    import socket
    import ssl
    from collections.abc import Callable, Coroutine
    from pathlib import Path
    from types import FrameType

    from webhook.cache.discovery import RuleDiscovery
    from webhook.cache.verify import TargetVerifier
    from webhook.core.config import Config

log = logging.getLogger("webhook.server")  # a stable name: users filter logs on it

MAX_CONCURRENCY: Final = 512
"""Connections and in-flight requests beyond which uvicorn answers 503 at once: under overload a fast 503 lets
the API server admit the pod unmodified (failurePolicy Ignore) instead of queueing it into its timeout."""
DRAIN_TIMEOUT: Final = 25
"""Seconds in-flight requests get to finish on SIGTERM (inside the pod's default 30 s grace period)."""
SHUTDOWN_LINGER: Final = 2.0
"""Seconds the server keeps answering after SIGTERM, each answer with ``Connection: close``, before it stops
listening and closes idle connections: a client's kept-open connection is then closed after an answer, never under
a request it is about to send (which the API server would see as a failed call)."""


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """How and where to listen."""

    cert_file: Path
    key_file: Path
    host: str = "0.0.0.0"  # noqa: S104 - a webhook in a pod listens on the pod IP
    port: int = 8443
    max_concurrency: int = MAX_CONCURRENCY
    drain_timeout: int = DRAIN_TIMEOUT
    watch_interval: float = WATCH_INTERVAL
    shutdown_linger: float = SHUTDOWN_LINGER
    http: Literal["auto", "httptools", "h11"] = "auto"
    """HTTP parser: ``auto`` is httptools (compiled) when installed, else h11 (pure Python)."""


class LingeringServer(uvicorn.Server):
    """A uvicorn server that stops in two steps.

    On the first SIGTERM/SIGINT it answers for ``linger`` seconds more, not ready and closing each connection after
    its answer; then it shuts down as uvicorn does (stops listening, drains in-flight requests). A second signal
    stops at once.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        linger: float,
        on_stopping: Callable[[], None],
        on_stopped: Callable[[], None] = lambda: None,
    ) -> None:
        """Serve ``config``; ``on_stopping`` runs when the first signal arrives, ``on_stopped`` once drained."""
        super().__init__(config)
        self.linger = linger
        self.stopping = False
        self._on_stopping = on_stopping
        self._on_stopped = on_stopped
        self._exit_at = 0.0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Start lingering on the first signal; behave as uvicorn does on the next one or without a linger."""
        if self.stopping or self.linger <= 0:
            super().handle_exit(sig, frame)
            return
        self._captured_signals.append(sig)  # uvicorn re-raises it once stopped, as after its own handling
        self.stopping = True
        self._exit_at = time.monotonic() + self.linger
        self._on_stopping()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Uvicorn's shutdown (stop listening, drain), then ``on_stopped``: before a captured signal is re-raised."""
        try:
            await super().shutdown(sockets)
        finally:
            self._on_stopped()

    async def on_tick(self, counter: int) -> bool:
        """Uvicorn's housekeeping tick (every 0.1 s): the linger ends here."""
        if self.stopping and not self.should_exit and time.monotonic() >= self._exit_at:
            self.should_exit = True
        return await super().on_tick(counter)


def build_server(
    config: Config,
    settings: ServeSettings,
    *,
    metrics: Metrics | None = None,
    discovery: RuleDiscovery | None = None,
    verifier: TargetVerifier | None = None,
) -> tuple[LingeringServer, CertificateSource]:
    """A uvicorn server for ``config`` whose TLS context follows the certificate files.

    ``discovery`` supplies the rules (``rules: discover``) and ``verifier`` checks targets (``verify: true``); both
    report into ``/readyz``. Their collectors belong in ``metrics.registry`` so ``/metrics`` shows them.
    """
    metrics = metrics if metrics is not None else Metrics()
    metrics.info.info({"version": metrics_version(), "registry": config.registry, "dry_run": str(config.dry_run)})

    def on_reload(success: bool, loaded: LoadedCertificate | None) -> None:  # noqa: FBT001 - callback shape
        metrics.certificate_reloads.labels("success" if success else "failure").inc()
        if loaded is not None:
            metrics.certificate_expiry.set(loaded.not_after.timestamp())

    source = CertificateSource(settings.cert_file, settings.key_file, on_reload=on_reload)
    source.server_context()  # fail at start, with the file names, if the pair cannot serve
    server: LingeringServer

    def readiness() -> tuple[bool, str]:
        if server.stopping or server.should_exit:
            return False, "shutting down"
        ready, detail = source.healthy()
        details = [detail]
        if discovery is not None:
            rules_ready, rules_detail = discovery.status()
            ready = ready and rules_ready
            details.append(rules_detail)
        if verifier is not None:
            details.append(verifier.status())  # an open breaker keeps originals; the pod still serves
        return ready, "; ".join(details)

    def context_factory(_config: uvicorn.Config, _default: object) -> ssl.SSLContext:
        return source.server_context()

    rules = discovery.current if discovery is not None else Rules(config)
    app = create_app(rules, metrics=metrics, readiness=readiness, verifier=verifier)
    uvicorn_config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ssl_context_factory=context_factory,
        http=settings.http,
        limit_concurrency=settings.max_concurrency,
        timeout_graceful_shutdown=settings.drain_timeout,
        lifespan="off",
        access_log=False,
        log_config=None,
        proxy_headers=False,  # the API server connects directly; no X-Forwarded-* to trust
        server_header=False,
        date_header=False,
    )

    def on_stopping() -> None:
        app.closing_connections = True
        log.info("stopping: answering %.1f s more, closing each connection after its answer", settings.shutdown_linger)

    def on_stopped() -> None:
        app.decision_log.flush()  # decision lines still batched are written before the process exits

    server = LingeringServer(uvicorn_config, settings.shutdown_linger, on_stopping, on_stopped)
    return server, source


EventLoop = Literal["auto", "uvloop", "asyncio"]


def run_event_loop(main: Coroutine[Any, Any, None], loop: EventLoop = "auto") -> None:
    """Run ``main`` to completion on uvloop (``auto``: when installed, a dependency on Linux and macOS) or asyncio.

    uvloop's TLS and socket handling are compiled: about twice the admissions per second of asyncio's pure-Python
    TLS transport on the same machine (hack/bench).
    """
    if loop != "asyncio":
        try:
            import uvloop  # noqa: PLC0415 - optional: not built for Windows
        except ImportError:
            if loop == "uvloop":
                raise
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(main)
            return
    asyncio.run(main)


def metrics_version() -> str:
    """The package version, for the info metric."""
    from webhook import __version__  # noqa: PLC0415 - avoids a cycle at import time

    return __version__


async def serve(config: Config, settings: ServeSettings) -> None:
    """Serve until SIGTERM/SIGINT, reloading the certificate when its files change.

    With ``rules: discover`` the cache's rules are read in the background (nothing is rewritten before the first
    read); with ``verify: true`` each rewrite is checked in the cache first.
    """
    metrics = Metrics()
    discovery: RuleDiscovery | None = None
    verifier: TargetVerifier | None = None
    if config.rules == "discover":
        from webhook.cache.discovery import RuleDiscovery  # noqa: PLC0415 - boto3 only when discovery is on

        discovery = RuleDiscovery.for_config(config, registry=metrics.registry)
    if config.verify:
        from webhook.cache.verify import TargetVerifier  # noqa: PLC0415 - httpx and boto3 only when verify is on

        verifier = TargetVerifier.for_config(config, registry=metrics.registry)
    server, source = build_server(config, settings, metrics=metrics, discovery=discovery, verifier=verifier)
    tasks = [asyncio.create_task(source.watch(settings.watch_interval), name="certificate watch")]
    if discovery is not None:
        tasks.append(asyncio.create_task(discovery.run(), name="rule discovery"))
    if verifier is not None:
        # The first token (STS, then ECR) takes longer than a verify budget: fetch it before the first pod comes.
        tasks.append(asyncio.create_task(verifier.warm_up(), name="registry credential"))
    try:
        await server.serve()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if verifier is not None:
            await verifier.aclose()
