"""The chart values that match the config, so the Helm release and the ECR side never disagree."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from webhook.core.config import Config

NOT_CHART_VALUES: Final = frozenset({"provision"})
"""Config fields the chart does not take: the ``provision:`` section is for this command only."""


def chart_values(config: Config) -> dict[str, Any]:
    """Every webhook key of the validated config under its file name (alias), as the chart's values.yaml spells it.

    ``prefixes`` holds the prefix of every enabled built-in tier (defaults spelled out), and any other tier's
    configured one, so the deployed config resolves the same prefixes and passes the same distinctness check; the
    tiers of ``upstreams`` carry their prefix in their entry.
    """
    values = config.model_dump(mode="json", by_alias=True, exclude=set(NOT_CHART_VALUES))
    values["tiers"] = list(config.tiers)
    built_in = [tier for tier in config.tiers if not config.tier(tier).user_defined]
    values["prefixes"] = {tier: config.prefix_for(tier) for tier in built_in} | {
        tier: prefix for tier, prefix in config.prefixes.items() if tier not in config.tiers
    }
    return values
