"""The chart's PrometheusRule as a Prometheus rule file: rendered by real helm, for promtool and a real Prometheus."""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING, Any, Final

import pytest
import yaml
from repository import REPO, tool

if TYPE_CHECKING:
    from pathlib import Path

CHART: Final = REPO / "charts" / "ecr-ptc-webhook"
RELEASE: Final = "ecr-ptc-webhook"
REGISTRY: Final = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
ENABLED: Final = ("--set", "metrics.prometheusRule.enabled=true")
ALL_ALERTS: Final = (*ENABLED, "--set", "metrics.prometheusRule.alerts.dryRunWouldRewrite.enabled=true")
"""helm arguments that render every alert (the info one is off by default)."""


def promtool() -> str:
    """Debian's promtool (package prometheus); skip, naming the install script, only when it is not installed."""
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed: run `bash hack/install-registry-tools.sh` (Debian's prometheus package)")
    return found


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``promtool ARGS`` in ``cwd``, its output captured."""
    return subprocess.run([promtool(), *args], capture_output=True, text=True, check=False, timeout=120, cwd=cwd)


def rendered_rule(*args: str) -> dict[str, Any] | None:
    """The chart's PrometheusRule with ``args`` (``None`` when it renders none)."""
    result = subprocess.run(
        [tool("helm"), "template", RELEASE, str(CHART), "--namespace", RELEASE, "--set", f"registry={REGISTRY}", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rules = [doc for doc in yaml.safe_load_all(result.stdout) if doc and doc["kind"] == "PrometheusRule"]
    assert len(rules) <= 1
    return rules[0] if rules else None


def write_rule_file(directory: Path, *args: str) -> Path:
    """The rendered rule groups as a Prometheus rule file, ``directory/rules.yaml``."""
    rule = rendered_rule(*args)
    assert rule is not None, "metrics.prometheusRule.enabled renders a PrometheusRule"
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


def alerts(*args: str) -> list[dict[str, Any]]:
    """The rendered alerting rules, every group's."""
    rule = rendered_rule(*args)
    assert rule is not None
    return [item for group in rule["spec"]["groups"] for item in group["rules"] if "alert" in item]
