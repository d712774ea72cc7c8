"""Shared fixtures: a config with every tier enabled, and its rules."""

from __future__ import annotations

import pytest

from webhook.core.config import Config, parse_config
from webhook.core.rules import Rules

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


@pytest.fixture
def config() -> Config:
    return parse_config({"registry": REGISTRY, "tiers": ["quay", "k8s", "docker-hub", "ghcr", "gitlab"]})


@pytest.fixture
def rules(config: Config) -> Rules:
    return Rules(config)
