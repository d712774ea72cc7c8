"""The chart values that match the config, so the Helm release and the ECR side never disagree."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from webhook.config import Config


def chart_values(config: Config) -> dict[str, Any]:
    """``registry``, ``tiers`` and every enabled tier's ``prefixes`` entry, as the chart's values.yaml spells them."""
    return {
        "registry": config.registry,
        "tiers": list(config.tiers),
        "prefixes": {tier: config.prefix_for(tier) for tier in config.tiers},
    }
