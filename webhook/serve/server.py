"""Serving the app over TLS: the admission port, certificate rotation, overload, linger and drain, signals.

The port is served by :class:`AdmissionServer`: an asyncio server (uvloop) whose connections are
:class:`webhook.serve.connection.Connection` (httptools, our limits, one write per answer). Uvicorn measured as the
limit of both resilience and speed under the admission paths (issue 13); the FastAPI app still answers the few other
routes through the connection's ASGI bridge.

Stopping, with the chart's figures: the kubelet runs the 5 s ``preStop`` sleep, then sends SIGTERM. The server
answers for :data:`SHUTDOWN_LINGER` (2 s) more, reporting not ready and closing each connection after its answer;
then it stops listening, closes connections that are idle or have not sent a whole head, gives requests in flight
up to :data:`DRAIN_TIMEOUT` (10 s) and aborts what is left (a body still trickling in, a client that does not read
its answer). At worst 5 + 2 + 10 s, plus the decision log's last write, well inside
``terminationGracePeriodSeconds: 30``. A second SIGTERM or SIGINT skips the linger and the wait. SIGHUP reloads the
certificate and is otherwise ignored: it never stops the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from webhook.core.rules import Rules
from webhook.serve.app import create_app
from webhook.serve.connection import HANDSHAKE_TIMEOUT, Limits, Registry, factory
from webhook.serve.log_writer import StderrWriter, send_logs_to
from webhook.serve.metrics import Metrics
from webhook.serve.tls import WATCH_INTERVAL, CertificateSource, LoadedCertificate

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Coroutine
    from pathlib import Path

    from webhook.cache.discovery import RuleDiscovery
    from webhook.cache.verify import TargetVerifier
    from webhook.core.config import Config
    from webhook.serve.app import WebhookApp

log = logging.getLogger("webhook.server")  # a stable name: users filter logs on it

MAX_CONCURRENCY: Final = 512
"""Connections served at once. One more is still read, but its requests are answered 503 and it is closed (its
``/healthz`` answered 200): under overload only the excess is shed, and a fast 503 lets the API server admit the pod
unmodified (failurePolicy Ignore) instead of queueing it into its timeout. At the limit, the longest-idle kept-open
connection is closed to make room first."""
DRAIN_TIMEOUT: Final = 10
"""Seconds in-flight requests get to finish once the linger is over (see the module docstring's arithmetic)."""
SHUTDOWN_LINGER: Final = 2.0
"""Seconds the server keeps answering after SIGTERM, each answer with ``Connection: close``, before it stops
listening and closes idle connections: a client's kept-open connection is then closed after an answer, never under
a request it is about to send (which the API server would see as a failed call)."""
BACKLOG: Final = 2048
SSL_SHUTDOWN_TIMEOUT: Final = 5.0
"""Seconds a closing connection waits for the client's TLS close_notify before it is dropped."""


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """How and where to listen."""

    cert_file: Path
    key_file: Path
    host: str = "0.0.0.0"  # noqa: S104 - a webhook in a pod listens on the pod IP
    port: int = 8443
    max_concurrency: int = MAX_CONCURRENCY
    drain_timeout: float = DRAIN_TIMEOUT
    watch_interval: float = WATCH_INTERVAL
    shutdown_linger: float = SHUTDOWN_LINGER
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    limits: Limits = Limits()  # noqa: RUF009 - frozen: one shared default is safe


class AdmissionServer:
    """The admission port: listen, serve connections, linger and drain on SIGTERM, reload on SIGHUP."""

    def __init__(  # noqa: PLR0913 - the server's collaborators, each named
        self,
        app: WebhookApp,
        settings: ServeSettings,
        context: Callable[[], ssl.SSLContext],
        *,
        on_stopping: Callable[[], None] = lambda: None,
        on_stopped: Callable[[], None] = lambda: None,
        on_hangup: Callable[[], object] = lambda: None,
    ) -> None:
        """Serve ``app`` with the TLS context ``context()`` returns.

        The callbacks run on the first SIGTERM, once drained, and on SIGHUP (in a thread).
        """
        self.app = app
        self.settings = settings
        self.registry = Registry(settings.max_concurrency)
        self.port = settings.port
        """The port listened on (the one the system chose, for port 0)."""
        self.started = False
        self.stopping = False
        """The first signal came: lingering, then draining."""
        self.should_exit = False
        """Set to stop at once (a second signal, or a caller)."""
        self._context = context
        self._on_stopping = on_stopping
        self._on_stopped = on_stopped
        self._on_hangup = on_hangup
        self._wake = asyncio.Event()
        self._signal: int | None = None

    def handle_exit(self, sig: int) -> None:
        """First SIGTERM/SIGINT: linger, then drain. A second one: stop now."""
        if self.stopping:
            self.should_exit = True
        else:
            self._signal = sig
            self.stopping = True
            self.registry.closing = self.settings.shutdown_linger <= 0
            self._on_stopping()
        self._wake.set()

    def handle_hangup(self) -> None:
        """SIGHUP: reload the certificate off the event loop, log, and carry on."""
        log.info("SIGHUP: checking the certificate files; serving goes on")
        task = asyncio.get_running_loop().run_in_executor(None, self._on_hangup)
        task.add_done_callback(lambda done: done.exception())  # a failure is the source's to log

    async def serve(self) -> None:
        """Listen until stopped (a signal or :attr:`should_exit`), then drain (see :meth:`exit_by_signal`)."""
        loop = asyncio.get_running_loop()
        connections = factory(self.app, self.registry, self.settings.limits)
        server = await loop.create_server(
            connections,
            self.settings.host,
            self.settings.port,
            ssl=self._context(),
            ssl_handshake_timeout=self.settings.handshake_timeout,
            ssl_shutdown_timeout=SSL_SHUTDOWN_TIMEOUT,
            backlog=BACKLOG,
            reuse_address=True,
        )
        self.port = server.sockets[0].getsockname()[1]
        handled = self._install_signals(loop)
        self.started = True
        log.info("serving", extra={"host": self.settings.host, "port": self.port})
        try:
            await self._until_stopped()
            server.close()
            await self._drain()
        finally:
            server.close()
            for sig in handled:
                loop.remove_signal_handler(sig)
            self._on_stopped()

    def exit_by_signal(self) -> None:
        """Raise the stopping signal again, its handler now the default: the conventional exit status for it."""
        if self._signal is not None:
            signal.raise_signal(self._signal)

    async def _until_stopped(self) -> None:
        """Wait for a stop; then linger, answering with ``Connection: close``, unless told to stop at once."""
        while not (self.stopping or self.should_exit):
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)  # should_exit may be set without a wake-up
        if self.should_exit or self.settings.shutdown_linger <= 0:
            return
        self.registry.closing = True
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.settings.shutdown_linger)

    async def _drain(self) -> None:
        """Close what waits for a request, give requests in flight the drain timeout, abort the rest."""
        self.registry.closing = True
        loop = asyncio.get_running_loop()
        until = loop.time() + (0 if self.should_exit else self.settings.drain_timeout)
        while True:
            for connection in list(self.registry.open):
                if not connection.busy:
                    connection.close()
            if not any(connection.busy for connection in self.registry.open) or loop.time() >= until:
                break
            await asyncio.sleep(0.05)
        for connection in list(self.registry.open):
            connection.close()
        if self.registry.open:  # answers written that no one reads, bodies that never ended
            await asyncio.sleep(0.1)
            for connection in list(self.registry.open):
                connection.abort()
        log.info("stopped", extra={"aborted": len(self.registry.open)})

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        handled: list[int] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
                loop.add_signal_handler(sig, self.handle_exit, sig)
                handled.append(sig)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, self.handle_hangup)
            handled.append(signal.SIGHUP)
        return handled


def build_server(
    config: Config,
    settings: ServeSettings,
    *,
    metrics: Metrics | None = None,
    discovery: RuleDiscovery | None = None,
    verifier: TargetVerifier | None = None,
) -> tuple[AdmissionServer, CertificateSource]:
    """The admission server for ``config`` whose TLS context follows the certificate files.

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
    server: AdmissionServer

    def readiness() -> tuple[bool, str]:
        reasons, detail = readiness_of(server, source, discovery, verifier)
        return not reasons, detail

    rules = discovery.current if discovery is not None else Rules(config)
    app = create_app(rules, metrics=metrics, readiness=readiness, verifier=verifier)

    def on_stopping() -> None:
        log.info("stopping: answering %.1f s more, closing each connection after its answer", settings.shutdown_linger)

    def on_stopped() -> None:
        app.decision_log.flush()  # decision lines still batched are written before the process exits

    server = AdmissionServer(
        app,
        settings,
        source.server_context,
        on_stopping=on_stopping,
        on_stopped=on_stopped,
        on_hangup=source.reload,
    )
    metrics.count_shed_connections(lambda: server.registry.shed)
    metrics.expose_readiness(lambda: readiness_of(server, source, discovery, verifier)[0])
    metrics.expose_certificate_reload_failing(lambda: source.last_error is not None)
    return server, source


def readiness_of(
    server: AdmissionServer,
    source: CertificateSource,
    discovery: RuleDiscovery | None,
    verifier: TargetVerifier | None,
) -> tuple[list[str], str]:
    """Why the replica is not ready (``NOT_READY_REASONS``; empty when ready) and the ``/readyz`` detail."""
    if server.stopping or server.should_exit:
        return ["shutting_down"], "shutting down"
    reasons: list[str] = []
    certificate_ready, detail = source.healthy()
    if not certificate_ready:
        reasons.append("no_certificate" if source.current is None else "certificate_expired")
    details = [detail]
    if discovery is not None:
        rules_ready, rules_detail = discovery.status()
        if not rules_ready:
            reasons.append("rules_not_read")
        details.append(rules_detail)
    if verifier is not None:
        details.append(verifier.status())  # an open breaker keeps originals; the pod still serves
    return reasons, "; ".join(details)


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
    writer = StderrWriter()
    send_logs_to(writer)
    server.app.decision_log.writer = writer.write
    metrics.count_dropped_log_lines(lambda: writer.dropped_lines)
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
        server.app.decision_log.flush()
        writer.close()
    server.exit_by_signal()
