"""Options several commands share: the config file and its overrides."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from webhook.config import load_config
from webhook.core.registries import TIERS_BY_NAME

if TYPE_CHECKING:
    from webhook.core.config import Config


def add_config_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """``--config`` plus the overrides a flag may set (they win over ``ECR_PTC_WEBHOOK_*`` and the file)."""
    group = parser.add_argument_group("configuration (flags > ECR_PTC_WEBHOOK_* variables > --config file)")
    group.add_argument("--config", type=Path, required=required, help="YAML config file (see examples/config.yaml)")
    group.add_argument(
        "--registry", help="the cache's ECR registry host, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    )
    group.add_argument(
        "--tier",
        dest="tiers",
        action="append",
        metavar="TIER",
        # No `choices`: the config's `upstreams` add tiers, and the config's own check names every known one.
        help=f"enable a tier (repeat for several): {', '.join(TIERS_BY_NAME)} or one of the config's `upstreams`; "
        "replaces the file's `tiers`",
    )
    group.add_argument(
        "--prefix",
        dest="prefixes",
        action="append",
        metavar="TIER=PREFIX",
        help="ECR repository prefix for a tier (repeat for several); replaces the file's `prefixes`",
    )
    group.add_argument("--dry-run", dest="dryRun", action=argparse.BooleanOptionalAction, default=None)
    group.add_argument("--digests", choices=["rewrite", "skip"])
    group.add_argument(
        "--pull-secrets",
        dest="pullSecrets",
        choices=["keep", "rewrite"],
        help="keep: images of pods with imagePullSecrets stay on upstreams that can hold private images",
    )
    group.add_argument(
        "--moving-tags",
        dest="movingTags",
        choices=["keep", "rewrite"],
        help="keep: untagged and :latest references (without a digest) stay on their upstream",
    )
    group.add_argument(
        "--exclude",
        action="append",
        metavar="PATTERN",
        help="repository pattern whose images stay on their upstream (repeat for several); replaces `exclude`",
    )
    group.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="rewrite only images matching a pattern (repeat for several); replaces `include`",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    """Load the config the flags describe (raises :class:`~webhook.exceptions.ConfigError`)."""
    prefixes = None
    if args.prefixes:
        prefixes = dict(item.partition("=")[::2] for item in args.prefixes)
    overrides = {
        "registry": args.registry,
        "tiers": args.tiers,
        "prefixes": prefixes,
        "dryRun": args.dryRun,
        "digests": args.digests,
        "pullSecrets": args.pullSecrets,
        "movingTags": args.movingTags,
        "exclude": args.exclude,
        "include": args.include,
    }
    return load_config(args.config, os.environ, overrides)
