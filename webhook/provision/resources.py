"""The ECR resources the provisioner manages, as plain data: desired and observed state share these shapes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeAlias

PULL_THROUGH_CACHE: Final = "PULL_THROUGH_CACHE"
"""``appliedFor`` value: the template shapes repositories that a pull-through cache creates."""


@dataclass(frozen=True, slots=True)
class CacheRule:
    """A pull-through cache rule: ``<registry>/<prefix>/...`` is fetched from the upstream registry."""

    prefix: str
    upstream_registry: str | None
    """ECR's ``upstreamRegistry`` enum value (``quay``, ``docker-hub``, ...); ``None`` when ECR did not say (rules
    made before the field existed), so only ``upstream_registry_url`` can be compared."""
    upstream_registry_url: str
    credential_arn: str | None = None
    upstream_repository_prefix: str | None = None
    """ECR's ``upstreamRepositoryPrefix``: ``<prefix>/x`` is fetched from ``<upstream prefix>/x``. Ours is the
    upstream's root: ``None`` (not sent, ECR's default) or ``ROOT``."""
    custom_role_arn: str | None = None
    """ECR's ``customRoleArn``: the role ECR assumes to pull from an ECR upstream of another account."""

    def describe(self) -> str:
        """``pull-through cache rule quay (quay.io -> quay/)``."""
        return f"pull-through cache rule {self.prefix} ({self.upstream_registry_url} -> {self.prefix}/)"


@dataclass(frozen=True, slots=True)
class CreationTemplate:
    """A repository creation template: how ECR creates the repositories under ``prefix/``."""

    prefix: str
    description: str
    applied_for: tuple[str, ...]
    image_tag_mutability: str
    lifecycle_policy: str | None
    """Lifecycle policy JSON text, compared by meaning, not by bytes."""
    resource_tags: tuple[tuple[str, str], ...] | None = None
    """Tags for the repositories ECR creates. Desired ``None``: the config says nothing, so the template's tags are
    left as they are (never wiped); observed ``None`` or ``()``: no tags."""
    custom_role_arn: str | None = None

    def describe(self) -> str:
        """``repository creation template quay/``."""
        return f"repository creation template {self.prefix}/"


@dataclass(frozen=True, slots=True)
class RegistryPolicy:
    """The registry permissions policy as JSON text; ``None`` when the registry has none."""

    text: str | None

    def describe(self) -> str:
        """``registry permissions policy``."""
        return "registry permissions policy"


Resource: TypeAlias = CacheRule | CreationTemplate | RegistryPolicy


@dataclass(frozen=True, slots=True)
class Location:
    """Where the cache lives: the account and region of the registry host."""

    account: str
    region: str

    @property
    def host(self) -> str:
        """The registry host, ``<account>.dkr.ecr.<region>.amazonaws.com``."""
        return f"{self.account}.dkr.ecr.{self.region}.amazonaws.com"


@dataclass(frozen=True, slots=True)
class DesiredState:
    """What the config asks for: rules and templates per enabled tier, and our registry policy statements."""

    location: Location
    rules: tuple[CacheRule, ...]
    templates: tuple[CreationTemplate, ...]
    policy_statements: tuple[dict[str, object], ...]
    """Our statements only (``Sid`` starting with ``EcrPtcWebhook``); others' are merged in by the planner."""


@dataclass(frozen=True, slots=True)
class ObservedState:
    """What the registry holds now: every rule and template, and the registry policy."""

    rules: tuple[CacheRule, ...] = ()
    templates: tuple[CreationTemplate, ...] = ()
    policy: RegistryPolicy = RegistryPolicy(None)


ROOT: Final = "ROOT"
"""``upstreamRepositoryPrefix`` meaning the upstream registry's root, ECR's default."""
REGISTRY_POLICY_SCOPE: Final = "REGISTRY_POLICY_SCOPE"
"""ECR account setting: ``V1`` enforces only ReplicateImage, BatchImportUpstreamImage and CreateRepository in the
registry policy (and refuses other actions in it); ``V2`` (the default for new registries) enforces every ECR action."""
