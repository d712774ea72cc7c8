"""The README is part of the product: its tables must say what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from webhook.core.reasons import REASON_DESCRIPTIONS, Reason
from webhook.core.registries import TIERS

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_reason_code_is_documented_with_its_meaning() -> None:
    rows = dict(re.findall(r"^\| `([a-z-]+)` \| (?:rewrite|skip) \| (.+?) \|$", README, re.MULTILINE))
    assert rows == {reason.value: description for reason, description in REASON_DESCRIPTIONS.items()}
    assert set(REASON_DESCRIPTIONS) == set(Reason)


def test_every_tier_is_documented_with_its_hosts_and_prefix() -> None:
    for tier in TIERS:
        row = re.search(rf"^\| `{tier.name}` \| ([^|]+) \| `([^`]+)` \|", README, re.MULTILINE)
        assert row is not None, tier.name
        assert [host.strip() for host in row.group(1).split(",")] == list(tier.hosts)
        assert row.group(2) == tier.default_prefix


def test_the_two_setup_commands_are_in_the_readme() -> None:
    assert "\nmake run\n" in README
    assert "\nmake test\n" in README
