"""Loading the configuration: a YAML file, then ``ECR_PTC_WEBHOOK_*`` variables, then command-line flags.

Precedence, lowest first: built-in defaults, the ``--config`` file, the environment, the flags. The model itself
and its validation live in :mod:`webhook.core.config`; this module only reads and merges.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import yaml

from webhook.core.config import Config, parse_config
from webhook.exceptions import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

ENV_PREFIX: Final = "ECR_PTC_WEBHOOK_"
"""Environment variables that override the file: ``ECR_PTC_WEBHOOK_REGISTRY``, ``..._TIERS`` (comma-separated),
``..._PREFIXES`` (``tier=prefix,...``), ``..._DRY_RUN`` (true/false), ``..._DIGESTS``, ``..._RULES``,
``..._VERIFY`` (true/false), ``..._PULL_SECRETS``, ``..._MOVING_TAGS``, ``..._EXCLUDE`` and ``..._INCLUDE``
(comma-separated patterns)."""

_ENV_KEYS: Final[dict[str, str]] = {
    "REGISTRY": "registry",
    "TIERS": "tiers",
    "PREFIXES": "prefixes",
    "DRY_RUN": "dryRun",
    "DIGESTS": "digests",
    "RULES": "rules",
    "VERIFY": "verify",
    "PULL_SECRETS": "pullSecrets",
    "MOVING_TAGS": "movingTags",
    "EXCLUDE": "exclude",
    "INCLUDE": "include",
}
_LIST_KEYS: Final = frozenset({"tiers", "exclude", "include"})
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


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
        if key in _LIST_KEYS:
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
