"""The chart's alerts (``metrics.prometheusRule``), as the chart renders them, under Prometheus' own ``promtool``.

The rules are rendered by real helm from ``templates/prometheusrule.yaml`` and written out as a rule file, so what is
linted (``promtool check rules``) and unit-tested (``promtool test rules`` with ``alerts/*_test.yaml``) is exactly
what the chart ships. Every alert must be unit-tested firing and not firing, have a section in docs/runbooks.md that
its ``runbook_url`` points at, and name only metrics a running webhook exports (``promtool check metrics`` on them).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest
import yaml
from aws_sandbox import isolate_aws
from cache.cache_support import FakeEcrApi
from integration.chart_rules import (
    ALL_ALERTS,
    ENABLED,
    REGISTRY,
    alerts,
    promtool,
    rendered_rule,
    run_promtool,
    write_rule_file,
)
from integration.server import WebhookProcess
from repository import REPO

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration

UNIT_TESTS: Final = Path(__file__).parent / "alerts"
RUNBOOKS: Final = REPO / "docs" / "runbooks.md"
UNIT_TEST_VALUES: Final = {
    "alerts_test.yaml": ALL_ALERTS,
    "alerts_dry_run_test.yaml": ALL_ALERTS,
    "alerts_fail_closed_test.yaml": (*ENABLED, "--set", "webhook.failurePolicy=Fail"),
}
"""Each unit test file and the values its rules are rendered with (release and namespace ecr-ptc-webhook)."""
SEVERITIES: Final = {"critical", "warning", "info"}
_OUR_METRIC: Final = re.compile(r"\becr_ptc_webhook_[a-z_]+\b")


def run_unit_tests(directory: Path, test_file: str, *args: str) -> subprocess.CompletedProcess[str]:
    write_rule_file(directory, *args)
    shutil.copy(UNIT_TESTS / test_file, directory / test_file)
    return run_promtool("test", "rules", test_file, cwd=directory)


# --- promtool ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        ALL_ALERTS,
        (*ENABLED, "--set", "webhook.failurePolicy=Fail", "--set", "certificates.mode=certManager"),
        (
            *ALL_ALERTS,
            *("--set", "metrics.prometheusRule.interval=30s", "--set", "metrics.prometheusRule.alertLabels.team=a"),
            *("--set-string", 'metrics.prometheusRule.selector=job=~"webhooks-.*"'),
            *("--set", "metrics.prometheusRule.alerts.failingOpen.window=30m", "--set", "rulesRefreshSeconds=60"),
        ),
    ],
    ids=["defaults", "fail-closed", "custom"],
)
def test_promtool_checks_the_rendered_rules(tmp_path: Path, values: tuple[str, ...]) -> None:
    result = run_promtool("check", "rules", str(write_rule_file(tmp_path, *values)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("test_file", sorted(UNIT_TEST_VALUES))
def test_promtool_unit_tests_of_the_rendered_rules_pass(tmp_path: Path, test_file: str) -> None:
    result = run_unit_tests(tmp_path, test_file, *UNIT_TEST_VALUES[test_file])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_fail_when_a_threshold_moves(tmp_path: Path) -> None:
    moved = (
        *ALL_ALERTS,
        *("--set-json", "metrics.prometheusRule.alerts.failingOpen.ratio=0.5"),  # --set would make it a string
        *("--set", "metrics.prometheusRule.alerts.certificateExpiring.days=7"),
    )
    result = run_unit_tests(tmp_path, "alerts_test.yaml", *moved)
    assert result.returncode != 0
    failed = set(re.findall(r"alertname: (\w+),", result.stdout + result.stderr))
    assert failed == {"EcrPtcWebhookFailingOpen", "EcrPtcWebhookCertificateExpiring"}


def unit_tested() -> tuple[set[str], set[str]]:
    """Alert names the unit test files expect firing, and expect quiet, at some evaluation."""
    firing: set[str] = set()
    quiet: set[str] = set()
    for test_file in UNIT_TEST_VALUES:
        for case in yaml.safe_load((UNIT_TESTS / test_file).read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    return firing, quiet


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    names = {alert["alert"] for alert in alerts(*ALL_ALERTS)}
    assert len(names) == 9
    firing, quiet = unit_tested()
    assert names - firing == set(), "alerts no unit test sees firing"
    assert names - quiet == set(), "alerts no unit test sees quiet"
    assert (firing | quiet) <= names, "unit tests of alerts the chart does not ship"
    assert set(UNIT_TEST_VALUES) == {path.name for path in UNIT_TESTS.glob("*_test.yaml")}


# --- what each alert carries --------------------------------------------------------------------------------------


def github_anchors(markdown: str) -> dict[str, str]:
    """Heading text -> the anchor GitHub gives it (lowercase, punctuation dropped, spaces to hyphens)."""
    headings = re.findall(r"^#{1,6} (.+?)\s*$", markdown, re.MULTILINE)
    return {heading: re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_every_alert_has_a_runbook_section_and_every_section_an_alert() -> None:
    shipped = alerts(*ALL_ALERTS, "--set", "webhook.failurePolicy=Fail")
    anchors = github_anchors(RUNBOOKS.read_text())
    sections = {heading for heading in anchors if heading.startswith("EcrPtcWebhook")}
    assert sections == {alert["alert"] for alert in shipped}
    for alert in shipped:
        path, _, anchor = alert["annotations"]["runbook_url"].partition("#")
        assert path == "docs/runbooks.md"
        assert anchor == anchors[alert["alert"]] == alert["alert"].lower()


def test_every_alert_has_a_severity_summary_description_and_runbook() -> None:
    for alert in alerts(*ALL_ALERTS):
        assert alert["labels"]["severity"] in SEVERITIES, alert["alert"]
        assert set(alert["annotations"]) == {"summary", "description", "runbook_url"}, alert["alert"]
        assert len(alert["annotations"]["description"]) > len(alert["annotations"]["summary"]), alert["alert"]
        assert "for" in alert, alert["alert"]
    severities = {alert["alert"]: alert["labels"]["severity"] for alert in alerts(*ALL_ALERTS)}
    assert severities["EcrPtcWebhookNoReplicaReady"] == "critical"
    assert severities["EcrPtcWebhookUnreachable"] == "warning", "failurePolicy Ignore: pods are still admitted"
    assert severities["EcrPtcWebhookDryRunWouldRewrite"] == "info"
    fail_closed = {alert["alert"]: alert for alert in alerts(*ENABLED, "--set", "webhook.failurePolicy=Fail")}
    assert fail_closed["EcrPtcWebhookUnreachable"]["labels"]["severity"] == "critical", "Fail: pods are rejected"


def test_values_reach_every_alert() -> None:
    base = "https://git.example.com/platform/ecr-ptc-webhook/blob/v0.1.0"
    shipped = alerts(
        *ALL_ALERTS,
        *(
            "--set",
            f"metrics.prometheusRule.runbookBaseUrl={base}/",
            "--set",
            "metrics.prometheusRule.alertLabels.team=a",
        ),
        *("--set-string", 'metrics.prometheusRule.selector=job="mine"'),
        *("--set", "metrics.prometheusRule.alerts.noReplicaReady.for=2m"),
    )
    for alert in shipped:
        assert alert["annotations"]["runbook_url"] == f"{base}/docs/runbooks.md#{alert['alert'].lower()}"
        assert alert["labels"]["team"] == "a"
        if "ecr_ptc_webhook_" in alert["expr"]:
            assert 'job="mine"' in alert["expr"], alert["alert"]
            assert "namespace=" not in alert["expr"], alert["alert"]
    by_name = {alert["alert"]: alert for alert in shipped}
    assert by_name["EcrPtcWebhookNoReplicaReady"]["for"] == "2m"
    defaults = {alert["alert"]: alert for alert in alerts(*ENABLED)}
    assert "EcrPtcWebhookDryRunWouldRewrite" not in defaults, "the info alert is off by default"
    assert 'job="ecr-ptc-webhook",namespace="ecr-ptc-webhook"' in defaults["EcrPtcWebhookCertificateExpiring"]["expr"]


def test_the_rules_are_off_by_default() -> None:
    assert rendered_rule() is None


# --- the metrics the rules name, from a running webhook -----------------------------------------------------------


@pytest.fixture
def full_webhook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookProcess]:
    """A real server with every part on (rules: discover against an ECR API on loopback, verify: true), so that
    every collector is registered. Nothing is sent to the registry: no review is made."""
    with FakeEcrApi(
        [{"ecrRepositoryPrefix": "quay", "upstreamRegistryUrl": "quay.io", "upstreamRegistry": "quay"}]
    ) as ecr:
        isolate_aws(monkeypatch, tmp_path, "eu-west-1")
        monkeypatch.setenv("AWS_ENDPOINT_URL", ecr.url)  # every AWS call (ECR's token included) goes to the fake
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {"registry": REGISTRY, "tiers": ["quay", "k8s"], "rules": "discover", "verify": True, "dryRun": True}
            )
        )
        with WebhookProcess(tmp_path, config) as webhook:
            yield webhook


def test_the_rules_name_only_metrics_a_running_webhook_exports_which_pass_promtool_check_metrics(
    full_webhook: WebhookProcess, tmp_path: Path
) -> None:
    status, scrape = full_webhook.request("GET", "/metrics")
    assert status == 200
    text = scrape.decode()
    checked = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, check=False, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    exported = set(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    names = {name for name, _ in exported}
    samples = {f"{name}_total" for name, kind in exported if kind == "counter"} | names
    rules_text = write_rule_file(tmp_path, *ALL_ALERTS, "--set", "webhook.failurePolicy=Fail").read_text()
    rules_text += write_rule_file(tmp_path, *ALL_ALERTS).read_text()
    named = set(_OUR_METRIC.findall(rules_text))
    assert named - samples == set(), "metrics the alerts use that the webhook does not export"
    # The ones the issue asks for, by name:
    for name in (
        "ecr_ptc_webhook_certificate_expiry_timestamp_seconds",
        "ecr_ptc_webhook_ready",
        "ecr_ptc_webhook_not_ready",
        "ecr_ptc_webhook_failed_open_total",
        "ecr_ptc_webhook_certificate_reload_failing",
        "ecr_ptc_webhook_verify_breaker_open",
        "ecr_ptc_webhook_review_cache_total",
        "ecr_ptc_webhook_decision_log_lines_dropped_total",
    ):
        assert name in samples, name
    assert 'ecr_ptc_webhook_rules_drift{kind="missing",prefix="k8s",tier="k8s"} 1.0' in text
