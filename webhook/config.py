"""The configuration model, loaded from a YAML file with environment and flag overrides.

Precedence, lowest first: built-in defaults, the ``--config`` file, ``ECR_PTC_WEBHOOK_*`` variables, command-line
flags. Every error names the key and the fix, e.g. ``config key `tiers`: unknown tier 'dockerhub'; known: ...``.
"""

from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from webhook.exceptions import ConfigError
from webhook.provision.settings import ProvisionSettings  # noqa: TC001 - pydantic resolves it at runtime
from webhook.reference import DOMAIN_RE, split_docker_domain
from webhook.registries import (
    DEFAULT_TIERS,
    ECR_PREFIX_MAX,
    ECR_PREFIX_MIN,
    ECR_PREFIX_PATTERN,
    TIER_BY_HOST,
    TIERS_BY_NAME,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

ENV_PREFIX: Final = "ECR_PTC_WEBHOOK_"
"""Environment variables that override the file: ``ECR_PTC_WEBHOOK_REGISTRY``, ``..._TIERS`` (comma-separated),
``..._PREFIXES`` (``tier=prefix,...``), ``..._DRY_RUN`` (true/false), ``..._DIGESTS``, ``..._RULES``,
``..._VERIFY`` (true/false)."""

_ENV_KEYS: Final[dict[str, str]] = {
    "REGISTRY": "registry",
    "TIERS": "tiers",
    "PREFIXES": "prefixes",
    "DRY_RUN": "dryRun",
    "DIGESTS": "digests",
    "RULES": "rules",
    "VERIFY": "verify",
}
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


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
    provision: ProvisionSettings | None = None
    """What ``ecr-ptc-webhook provision`` needs beyond the webhook's keys (secrets, lifecycle, principals, tags);
    the webhook itself ignores it."""

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


def load_config(
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the config from ``path``, then ``env`` (``ECR_PTC_WEBHOOK_*``), then ``overrides`` (flags)."""
    data: dict[str, Any] = {}
    if path is not None:
        data.update(_read_file(path))
    data.update(_from_env(env or {}))
    data.update({key: value for key, value in (overrides or {}).items() if value is not None})
    return parse_config(data, source=str(path) if path else "configuration")


def parse_config(data: Mapping[str, Any], source: str = "configuration") -> Config:
    """Validate a mapping (camelCase keys, as in the file) into a :class:`Config`."""
    try:
        return Config.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not UTF-8 text: {error.reason} at byte {error.start}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path}: expected a mapping of keys (registry, tiers, ...), got {loaded!r}")
    return loaded


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for suffix, key in _ENV_KEYS.items():
        raw = env.get(ENV_PREFIX + suffix)
        if raw is None:
            continue
        variable = ENV_PREFIX + suffix
        if key == "tiers":
            data[key] = [part.strip() for part in raw.split(",") if part.strip()]
        elif key == "prefixes":
            data[key] = _parse_prefixes(variable, raw)
        elif key in {"dryRun", "verify"}:
            data[key] = _parse_bool(variable, raw)
        else:
            data[key] = raw
    return data


def _parse_prefixes(variable: str, raw: str) -> dict[str, str]:
    prefixes: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        tier, equals, prefix = item.partition("=")
        if not equals:
            raise ConfigError(f"{variable}: expected tier=prefix[,tier=prefix], got {item!r}")
        prefixes[tier.strip()] = prefix.strip()
    return prefixes


def _parse_bool(variable: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{variable}: expected true or false, got {raw!r}")


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
    """The keys the model at ``parent`` (a location such as ``("provision", "principals")``) accepts."""
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
