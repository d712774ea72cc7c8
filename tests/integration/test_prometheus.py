"""A real Prometheus (Debian's package) scrapes a real webhook over TLS and evaluates the chart's rules.

Prometheus runs on 127.0.0.1 with a temporary config and data directory, scraping and evaluating every second; the
rules are the chart's own, rendered by helm (only ``certificateRotationFailing.for`` is shortened, so the test does
not wait ten minutes). The test breaks the certificate files under the running server and polls ``/api/v1/alerts``
until EcrPtcWebhookCertificateRotationFailing fires, then repairs them and waits for it to resolve.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from typing import TYPE_CHECKING, Any, Final

import pytest
import yaml
from integration.chart_rules import ALL_ALERTS, write_rule_file
from integration.server import WebhookProcess, free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

JOB: Final = "ecr-ptc-webhook"
NAMESPACE: Final = "ecr-ptc-webhook"
ROTATION: Final = "EcrPtcWebhookCertificateRotationFailing"
WAIT: Final = 60.0
"""Seconds to wait for Prometheus to see a change (it scrapes and evaluates every second)."""


class Prometheus:
    """A ``prometheus`` process on loopback and its HTTP API."""

    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.skip("prometheus not installed: run `bash hack/install-registry-tools.sh` (Debian's package)")
        self.port = free_port()
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log_path = directory / "prometheus.log"
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return json.loads(response.read())["data"] if path.startswith("/api/") else response.read()

    def until(self, what: str, check: Callable[[], Any]) -> Any:
        """Poll ``check`` until it returns something true; fail after :data:`WAIT` seconds, with the log."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()
            try:
                found = check()
            except OSError:  # not listening yet
                found = None
            if found:
                return found
            time.sleep(0.2)
        pytest.fail(f"Prometheus: {what} not seen within {WAIT:g}s\n{self.log_path.read_text()[-3000:]}")

    def alerts(self, name: str, state: str) -> list[dict[str, Any]]:
        return [
            alert
            for alert in self.get("/api/v1/alerts")["alerts"]
            if alert["labels"]["alertname"] == name and alert["state"] == state
        ]


@pytest.fixture
def webhook(tmp_path: Path) -> Iterator[WebhookProcess]:
    config = tmp_path / "config.yaml"
    config.write_text("registry: 123456789012.dkr.ecr.eu-west-1.amazonaws.com\n")
    with WebhookProcess(tmp_path, config) as process:
        yield process


@pytest.fixture
def prometheus(tmp_path: Path, webhook: WebhookProcess) -> Iterator[Prometheus]:
    rules = write_rule_file(
        tmp_path, *ALL_ALERTS, "--set", "metrics.prometheusRule.alerts.certificateRotationFailing.for=2s"
    )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                # The labels the chart's ServiceMonitor gives the webhook's series: the default selector's.
                "job_name": JOB,
                "scheme": "https",
                "tls_config": {"ca_file": str(webhook.cert_dir / "ca.crt")},
                "static_configs": [{"targets": [f"127.0.0.1:{webhook.port}"], "labels": {"namespace": NAMESPACE}}],
            }
        ],
    }
    (tmp_path / "prometheus").mkdir()
    server = Prometheus(tmp_path / "prometheus", config)
    try:
        yield server
    finally:
        server.stop()


def test_prometheus_scrapes_the_webhook_over_tls_and_fires_the_rotation_alert(
    prometheus: Prometheus, webhook: WebhookProcess
) -> None:
    instance = f"127.0.0.1:{webhook.port}"

    def ready() -> Any:
        result = prometheus.get(f"/api/v1/query?query=ecr_ptc_webhook_ready{{job=%22{JOB}%22}}")["result"]
        return [sample for sample in result if sample["value"][1] == "1"]

    (sample,) = prometheus.until("the webhook scraped over TLS and ready", ready)
    assert sample["metric"]["instance"] == instance

    # Every shipped rule is evaluated by the real Prometheus without an error.
    def evaluated() -> list[dict[str, Any]]:
        rules = [rule for group in prometheus.get("/api/v1/rules")["groups"] for rule in group["rules"]]
        return rules if rules and not any(rule["lastEvaluation"].startswith("0001") for rule in rules) else []

    rules = prometheus.until("every rule evaluated", evaluated)
    assert len(rules) == 9
    assert [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"] == []
    assert prometheus.alerts(ROTATION, "firing") == []

    # A rotation to files that cannot serve: the server keeps its certificate (the scrape still works) and says so.
    certificate = (webhook.cert_dir / "tls.crt").read_bytes()
    (webhook.cert_dir / "tls.crt").write_bytes(b"-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
    started = time.monotonic()
    (alert,) = prometheus.until(f"{ROTATION} firing", lambda: prometheus.alerts(ROTATION, "firing"))
    fired_after = time.monotonic() - started
    assert alert["labels"] == {
        "alertname": ROTATION,
        "instance": instance,
        "job": JOB,
        "namespace": NAMESPACE,
        "severity": "warning",
    }
    assert alert["annotations"]["summary"] == f"ecr-ptc-webhook cannot load its new serving certificate on {instance}."
    assert alert["annotations"]["runbook_url"] == "docs/runbooks.md#ecrptcwebhookcertificaterotationfailing"
    assert fired_after >= 2, "the rule's for: 2s was waited"
    assert "certificate reload failed" in webhook.logs()

    # Fixed files: the alert resolves.
    (webhook.cert_dir / "tls.crt").write_bytes(certificate)
    prometheus.until(f"{ROTATION} resolved", lambda: not prometheus.alerts(ROTATION, "firing") or None)
