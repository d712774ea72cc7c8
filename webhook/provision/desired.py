"""Desired state from the webhook's config plus the ``provision:`` section.

Per enabled tier a pull-through cache rule and a repository creation template, and registry policy statements for the
allowed principals. Pure: credential secrets arrive as already-resolved ARNs.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Final

from webhook.core.registries import ECR_HOST_PATTERN, Tier
from webhook.provision.errors import LocationError, RoleError, SecretError
from webhook.provision.policy import (
    node_role_policy,
    registry_statements,
    upstream_registry_statement,
    upstream_role_permissions,
    upstream_role_trust,
    webhook_role_policy,
)
from webhook.provision.resources import PULL_THROUGH_CACHE, CacheRule, CreationTemplate, DesiredState, Location

if TYPE_CHECKING:
    from collections.abc import Mapping

    from webhook.core.config import Config
    from webhook.provision.settings import ProvisionSettings

MANAGED_BY: Final = "Managed by ecr-ptc-webhook"
"""Start of the description of every creation template we manage: our record of owning it and its prefix's rule."""
ADOPTABLE: Final[tuple[str, ...]] = ("rule", "template")
"""What ``--adopt`` takes over on a prefix; recorded as ``Managed by ecr-ptc-webhook (adopted: rule, template): ...``
so that ``destroy`` and pruning leave what existed before the tool in place."""
_ADOPTED: Final = re.compile(re.escape(MANAGED_BY) + r" \(adopted: ([a-z, ]+)\)")
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
    return tuple(config.tier(name) for name in config.tiers)


def credential_names(config: Config, settings: ProvisionSettings) -> dict[str, str]:
    """Secret name per enabled tier that needs one; every tier that needs a secret must have one, others none."""
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
            how = "through an IAM role (`provision.upstreamRoles`)" if tier.credential_kind == "role" else "anonymously"
            raise SecretError(f"tier {tier.name!r} pulls {how}; remove `provision.secrets.{tier.name}` ({name})")
        if name is not None:
            names[tier.name] = name
    return names


def upstream_location(tier: Tier) -> Location | None:
    """Account and region of an ECR upstream (``None`` for other upstreams)."""
    if tier.credential_kind != "role":
        return None
    match = ECR_HOST_PATTERN.fullmatch(tier.upstream_registry_url)
    return None if match is None else Location(account=match["account"], region=match["region"])


def custom_roles(config: Config, settings: ProvisionSettings, location: Location) -> dict[str, str]:
    """The ``customRoleArn`` per enabled ECR upstream of another account: required there, refused elsewhere.

    ECR assumes the role in the cache's account (CreatePullThroughCacheRule: "must be in the same account as the
    registry"); an upstream in the cache's own account needs none.
    """
    roles: dict[str, str] = {}
    for tier in enabled_tiers(config):
        upstream = upstream_location(tier)
        role = settings.upstream_roles.get(tier.name)
        if upstream is None:
            continue
        if upstream.region.startswith(UNSUPPORTED_REGION_PREFIXES):
            raise LocationError(
                f"tier {tier.name!r}: {tier.upstream_registry_url} is in region {upstream.region}, another AWS "
                f"partition than the cache's {location.region}; pull-through cache does not cross partitions"
            )
        key = f"`provision.upstreamRoles.{tier.name}`"
        if upstream.account == location.account:
            if role is not None:
                raise RoleError(
                    f"tier {tier.name!r}: {tier.upstream_registry_url} is in the cache's own account "
                    f"{location.account}, so ECR needs no role to pull from it; remove {key} ({role})"
                )
            continue
        if role is None:
            raise RoleError(
                f"tier {tier.name!r}: {tier.upstream_registry_url} is in account {upstream.account}, not the cache's "
                f"{location.account}: ECR pulls from it through an IAM role in account {location.account}. Create it "
                "(`ecr-ptc-webhook provision upstream-policy` prints its trust and permissions policies) and set "
                f"{key} to its ARN"
            )
        account = role.split(":")[4]
        if account != location.account:
            raise RoleError(
                f"config key {key}: role {role} is in account {account}, but ECR assumes it only in the cache "
                f"registry's account {location.account}; create the role there and name it here"
            )
        roles[tier.name] = role
    return roles


def upstream_policies(config: Config, location: Location) -> list[dict[str, Any]]:
    """Per enabled ECR upstream of another account: the role's trust and permissions, and the upstream's grant."""
    policies = []
    for tier in enabled_tiers(config):
        upstream = upstream_location(tier)
        if upstream is None or upstream.account == location.account:
            continue
        prefix = config.prefix_for(tier.name)
        policies.append(
            {
                "tier": tier.name,
                "upstream": tier.upstream_registry_url,
                "roleTrustPolicy": upstream_role_trust(),
                "rolePermissionsPolicy": upstream_role_permissions(location, upstream, prefix),
                "upstreamRegistryPolicyStatement": upstream_registry_statement(location, upstream),
            }
        )
    return policies


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
    check_role_account(settings, location)
    tiers = enabled_tiers(config)
    roles = custom_roles(config, settings, location)
    rules = tuple(
        CacheRule(
            prefix=config.prefix_for(tier.name),
            upstream_registry=tier.upstream_registry,
            upstream_registry_url=tier.upstream_registry_url,
            credential_arn=credential_arns.get(tier.name),
            custom_role_arn=roles.get(tier.name),
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
            resource_tags=None if settings.tags is None else tuple(sorted(settings.tags.items())),
            custom_role_arn=settings.repository_role_arn,
        )
        for tier in tiers
    )
    statements = registry_statements(location, [rule.prefix for rule in rules], settings.principals)
    return DesiredState(location=location, rules=rules, templates=templates, policy_statements=statements)


def check_role_account(settings: ProvisionSettings, location: Location) -> None:
    """ECR assumes a template's ``customRoleArn`` only in the registry's own account."""
    role = settings.repository_role_arn
    if role is None:
        return
    account = role.split(":")[4]
    if account != location.account:
        raise LocationError(
            f"config key `provision.repositoryRoleArn`: role {role} is in account {account}, but ECR assumes the "
            f"repository creation role only in the registry's account {location.account}; create the role there "
            "and name it here"
        )


def is_managed(template: CreationTemplate) -> bool:
    """Whether a creation template carries our ownership mark (created or adopted by us)."""
    return template.description.startswith(MANAGED_BY)


def adopted(template: CreationTemplate) -> frozenset[str]:
    """What on the template's prefix we adopted rather than created: ``rule``, ``template``, both or neither."""
    match = _ADOPTED.match(template.description)
    if match is None:
        return frozenset()
    return frozenset(part.strip() for part in match[1].split(",")) & frozenset(ADOPTABLE)


def mark_adopted(description: str, parts: frozenset[str]) -> str:
    """Our template description with the record of what was adopted on its prefix (unchanged when nothing was)."""
    if not parts or not description.startswith(MANAGED_BY):
        return description
    return f"{MANAGED_BY} (adopted: {', '.join(sorted(parts))}){description.removeprefix(MANAGED_BY)}"


def node_policy(config: Config, location: Location) -> dict[str, Any]:
    """The identity policy node roles (in any allowed account) need to pull through the config's cache."""
    return node_role_policy(location, [config.prefix_for(tier.name) for tier in enabled_tiers(config)])


def webhook_policy(config: Config, location: Location) -> dict[str, Any] | None:
    """The identity policy of the webhook's ServiceAccount role; ``None`` when it calls no AWS API.

    ``rules: discover`` reads the rules; ``verify: true`` HEADs manifests through the cache, which may import them.
    """
    prefixes = [config.prefix_for(tier.name) for tier in enabled_tiers(config)]
    return webhook_role_policy(location, prefixes, discover=config.rules == "discover", verify=config.verify)
