"""The webhook's configuration model: what it rewrites, and how. Frozen, validated, no I/O.

The core reads a :class:`Config`; building one from a file, ``ECR_PTC_WEBHOOK_*`` variables and flags is an edge
(:mod:`webhook.config`). Every error names the key and the fix, e.g.
``config key `tiers`: unknown tier 'dockerhub'; known: ...``.
"""

from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from webhook.core.patterns import PatternError, RepositoryPatterns
from webhook.core.reference import DOMAIN_RE, split_docker_domain
from webhook.core.registries import (
    DEFAULT_TIERS,
    ECR_PREFIX_MAX,
    ECR_PREFIX_MIN,
    ECR_PREFIX_PATTERN,
    TIER_BY_HOST,
    TIERS_BY_NAME,
)
from webhook.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping


class Config(BaseModel):
    """What the webhook rewrites, and how."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    registry: str
    """The cache's ECR registry host, e.g. ``123456789012.dkr.ecr.eu-west-1.amazonaws.com``."""
    tiers: tuple[str, ...] = DEFAULT_TIERS
    """Enabled tiers; opt-in tiers need a credential secret on the ECR side."""
    prefixes: dict[str, str] = Field(default_factory=dict)
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

    @field_validator("tiers", mode="before")
    @classmethod
    def _tiers_are_known(cls, value: object) -> object:
        if isinstance(value, list):
            value = tuple(value)
        if isinstance(value, tuple):
            _check_tier_names(value)
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
    def _prefixes_are_valid(cls, value: dict[str, str]) -> dict[str, str]:
        _check_tier_names(tuple(value))
        for tier, prefix in value.items():
            if not (ECR_PREFIX_MIN <= len(prefix) <= ECR_PREFIX_MAX and ECR_PREFIX_PATTERN.fullmatch(prefix)):
                raise ValueError(
                    f"prefix {prefix!r} for tier {tier!r} is not a valid ECR repository prefix: "
                    f"{ECR_PREFIX_MIN}-{ECR_PREFIX_MAX} characters, lowercase letters and digits separated by "
                    "'.', '_', '-' or '/', e.g. 'dockerhub'"
                )
        _check_prefixes_are_distinct(value)
        return value

    def prefix_for(self, tier: str) -> str:
        """The ECR repository prefix of ``tier`` (configured or default)."""
        return self.prefixes.get(tier, TIERS_BY_NAME[tier].default_prefix)


def _check_prefixes_are_distinct(prefixes: Mapping[str, str]) -> None:
    """Every tier (enabled or not) needs its own cache namespace: equal or nested prefixes would mix two upstreams."""
    resolved = {tier: prefixes.get(tier, facts.default_prefix) for tier, facts in TIERS_BY_NAME.items()}
    for (first, one), (second, other) in combinations(resolved.items(), 2):
        if one == other:
            raise ValueError(f"tiers {first!r} and {second!r} share the prefix {one!r}; give each its own")
        if one.startswith(other + "/") or other.startswith(one + "/"):
            raise ValueError(
                f"the prefixes {one!r} (tier {first!r}) and {other!r} (tier {second!r}) nest, so both tiers would "
                "write the same cache repositories; give each a prefix that is not inside the other"
            )


def _check_tier_names(names: tuple[object, ...]) -> None:
    known = ", ".join(TIERS_BY_NAME)
    for name in names:
        if name not in TIERS_BY_NAME:
            raise ValueError(f"unknown tier {name!r}; known: {known}")


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
