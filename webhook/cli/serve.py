"""``ecr-ptc-webhook serve``: the admission webhook over HTTPS."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from webhook import logs
from webhook.cli._options import add_config_arguments, config_from_args
from webhook.serve.connection import (
    HANDSHAKE_TIMEOUT,
    HEADER_TIMEOUT,
    KEEPALIVE_TIMEOUT,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    Limits,
)
from webhook.serve.server import DRAIN_TIMEOUT, MAX_CONCURRENCY, SHUTDOWN_LINGER, ServeSettings, run_event_loop, serve
from webhook.serve.tls import WATCH_INTERVAL

if TYPE_CHECKING:
    import argparse

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` command."""
    parser = subparsers.add_parser(
        "serve",
        help="serve /mutate, /audit, /healthz, /readyz and /metrics over HTTPS",
        description="Serve the admission webhook over HTTPS (TLS 1.2+, HTTP/1.1).",
    )
    add_config_arguments(parser, required=False)
    parser.add_argument("--tls-cert", type=Path, required=True, help="PEM certificate (reloaded when it changes)")
    parser.add_argument("--tls-key", type=Path, required=True, help="PEM private key (reloaded when it changes)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")  # noqa: S104
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=MAX_CONCURRENCY,
        help="connections served at once; requests on connections beyond it are answered 503 and closed "
        f"(default: {MAX_CONCURRENCY})",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=DRAIN_TIMEOUT,
        help=f"seconds requests in flight get after the linger; then they are cut (default: {DRAIN_TIMEOUT})",
    )
    parser.add_argument(
        "--shutdown-linger",
        type=float,
        default=SHUTDOWN_LINGER,
        help="seconds to keep answering after SIGTERM, closing each connection after its answer (0: stop at once)",
    )
    parser.add_argument("--cert-watch-interval", type=float, default=WATCH_INTERVAL, help="seconds between checks")
    parser.add_argument(
        "--handshake-timeout",
        type=float,
        default=HANDSHAKE_TIMEOUT,
        help=f"seconds for a TLS handshake (default: {HANDSHAKE_TIMEOUT})",
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=HEADER_TIMEOUT,
        help=f"seconds for a request line and headers, from the connection or the request's first byte "
        f"(default: {HEADER_TIMEOUT}); the body has the API server's ?timeout= (at most 30 s)",
    )
    parser.add_argument(
        "--keepalive-timeout",
        type=float,
        default=KEEPALIVE_TIMEOUT,
        help=f"seconds a kept-open connection may wait for its next request (default: {KEEPALIVE_TIMEOUT})",
    )
    parser.add_argument(
        "--max-header-bytes",
        type=int,
        default=MAX_HEADER_BYTES,
        help=f"bytes of request line and headers; more is answered 431 (default: {MAX_HEADER_BYTES})",
    )
    parser.add_argument(
        "--max-headers",
        type=int,
        default=MAX_HEADERS,
        help=f"headers per request; more is answered 431 (default: {MAX_HEADERS})",
    )
    parser.add_argument(
        "--event-loop",
        choices=["auto", "uvloop", "asyncio"],
        default="auto",
        help="event loop (default: uvloop when installed, else asyncio's own)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Load the config, then serve until SIGTERM."""
    logs.configure(args.log_level)
    config = config_from_args(args)
    settings = ServeSettings(
        cert_file=args.tls_cert,
        key_file=args.tls_key,
        host=args.host,
        port=args.port,
        max_concurrency=args.max_concurrency,
        drain_timeout=args.drain_timeout,
        watch_interval=args.cert_watch_interval,
        shutdown_linger=args.shutdown_linger,
        handshake_timeout=args.handshake_timeout,
        limits=Limits(
            header_timeout=args.header_timeout,
            keepalive_timeout=args.keepalive_timeout,
            max_header_bytes=args.max_header_bytes,
            max_headers=args.max_headers,
        ),
    )
    log.info(
        "starting",
        extra={"registry": config.registry, "tiers": list(config.tiers), "dry_run": config.dry_run, "port": args.port},
    )
    run_event_loop(serve(config, settings), args.event_loop)
    return 0
