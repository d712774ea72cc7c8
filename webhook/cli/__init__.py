"""The ``ecr-ptc-webhook`` command line.

Each subcommand is a module of this package with a ``register(subparsers)`` function that adds its parser and sets
``run=function(args) -> exit code``; the commands are thin shells over the modules that do the work. Errors the
package raises on purpose (:class:`~webhook.exceptions.WebhookError`) end as one line on stderr and exit code 2.

The top of the layering (``.importlinter``): it may import every part; no part imports it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from typing import TYPE_CHECKING

from webhook import __version__
from webhook.exceptions import WebhookError

if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The parser with every subcommand module of this package registered, in name order."""
    parser = argparse.ArgumentParser(
        prog="ecr-ptc-webhook",
        description="Route Pod images through an AWS ECR pull-through cache.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except WebhookError as error:
        print(f"ecr-ptc-webhook {args.command}: {error}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, and keep the interpreter's final flush from failing too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code
