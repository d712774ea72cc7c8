"""``ecr-ptc-webhook warm IMAGE... | -f FILE``: pull manifests through the cache before a migration."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from webhook.cache.discovery import RuleDiscovery, RulesUnavailableError
from webhook.cache.registry_client import (
    ENV_CA_FILE,
    EcrImageIndex,
    RegistryClient,
    ecr_client_for,
    registry_id_of,
    token_source_for,
)
from webhook.cache.warm import DEFAULT_CONCURRENCY, Cache, read_image_list, summary, warm
from webhook.cli._options import add_config_arguments, config_from_args
from webhook.core.rules import Rules
from webhook.exceptions import ConfigError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from webhook.cache.warm import WarmResult
    from webhook.core.config import Config

WARM_TIMEOUT = 30.0
"""Seconds one manifest fetch may take: a pull-through cache may be fetching from a slow upstream."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``warm`` command."""
    parser = subparsers.add_parser(
        "warm",
        help="pull image manifests through the cache (e.g. a cluster's images before a migration)",
        description=(
            "For each image the webhook would rewrite, fetch its manifest from the cache (by tag, then by digest), "
            "so the pull-through cache holds it before pods need it; with an ECR cache, images it holds already "
            "(ecr:DescribeImages) are reported as such and not fetched. `rules: discover` reads the cache's rules "
            "first. Exits 1 if any image is missing or failed."
        ),
    )
    add_config_arguments(parser)
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="images as pods name them")
    parser.add_argument(
        "-f", "--file", type=Path, help="a file with one image per line (# comments); '-' reads standard input"
    )
    parser.add_argument(
        "--concurrency", type=int, default=DEFAULT_CONCURRENCY, help=f"fetches at once (default {DEFAULT_CONCURRENCY})"
    )
    parser.add_argument("--timeout", type=float, default=WARM_TIMEOUT, help="seconds per registry request")
    parser.add_argument(
        "--ca-file",
        type=Path,
        help=f"PEM CA bundle to trust for the registry (default: ${ENV_CA_FILE} or the system's)",
    )
    parser.add_argument("--output", choices=["text", "json"], default="text", help="json: one object per image")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Warm the images; print progress on stderr and the summary on stdout."""
    images = list(args.images)
    if args.file is not None:
        images += _read_file(args.file)
    if not images:
        raise ConfigError("no images: name some, or give a file with -f FILE")
    if args.concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, got {args.concurrency}")
    config = config_from_args(args)
    ca_file = args.ca_file or (Path(os.environ[ENV_CA_FILE]) if os.environ.get(ENV_CA_FILE) else None)
    results = asyncio.run(_warm(images, config, args, ca_file))
    if args.output == "json":
        for result in results:
            line = {"image": result.image, "target": result.target, "status": result.status, "detail": result.detail}
            sys.stdout.write(json.dumps(line) + "\n")
    else:
        sys.stdout.write(summary(results) + "\n")
    return 0 if all(result.ok for result in results) else 1


async def rules_for(config: Config, discovery: Callable[[], RuleDiscovery]) -> Rules:
    """The rules to warm with: the config's, or with ``rules: discover`` those the cache really has (read once).

    Like ``serve``, a tier without its rule is then skipped as ``rule-missing``; rules that cannot be read are an
    error (:class:`RulesUnavailableError`), not a silent "skip everything".
    """
    if config.rules != "discover":
        return Rules(config)
    reader = discovery()
    if not await reader.refresh():
        raise RulesUnavailableError(
            f"`rules: discover`: reading the cache's pull-through cache rules failed: {reader.failure} "
            "(warm needs them; with `rules: static` it warms every enabled tier)"
        )
    return reader.current()


async def _warm(images: list[str], config: Config, args: argparse.Namespace, ca_file: Path | None) -> list[WarmResult]:
    registry, account = config.registry, registry_id_of(config.registry)
    ecr = functools.cache(lambda: ecr_client_for(registry))  # one client for the rules, the token and the images
    rules = await rules_for(config, lambda: RuleDiscovery(config, ecr(), registry_id=account))
    index = EcrImageIndex(ecr(), account) if account is not None else None
    auth = token_source_for(registry, os.environ, ecr)
    client = RegistryClient(auth, ca_file=ca_file, timeout=args.timeout, max_connections=args.concurrency)
    progress = Progress(len(set(images)), sys.stderr)
    try:
        cache = Cache(client.get_manifest, index)
        return await warm(images, rules, cache, concurrency=args.concurrency, progress=progress)
    finally:
        progress.close()
        await client.aclose()


class Progress:
    """``[done/total]`` on stderr: one line rewritten in place on a terminal, a line per image otherwise."""

    def __init__(self, total: int, stream: TextIO) -> None:
        """Count up to ``total`` on ``stream``."""
        self._total = total
        self._done = 0
        self._stream = stream
        self._tty = stream.isatty()

    def __call__(self, result: WarmResult) -> None:
        """One more image finished."""
        self._done += 1
        width = len(str(self._total))
        line = f"[{self._done:>{width}}/{self._total}] {result.status.value:<8} {result.image}"
        if self._tty:
            bar = _bar(self._done, self._total)
            self._stream.write(f"\r\x1b[2K{bar} {line}"[:200])
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        """End the in-place line."""
        if self._tty and self._done:
            self._stream.write("\n")
            self._stream.flush()


def _bar(done: int, total: int, width: int = 24) -> str:
    filled = width * done // max(total, 1)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _read_file(path: Path) -> list[str]:
    if str(path) == "-":
        return read_image_list(sys.stdin)
    try:
        with path.open(encoding="utf-8") as lines:
            return read_image_list(lines)
    except OSError as error:
        raise ConfigError(f"cannot read image list {path}: {error.strerror}") from None
