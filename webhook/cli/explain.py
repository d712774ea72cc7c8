"""``ecr-ptc-webhook explain IMAGE...``: the decision for each image, the same one /mutate takes."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from webhook.cli._options import add_config_arguments, config_from_args
from webhook.core.reasons import CHANGED_BY, REASON_DESCRIPTIONS
from webhook.core.rules import Rules

if TYPE_CHECKING:
    import argparse

    from webhook.core.rules import Decision


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``explain`` command."""
    parser = subparsers.add_parser(
        "explain",
        help="show whether and why images would be rewritten",
        description="Show the decision the webhook takes for each image: why was my image (not) rewritten?",
    )
    add_config_arguments(parser)
    parser.add_argument("--output", choices=["text", "json"], default="text", help="json: one object per line")
    parser.add_argument(
        "--with-pull-secrets",
        action="store_true",
        help="decide as for a pod with imagePullSecrets (its own or its ServiceAccount's): see `pullSecrets`",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print one decision per image."""
    rules = Rules(config_from_args(args))
    for image in args.images:
        decision = rules.decide(image, pull_secrets=args.with_pull_secrets)
        line = json.dumps(decision.as_dict()) if args.output == "json" else format_text(decision)
        sys.stdout.write(line + "\n")
    return 0


def format_text(decision: Decision) -> str:
    """One human-readable line: image, action, result, reason and what the reason means."""
    tier = f" [tier {decision.tier}]" if decision.tier else ""
    target = f" -> {decision.result}" if decision.rewrites else ""
    change = CHANGED_BY[decision.reason] if not decision.rewrites else ""
    changed_by = f"; changed by {change}" if change else ""
    return (
        f"{decision.image}{target}: {decision.action} "
        f"({decision.reason}{tier}: {REASON_DESCRIPTIONS[decision.reason]}{changed_by})"
    )
