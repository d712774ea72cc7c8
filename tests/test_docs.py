"""The README is part of the product: its tables must say what the code does."""

from __future__ import annotations

import re
from pathlib import Path

from webhook.core.reasons import CHANGED_BY, DECISION_ORDER, REASON_DESCRIPTIONS, Reason
from webhook.core.registries import TIERS

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_reason_is_documented_in_the_order_it_is_checked_with_what_changes_it() -> None:
    section = README.split("### What is never rewritten, and why", 1)[1]
    rows = re.findall(r"^\| (\d+) \| `([a-z-]+)` \| (rewrite|skip) \| (.+?) \| (.+?) \|$", section, re.MULTILINE)
    assert [int(number) for number, *_ in rows] == list(range(1, len(rows) + 1))
    assert [reason for _, reason, *_ in rows] == [reason.value for reason in DECISION_ORDER]
    assert set(DECISION_ORDER) == set(Reason) == set(REASON_DESCRIPTIONS) == set(CHANGED_BY)
    for _, reason, action, meaning, changed_by in rows:
        assert action == ("rewrite" if reason == Reason.REWRITTEN else "skip")
        assert meaning == REASON_DESCRIPTIONS[Reason(reason)]
        assert changed_by == (CHANGED_BY[Reason(reason)] or "-")


def test_every_tier_is_documented_with_its_hosts_and_prefix() -> None:
    for tier in TIERS:
        row = re.search(rf"^\| `{tier.name}` \| ([^|]+) \| `([^`]+)` \|", README, re.MULTILINE)
        assert row is not None, tier.name
        assert [host.strip() for host in row.group(1).split(",")] == list(tier.hosts)
        assert row.group(2) == tier.default_prefix


def test_the_two_setup_commands_are_in_the_readme() -> None:
    assert "\nmake run\n" in README
    assert "\nmake test\n" in README
