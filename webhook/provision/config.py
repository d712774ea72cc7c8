"""The provisioner's config: the webhook's config file, whose ``provision:`` section it reads too.

The webhook's keys are validated by :func:`webhook.config.parse_config` (one source of truth for registry, tiers and
prefixes); the ``provision:`` section by :class:`ProvisionSettings`. Environment overrides do not apply here: the
file is what both the chart and the ECR side are built from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from webhook.core.config import parse_config
from webhook.exceptions import ConfigError
from webhook.provision.settings import ProvisionConfig, ProvisionSettings

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

SECTION = "provision"


def load_provision_config(path: Path) -> ProvisionConfig:
    """Read ``path`` (YAML) into a :class:`ProvisionConfig` (raises :class:`~webhook.exceptions.ConfigError`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path}: expected a mapping of keys (registry, tiers, provision, ...)")
    return parse_provision_config(loaded, source=str(path))


def parse_provision_config(data: Mapping[str, Any], source: str = "configuration") -> ProvisionConfig:
    """Split off the ``provision:`` section, validate both parts, and pair them."""
    rest = dict(data)
    section = rest.pop(SECTION, None)
    webhook = parse_config(rest, source=source)
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: config key `{SECTION}`: expected a mapping (secrets, lifecycleDays, ...)")
    try:
        settings = ProvisionSettings.model_validate(section, context={"tiers": webhook.known_tiers})
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None
    return ProvisionConfig(webhook=webhook, settings=settings)


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors(include_url=False):
        location = ".".join([SECTION, *(str(part) for part in item["loc"])])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            known = ", ".join(field.alias or name for name, field in ProvisionSettings.model_fields.items())
            message = f"unknown key; known keys of `{SECTION}`: {known}"
        lines.append(f"{source}: config key `{location}`: {message}")
    return "\n".join(lines)
