"""The webhook's configuration model: what it rewrites, and how. Frozen, validated, no I/O.

The core reads a :class:`Config`; building one from a file, ``ECR_PTC_WEBHOOK_*`` variables and flags is an edge
(:mod:`webhook.config`). Every error names the key and the fix, e.g.
``config key `tiers`: unknown tier 'dockerhub'; known: ...``.
"""

from __future__ import annotations

import re
from functools import cached_property
from itertools import combinations
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from webhook.core.patterns import PatternError, RepositoryPatterns
from webhook.core.reference import DOMAIN_RE, split_docker_domain
from webhook.core.registries import (
    DEFAULT_TIERS,
    ECR_PREFIX_MAX,
    ECR_PREFIX_MIN,
    ECR_PREFIX_PATTERN,
    EKS_ADDON_ACCOUNTS,
    PUBLIC_ECR_HOST,
    TIER_BY_HOST,
    TIERS_BY_NAME,
    UPSTREAM_KINDS,
    Tier,
)
from webhook.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

TIER_NAME_PATTERN: Final = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*", re.ASCII)
"""A user-defined tier's name: it becomes a metrics label, a reason's tier and a `tiers` entry."""
TIER_NAME_MAX: Final = 63


class Upstream(BaseModel):
    """A user-defined tier (``upstreams:``): an upstream ECR can cache whose host is the user's own."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    name: str
    """The tier's name, used in ``tiers``, metrics and decisions."""
    upstream_registry: str = Field(alias="upstreamRegistry")
    """ECR's ``upstreamRegistry`` value: one of :data:`~webhook.core.registries.UPSTREAM_KINDS`."""
    host: str
    """The registry host images name, e.g. ``acme.azurecr.io``; lowercased."""
    prefix: str
    """The ECR repository prefix of the tier's cache rule."""

    @field_validator("name")
    @classmethod
    def _name_is_a_new_tier(cls, value: str) -> str:
        if value in TIERS_BY_NAME:
            raise ValueError(f"{value!r} is a built-in tier; give the upstream a name of its own, e.g. 'acme-acr'")
        if len(value) > TIER_NAME_MAX or not TIER_NAME_PATTERN.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a tier name: lowercase letters and digits separated by '-', at most "
                f"{TIER_NAME_MAX} characters, e.g. 'acme-acr'"
            )
        return value

    @field_validator("upstream_registry")
    @classmethod
    def _kind_is_known(cls, value: str) -> str:
        if value not in UPSTREAM_KINDS:
            built_in = next((tier.name for tier in TIERS_BY_NAME.values() if tier.upstream_registry == value), None)
            hint = f" ({value} is the built-in tier {built_in!r}: list it in `tiers`)" if built_in else ""
            raise ValueError(f"unknown upstream registry {value!r}{hint}; known: {', '.join(UPSTREAM_KINDS)}")
        return value

    @field_validator("host")
    @classmethod
    def _host_fits_the_kind(cls, value: str, info: ValidationInfo) -> str:
        host = value.lower()
        if host in TIER_BY_HOST:
            raise ValueError(f"{host!r} is the built-in tier {TIER_BY_HOST[host].name!r}'s host; list that in `tiers`")
        if host == PUBLIC_ECR_HOST:
            raise ValueError(f"{host} is never cached (already on AWS); remove this upstream")
        kind = UPSTREAM_KINDS.get(info.data.get("upstream_registry", ""))
        if kind is None:
            return host  # the upstreamRegistry error says what is wrong
        fields = kind.match(host)
        if fields is None:
            raise ValueError(
                f"{value!r} is not a {kind.upstream_registry} host; expected {kind.shape} (no scheme, no path)"
            )
        if fields.get("account") in EKS_ADDON_ACCOUNTS:
            raise ValueError(
                f"{value!r} is an AWS-owned EKS add-on registry: AWS manages it and it is never cached; remove this "
                "upstream"
            )
        return host

    @field_validator("prefix")
    @classmethod
    def _prefix_is_valid(cls, value: str) -> str:
        _check_prefix(value, "this upstream")
        return value

    @cached_property
    def tier(self) -> Tier:
        """The tier this upstream defines: every host of its registry, its prefix, its kind's credential."""
        kind = UPSTREAM_KINDS[self.upstream_registry]
        hosts = kind.hosts(kind.match(self.host) or {})
        return Tier(
            self.name,
            hosts,
            self.prefix,
            "opt-in",
            kind.upstream_registry,
            hosts[0],
            credential=kind.credential,
            user_defined=True,
        )


class Config(BaseModel):
    """What the webhook rewrites, and how."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    registry: str
    """The cache's ECR registry host, e.g. ``123456789012.dkr.ecr.eu-west-1.amazonaws.com``."""
    upstreams: tuple[Upstream, ...] = ()
    """User-defined tiers (Azure Container Registry, another ECR registry...); enabled when listed in ``tiers``.
    Declared before ``tiers`` and ``prefixes``, whose validators read it."""
    tiers: tuple[str, ...] = DEFAULT_TIERS
    """Enabled tiers; opt-in tiers need a credential secret on the ECR side."""
    prefixes: dict[str, str] = Field(default_factory=dict, validate_default=True)
    """Per-tier ECR repository prefix overriding the tier's default."""
    dry_run: bool = Field(default=False, alias="dryRun")
    """Audit only: report would-be rewrites, patch nothing."""
    digests: Literal["rewrite", "skip"] = "rewrite"
    """Whether digest-pinned references are rewritten."""
    rules: Literal["static", "discover"] = "static"
    """``discover``: rewrite only tiers whose pull-through cache rule exists in ECR (read at start and every
    ``rulesRefreshSeconds``); ``static``: trust the config."""
    rules_refresh_seconds: float = Field(default=300.0, alias="rulesRefreshSeconds", gt=0)
    """How often ``rules: discover`` reads the cache's rules again."""
    verify: bool = False
    """Check that each rewritten reference resolves in the cache before rewriting (HEAD of the manifest)."""
    verify_budget_seconds: float = Field(default=0.5, alias="verifyBudgetSeconds", gt=0, le=2.0)
    """Time one admission may spend verifying; past it the original images are kept (the webhook timeout is 3 s)."""
    pull_secrets: Literal["keep", "rewrite"] = Field(default="keep", alias="pullSecrets")
    """``keep``: in a pod with ``imagePullSecrets``, images of tiers whose upstream can hold private images stay on
    their upstream (the shared cache would break the pull, or let every reader of the cache see the image)."""
    moving_tags: Literal["keep", "rewrite"] = Field(default="keep", alias="movingTags")
    """``keep``: references with no tag and no digest, or the tag ``latest``, stay on their upstream (the cache
    re-checks a tag about once a day); a digest makes any reference safe."""
    exclude: tuple[str, ...] = ()
    """Repository patterns (:mod:`webhook.core.patterns`) whose images stay on their upstream."""
    include: tuple[str, ...] = ()
    """When set, only images whose repository matches one of these patterns are rewritten."""
    provision: dict[str, Any] | None = None
    """The ``provision:`` section, carried as opaque data: ``ecr-ptc-webhook provision`` owns and validates it
    (:mod:`webhook.provision.config`); the webhook ignores it."""

    @field_validator("registry")
    @classmethod
    def _registry_is_a_host(cls, value: str) -> str:
        if not DOMAIN_RE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a registry host; expected e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com "
                "(no scheme, no path)"
            )
        # Before the host-shape check: `docker.io` is a host, but one that needs this explanation instead.
        if value.lower() in TIER_BY_HOST:
            raise ValueError(f"{value!r} is an upstream registry; set the cache's ECR registry host")
        if split_docker_domain(f"{value}/x")[0] != value:
            # `cache/quay/x` would read as Docker Hub's `cache` namespace, not as a registry host.
            raise ValueError(f"{value!r} is not a registry host: a host needs a '.' or a ':port'")
        return value

    @field_validator("upstreams", mode="before")
    @classmethod
    def _upstreams_are_a_list(cls, value: object) -> object:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("upstreams")
    @classmethod
    def _upstreams_are_distinct(cls, value: tuple[Upstream, ...], info: ValidationInfo) -> tuple[Upstream, ...]:
        registry = str(info.data.get("registry", "")).lower()
        claimed: dict[str, str] = {}
        for index, upstream in enumerate(value):
            where = f"upstreams[{index}] ({upstream.name!r})"
            if upstream.name in claimed.values():
                raise ValueError(f"{where}: the name {upstream.name!r} is used twice; give each upstream its own")
            if registry in upstream.tier.hosts:
                raise ValueError(
                    f"{where}: {upstream.host} is the cache registry itself (`registry`); an upstream must be "
                    "another registry"
                )
            for host in upstream.tier.hosts:
                if host in claimed:
                    raise ValueError(
                        f"{where}: the registry {upstream.host} is already the upstream of {claimed[host]!r}; "
                        "one upstream per registry"
                    )
            claimed.update(dict.fromkeys(upstream.tier.hosts, upstream.name))
        return value

    @field_validator("tiers", mode="before")
    @classmethod
    def _tiers_are_known(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, list):
            value = tuple(value)
        if isinstance(value, tuple):
            _check_tier_names(value, info)
            if len(set(value)) != len(value):
                raise ValueError(f"lists a tier twice: {list(value)}")
        return value

    @field_validator("exclude", "include", mode="before")
    @classmethod
    def _patterns_compile(cls, value: object) -> object:
        if isinstance(value, list):
            value = tuple(value)
        if isinstance(value, tuple):
            for item in value:
                if not isinstance(item, str):
                    raise ValueError(  # noqa: TRY004 - pydantic reports ValueError, not TypeError, as a validation error
                        f"expected a list of repository patterns (strings), got {item!r}"
                    )
            try:
                RepositoryPatterns(value)
            except PatternError as error:
                raise ValueError(f'{error}; see README "Choosing images" for the syntax') from None
        return value

    @field_validator("prefixes")
    @classmethod
    def _prefixes_are_valid(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        _check_tier_names(tuple(value), info)
        upstreams: tuple[Upstream, ...] = info.data.get("upstreams", ())
        for tier, prefix in value.items():
            if any(upstream.name == tier for upstream in upstreams):
                raise ValueError(
                    f"tier {tier!r} is defined in `upstreams`: set its prefix there (`prefix: {prefix}`), not here"
                )
            _check_prefix(prefix, f"tier {tier!r}")
        _check_prefixes_are_distinct(value, upstreams)
        return value

    @cached_property
    def known_tiers(self) -> dict[str, Tier]:
        """Every tier by name: the built-in ones, then those of ``upstreams``."""
        return TIERS_BY_NAME | {upstream.name: upstream.tier for upstream in self.upstreams}

    @cached_property
    def tier_by_host(self) -> dict[str, Tier]:
        """The tier of each upstream host, built-in and user-defined (hosts lowercase)."""
        return TIER_BY_HOST | {host: upstream.tier for upstream in self.upstreams for host in upstream.tier.hosts}

    def tier(self, name: str) -> Tier:
        """The tier called ``name`` (built-in or from ``upstreams``)."""
        return self.known_tiers[name]

    def prefix_for(self, tier: str) -> str:
        """The ECR repository prefix of ``tier`` (configured or default)."""
        return self.prefixes.get(tier, self.known_tiers[tier].default_prefix)


def _check_prefix(prefix: str, whose: str) -> None:
    if not (ECR_PREFIX_MIN <= len(prefix) <= ECR_PREFIX_MAX and ECR_PREFIX_PATTERN.fullmatch(prefix)):
        raise ValueError(
            f"prefix {prefix!r} for {whose} is not a valid ECR repository prefix: "
            f"{ECR_PREFIX_MIN}-{ECR_PREFIX_MAX} characters, lowercase letters and digits separated by "
            "'.', '_', '-' or '/', e.g. 'dockerhub'"
        )


def _check_prefixes_are_distinct(prefixes: Mapping[str, str], upstreams: Iterable[Upstream] = ()) -> None:
    """Every tier (enabled or not) needs its own cache namespace: equal or nested prefixes would mix two upstreams."""
    resolved = {tier: prefixes.get(tier, facts.default_prefix) for tier, facts in TIERS_BY_NAME.items()}
    resolved |= {upstream.name: upstream.prefix for upstream in upstreams}
    for (first, one), (second, other) in combinations(resolved.items(), 2):
        if one == other:
            raise ValueError(f"tiers {first!r} and {second!r} share the prefix {one!r}; give each its own")
        if one.startswith(other + "/") or other.startswith(one + "/"):
            raise ValueError(
                f"the prefixes {one!r} (tier {first!r}) and {other!r} (tier {second!r}) nest, so both tiers would "
                "write the same cache repositories; give each a prefix that is not inside the other"
            )


def _check_tier_names(names: tuple[object, ...], info: ValidationInfo) -> None:
    if "upstreams" not in info.data:
        names = tuple(name for name in names if name in TIERS_BY_NAME)  # `upstreams` failed: its error says why
    known = [*TIERS_BY_NAME, *(upstream.name for upstream in info.data.get("upstreams", ()))]
    for name in names:
        if name not in known:
            raise ValueError(f"unknown tier {name!r}; known: {', '.join(known)}")


def parse_config(data: Mapping[str, Any], source: str = "configuration") -> Config:
    """Validate a mapping (camelCase keys, as in the file) into a :class:`Config`."""
    try:
        return Config.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors(include_url=False):
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            known = ", ".join(_known_keys(item["loc"][:-1]))
            message = f"unknown key; known keys: {known}"
        elif item["type"] in {"bool_type", "bool_parsing"}:
            message = f"expected true or false, got {item['input']!r}"
        elif item["type"] == "missing":
            message = (
                "required, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com" if location == "registry" else "required"
            )
        lines.append(f"{source}: config key `{location}`: {message}")
    return "\n".join(lines)


def _known_keys(parent: tuple[int | str, ...]) -> list[str]:
    """The keys the model at ``parent`` (a location such as ``()`` for the top level) accepts."""
    model: type[BaseModel] = Config
    for part in parent:
        field = next(
            (field for name, field in model.model_fields.items() if part in {name, field.alias}),
            None,
        )
        nested = _model_of(field.annotation) if field is not None else None
        if nested is None:
            break
        model = nested
    return [field.alias or name for name, field in model.model_fields.items()]


def _model_of(annotation: object) -> type[BaseModel] | None:
    """The pydantic model in an annotation such as ``Settings | None``, if there is one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((model for arg in get_args(annotation) if (model := _model_of(arg)) is not None), None)
