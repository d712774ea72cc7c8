"""``ecr-ptc-webhook serve``: the admission webhook over HTTPS."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from webhook import logs
from webhook.cli._options import add_config_arguments, config_from_args
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
        help="connections and requests in flight beyond which the server answers 503 at once",
    )
    parser.add_argument("--drain-timeout", type=int, default=DRAIN_TIMEOUT, help="seconds to finish requests")
    parser.add_argument(
        "--shutdown-linger",
        type=float,
        default=SHUTDOWN_LINGER,
        help="seconds to keep answering after SIGTERM, closing each connection after its answer (0: stop at once)",
    )
    parser.add_argument("--cert-watch-interval", type=float, default=WATCH_INTERVAL, help="seconds between checks")
    parser.add_argument(
        "--http",
        choices=["auto", "httptools", "h11"],
        default="auto",
        help="HTTP parser (default: httptools when installed, else the pure-Python h11)",
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
        http=args.http,
    )
    log.info(
        "starting",
        extra={"registry": config.registry, "tiers": list(config.tiers), "dry_run": config.dry_run, "port": args.port},
    )
    run_event_loop(serve(config, settings), args.event_loop)
    return 0
