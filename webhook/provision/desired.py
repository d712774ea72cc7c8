"""Desired state from the webhook's config plus the ``provision:`` section.

Per enabled tier a pull-through cache rule and a repository creation template, and registry policy statements for the
allowed principals. Pure: credential secrets arrive as already-resolved ARNs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from webhook.provision.errors import LocationError, SecretError
from webhook.provision.policy import node_role_policy, registry_statements
from webhook.provision.resources import PULL_THROUGH_CACHE, CacheRule, CreationTemplate, DesiredState, Location
from webhook.registries import ECR_HOST_PATTERN, TIERS_BY_NAME, Tier

if TYPE_CHECKING:
    from collections.abc import Mapping

    from webhook.config import Config
    from webhook.provision.settings import ProvisionSettings

MANAGED_BY: Final = "Managed by ecr-ptc-webhook"
"""Start of the description of every creation template we create: our record of owning it and its rule."""
IMAGE_TAG_MUTABILITY: Final = "MUTABLE"
"""Upstream tags move (``latest``, ``v1``); the cache must follow them."""
UNSUPPORTED_REGION_PREFIXES: Final[tuple[str, ...]] = ("cn-", "us-gov-", "us-iso")
"""Regions (China, GovCloud, ISO) where ECR has no pull-through cache for these upstreams."""
PULL_THROUGH_CACHE_RULES_QUOTA: Final = 50
"""Default quota of pull-through cache rules per registry (adjustable in Service Quotas)."""


def locate(config: Config, region: str | None = None) -> Location:
    """Account and region of the config's registry host; ``region`` (a flag) must agree with the host."""
    match = ECR_HOST_PATTERN.fullmatch(config.registry.lower())
    if match is None:
        raise LocationError(
            f"config key `registry`: {config.registry!r} is not a private ECR host; provisioning needs "
            "<account>.dkr.ecr.<region>.amazonaws.com"
        )
    location = Location(account=match["account"], region=match["region"])
    if region is not None and region != location.region:
        raise LocationError(
            f"--region {region} disagrees with the registry host {config.registry} (region {location.region}); "
            "drop --region or fix `registry`"
        )
    if location.region.startswith(UNSUPPORTED_REGION_PREFIXES):
        raise LocationError(
            f"region {location.region} has no ECR pull-through cache for these upstreams (China, GovCloud and ISO "
            "regions lack it); put the cache in a commercial region"
        )
    return location


def enabled_tiers(config: Config) -> tuple[Tier, ...]:
    """The config's enabled tiers, in config order."""
    return tuple(TIERS_BY_NAME[name] for name in config.tiers)


def credential_names(config: Config, settings: ProvisionSettings) -> dict[str, str]:
    """Secret name per enabled tier that needs one; every opt-in tier must have one, default tiers none."""
    names: dict[str, str] = {}
    for tier in enabled_tiers(config):
        name = settings.secrets.get(tier.name)
        if tier.needs_credentials and name is None:
            raise SecretError(
                f"tier {tier.name!r} needs a credential for {tier.upstream_registry_url}: create a Secrets Manager "
                f"secret ecr-pullthroughcache/{tier.name} with keys username and accessToken, and set "
                f"`provision.secrets.{tier.name}` to its name"
            )
        if not tier.needs_credentials and name is not None:
            raise SecretError(f"tier {tier.name!r} pulls anonymously; remove `provision.secrets.{tier.name}` ({name})")
        if name is not None:
            names[tier.name] = name
    return names


def lifecycle_policy(days: int) -> str:
    """Expire cached images ``days`` after they were cached.

    ``sinceImagePushed`` counts from caching; AWS allows ``sinceImagePulled`` only with a ``transition`` action.
    """
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"Expire cached images after {days} days (ecr-ptc-webhook)",
                    "selection": {
                        "tagStatus": "any",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": days,
                    },
                    "action": {"type": "expire"},
                }
            ]
        }
    )


def desired_state(
    config: Config, settings: ProvisionSettings, location: Location, credential_arns: Mapping[str, str]
) -> DesiredState:
    """Rules, templates and our registry policy statements for the enabled tiers."""
    tiers = enabled_tiers(config)
    rules = tuple(
        CacheRule(
            prefix=config.prefix_for(tier.name),
            upstream_registry=tier.upstream_registry,
            upstream_registry_url=tier.upstream_registry_url,
            credential_arn=credential_arns.get(tier.name),
        )
        for tier in tiers
    )
    templates = tuple(
        CreationTemplate(
            prefix=config.prefix_for(tier.name),
            description=f"{MANAGED_BY}: pull-through cache of {tier.upstream_registry_url}",
            applied_for=(PULL_THROUGH_CACHE,),
            image_tag_mutability=IMAGE_TAG_MUTABILITY,
            lifecycle_policy=lifecycle_policy(settings.lifecycle_days),
            resource_tags=tuple(sorted(settings.tags.items())),
            custom_role_arn=settings.repository_role_arn,
        )
        for tier in tiers
    )
    statements = registry_statements(location, [rule.prefix for rule in rules], settings.principals)
    return DesiredState(location=location, rules=rules, templates=templates, policy_statements=statements)


def is_managed(template: CreationTemplate) -> bool:
    """Whether a creation template carries our ownership mark."""
    return template.description.startswith(MANAGED_BY)


def node_policy(config: Config, location: Location) -> dict[str, Any]:
    """The identity policy node roles (in any allowed account) need to pull through the config's cache."""
    return node_role_policy(location, [config.prefix_for(tier.name) for tier in enabled_tiers(config)])
