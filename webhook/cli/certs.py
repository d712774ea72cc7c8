"""``ecr-ptc-webhook certs``: a CA and a serving certificate for local runs and tests."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from webhook.certs import write_certificates

if TYPE_CHECKING:
    import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``certs`` command."""
    parser = subparsers.add_parser(
        "certs",
        help="write a CA and a serving certificate (ca.crt, tls.crt, tls.key)",
        description="Write a CA (ca.crt) and a serving certificate (tls.crt, tls.key) signed by it.",
    )
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    parser.add_argument(
        "--dns-name",
        dest="dns_names",
        action="append",
        default=[],
        help="DNS name (repeat), e.g. ecr-ptc-webhook.ecr-ptc-webhook.svc",
    )
    parser.add_argument("--ip", dest="ips", action="append", default=[], help="IP address (repeat), e.g. 127.0.0.1")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the files and say where."""
    if not args.dns_names and not args.ips:
        sys.stderr.write("ecr-ptc-webhook certs: give at least one --dns-name or --ip\n")
        return 2
    files = write_certificates(args.out, args.dns_names, args.ips)
    sys.stdout.write(f"wrote {files.ca}, {files.cert}, {files.key}\n")
    return 0
