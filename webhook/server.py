"""Serving the app over TLS with uvicorn: rotating certificates, bounded concurrency, draining on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import uvicorn

from webhook.app import create_app
from webhook.metrics import Metrics
from webhook.rules import Rules
from webhook.tls import WATCH_INTERVAL, CertificateSource, LoadedCertificate

if TYPE_CHECKING:
    import ssl
    from pathlib import Path

    from webhook.config import Config

log = logging.getLogger(__name__)

MAX_CONCURRENCY: Final = 512
"""Connections and in-flight requests beyond which uvicorn answers 503 at once: under overload a fast 503 lets
the API server admit the pod unmodified (failurePolicy Ignore) instead of queueing it into its timeout."""
DRAIN_TIMEOUT: Final = 25
"""Seconds in-flight requests get to finish on SIGTERM (inside the pod's default 30 s grace period)."""


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


def build_server(config: Config, settings: ServeSettings) -> tuple[uvicorn.Server, CertificateSource]:
    """A uvicorn server for ``config`` whose TLS context follows the certificate files."""
    metrics = Metrics()
    metrics.info.info({"version": metrics_version(), "registry": config.registry, "dry_run": str(config.dry_run)})

    def on_reload(success: bool, loaded: LoadedCertificate | None) -> None:  # noqa: FBT001 - callback shape
        metrics.certificate_reloads.labels("success" if success else "failure").inc()
        if loaded is not None:
            metrics.certificate_expiry.set(loaded.not_after.timestamp())

    source = CertificateSource(settings.cert_file, settings.key_file, on_reload=on_reload)
    source.server_context()  # fail at start, with the file names, if the pair cannot serve
    server: uvicorn.Server

    def readiness() -> tuple[bool, str]:
        if server.should_exit:
            return False, "shutting down"
        return source.healthy()

    def context_factory(_config: uvicorn.Config, _default: object) -> ssl.SSLContext:
        return source.server_context()

    app = create_app(Rules(config), metrics=metrics, readiness=readiness)
    uvicorn_config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ssl_context_factory=context_factory,
        limit_concurrency=settings.max_concurrency,
        timeout_graceful_shutdown=settings.drain_timeout,
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        date_header=False,
    )
    server = uvicorn.Server(uvicorn_config)
    return server, source


def metrics_version() -> str:
    """The package version, for the info metric."""
    from webhook import __version__  # noqa: PLC0415 - avoids a cycle at import time

    return __version__


async def serve(config: Config, settings: ServeSettings) -> None:
    """Serve until SIGTERM/SIGINT, reloading the certificate when its files change."""
    server, source = build_server(config, settings)
    watcher = asyncio.create_task(source.watch(settings.watch_interval))
    try:
        await server.serve()
    finally:
        watcher.cancel()
