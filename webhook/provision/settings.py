"""The ``provision:`` section of the config: what the ECR side needs beyond what the webhook reads.

The webhook's own keys (``registry``, ``tiers``, ``prefixes``) stay the one source of truth for rules and prefixes;
this section adds only what the webhook never needs: credential secrets, image lifetime, who may pull, tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from webhook.core.registries import TIERS_BY_NAME

if TYPE_CHECKING:
    from collections.abc import Mapping

    from webhook.core.config import Config
    from webhook.core.registries import Tier

CREDENTIAL_SECRET_PREFIX: Final = "ecr-pullthroughcache/"  # noqa: S105 - a name prefix, not a secret
"""ECR only accepts credential secrets whose name starts with this."""
_SECRET_NAME: Final = re.compile(r"ecr-pullthroughcache/[a-zA-Z0-9/_+=.@-]+", re.ASCII)
_ACCOUNT_ID: Final = re.compile(r"[0-9]{12}", re.ASCII)
_ORGANIZATION_ID: Final = re.compile(r"o-[a-z0-9]{10,32}", re.ASCII)
_ROLE_ARN: Final = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+", re.ASCII)
TAG_KEY_MAX: Final = 128
TAG_VALUE_MAX: Final = 256
DEFAULT_LIFECYCLE_DAYS: Final = 30


class Principals(BaseModel):
    """Who may pull through the cache from other accounts: account IDs and/or one AWS Organization."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    accounts: tuple[str, ...] = ()
    """12-digit AWS account IDs whose node roles pull through the cache."""
    organization_id: str | None = Field(default=None, alias="organizationId")
    """An AWS Organization ID (``o-...``): every account in it may pull through the cache."""

    @field_validator("accounts", mode="before")
    @classmethod
    def _accounts_are_ids(cls, value: object) -> object:
        if isinstance(value, list):
            value = tuple(value)
        if isinstance(value, tuple):
            for account in value:
                if not (isinstance(account, str) and _ACCOUNT_ID.fullmatch(account)):
                    raise ValueError(f"{account!r} is not an AWS account ID; quote the 12 digits, e.g. '111122223333'")
            if len(set(value)) != len(value):
                raise ValueError(f"lists an account twice: {list(value)}")
        return value

    @field_validator("organization_id")
    @classmethod
    def _organization_is_an_id(cls, value: str | None) -> str | None:
        if value is not None and not _ORGANIZATION_ID.fullmatch(value):
            raise ValueError(f"{value!r} is not an AWS Organization ID; expected e.g. 'o-a1b2c3d4e5'")
        return value


class ProvisionSettings(BaseModel):
    """The ``provision:`` section: credential secrets, lifecycle, principals and tags."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    secrets: dict[str, str] = Field(default_factory=dict)
    """Per opt-in tier, the Secrets Manager secret name (``ecr-pullthroughcache/...``) holding its credential."""
    lifecycle_days: int = Field(default=DEFAULT_LIFECYCLE_DAYS, alias="lifecycleDays", ge=1)
    """Cached images expire this many days after they were cached (``sinceImagePushed``)."""
    principals: Principals = Field(default_factory=Principals)
    """Other accounts allowed to pull through the cache; empty means the registry's own account only."""
    tags: dict[str, str] | None = None
    """Tags ECR puts on the repositories it creates for the cache (needs ``repositoryRoleArn``). Left out: the
    templates' tags are left as they are; ``{}``: the templates carry none."""
    repository_role_arn: str | None = Field(default=None, alias="repositoryRoleArn")
    """IAM role ECR assumes to create tagged repositories; ECR requires one when templates carry tags."""
    upstream_roles: dict[str, str] = Field(default_factory=dict, alias="upstreamRoles")
    """Per ECR upstream of another account (``upstreams`` with ``upstreamRegistry: ecr``), the IAM role ECR assumes
    to pull from it (the rule's ``customRoleArn``)."""

    @field_validator("secrets")
    @classmethod
    def _secrets_are_named_for_ecr(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        tiers = _known_tiers(info)
        for tier, name in value.items():
            if tier not in tiers:
                raise ValueError(f"unknown tier {tier!r}; known: {', '.join(tiers)}")
            if not name.startswith(CREDENTIAL_SECRET_PREFIX):
                raise ValueError(
                    f"secret {name!r} for tier {tier!r} must be named {CREDENTIAL_SECRET_PREFIX}...; ECR refuses "
                    f"other names. Create e.g. {CREDENTIAL_SECRET_PREFIX}{tier} and put its name here"
                )
            if not _SECRET_NAME.fullmatch(name):
                raise ValueError(
                    f"secret {name!r} for tier {tier!r}: a name (not an ARN) of letters, digits and /_+=.@- only"
                )
        return value

    @field_validator("upstream_roles")
    @classmethod
    def _roles_are_for_ecr_upstreams(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        tiers = _known_tiers(info)
        for tier, role in value.items():
            if tier not in tiers or tiers[tier].credential_kind != "role":
                ecr = [name for name, facts in tiers.items() if facts.credential_kind == "role"]
                raise ValueError(
                    f"{tier!r} is not an ECR upstream (`upstreams` with `upstreamRegistry: ecr`); known: "
                    f"{', '.join(ecr) or 'none'}"
                )
            if not _ROLE_ARN.fullmatch(role):
                raise ValueError(
                    f"{role!r} for {tier!r} is not an IAM role ARN; expected arn:aws:iam::<account>:role/<name>"
                )
        return value

    @field_validator("tags")
    @classmethod
    def _tags_fit_ecr(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key, tag_value in (value or {}).items():
            if not 1 <= len(key) <= TAG_KEY_MAX or key.startswith("aws:"):
                raise ValueError(f"tag key {key!r}: 1-{TAG_KEY_MAX} characters, not starting with 'aws:'")
            if len(tag_value) > TAG_VALUE_MAX:
                raise ValueError(f"tag {key!r}: value longer than {TAG_VALUE_MAX} characters")
        return value

    @field_validator("repository_role_arn")
    @classmethod
    def _role_is_an_arn(cls, value: str | None) -> str | None:
        if value is not None and not _ROLE_ARN.fullmatch(value):
            raise ValueError(f"{value!r} is not an IAM role ARN; expected arn:aws:iam::<account>:role/<name>")
        return value

    @model_validator(mode="after")
    def _tags_need_a_role(self) -> ProvisionSettings:
        if self.tags and self.repository_role_arn is None:
            raise ValueError(
                "`tags` needs `repositoryRoleArn`: ECR tags the repositories it creates only through a role you "
                "give it (see docs/provision.md); set it or drop `tags`"
            )
        return self


def _known_tiers(info: ValidationInfo) -> Mapping[str, Tier]:
    """The tiers of the webhook's config (validated first, passed as context), else the built-in ones."""
    context = info.context if isinstance(info.context, dict) else {}
    tiers: Mapping[str, Tier] = context.get("tiers", TIERS_BY_NAME)
    return tiers


@dataclass(frozen=True, slots=True)
class ProvisionConfig:
    """The webhook's config and the ``provision:`` section of the same file (see :mod:`webhook.provision.config`)."""

    webhook: Config
    settings: ProvisionSettings
