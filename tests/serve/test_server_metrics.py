"""What the server reports for alerts: whether the replica is ready and why not, and certificate reloads failing."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING

import boto3

from webhook.cache.discovery import RuleDiscovery
from webhook.certs import certificate_pem, generate_ca, generate_serving, key_pem, write_certificates
from webhook.core.config import parse_config
from webhook.serve.metrics import NOT_READY_REASONS, Metrics
from webhook.serve.server import ServeSettings, build_server

if TYPE_CHECKING:
    from pathlib import Path

    from prometheus_client import CollectorRegistry

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
CONFIG = parse_config({"registry": REGISTRY, "tiers": ["quay"]})


def readiness(registry: CollectorRegistry) -> tuple[float | None, set[str]]:
    """``ecr_ptc_webhook_ready`` and the reasons whose ``ecr_ptc_webhook_not_ready`` is 1."""
    reasons = {r for r in NOT_READY_REASONS if registry.get_sample_value("ecr_ptc_webhook_not_ready", {"reason": r})}
    return registry.get_sample_value("ecr_ptc_webhook_ready"), reasons


def test_a_replica_waiting_for_its_rules_then_stopping_says_why_it_is_not_ready(tmp_path: Path) -> None:
    files = write_certificates(tmp_path, ["localhost"])
    metrics = Metrics()
    ecr = boto3.client("ecr", region_name="eu-west-1")  # never called: no read is made in this test
    discovery = RuleDiscovery(parse_config({"registry": REGISTRY, "rules": "discover"}), ecr)
    server, _ = build_server(CONFIG, ServeSettings(files.cert, files.key), metrics=metrics, discovery=discovery)
    assert readiness(metrics.registry) == (0, {"rules_not_read"})
    server.stopping = True
    assert readiness(metrics.registry) == (0, {"shutting_down"})


def test_certificate_files_that_cannot_be_loaded_are_reported_while_the_old_pair_serves(tmp_path: Path) -> None:
    files = write_certificates(tmp_path, ["localhost"])
    metrics = Metrics()
    _, source = build_server(CONFIG, ServeSettings(files.cert, files.key), metrics=metrics)
    failing = "ecr_ptc_webhook_certificate_reload_failing"
    assert readiness(metrics.registry) == (1, set())
    assert metrics.registry.get_sample_value(failing) == 0

    good = files.cert.read_bytes()
    files.cert.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    assert not source.reload()
    assert metrics.registry.get_sample_value(failing) == 1
    assert readiness(metrics.registry) == (1, set()), "the loaded certificate still serves"

    files.cert.write_bytes(good + b"\n")  # the same pair, new bytes: loaded again
    assert source.reload()
    assert metrics.registry.get_sample_value(failing) == 0


def test_an_expired_certificate_makes_the_replica_not_ready(tmp_path: Path) -> None:
    ca, ca_key = generate_ca()
    certificate, key = generate_serving(ca, ca_key, ["localhost"], validity=dt.timedelta(seconds=1))
    (tmp_path / "tls.crt").write_bytes(certificate_pem(certificate))
    (tmp_path / "tls.key").write_bytes(key_pem(key))
    metrics = Metrics()
    build_server(CONFIG, ServeSettings(tmp_path / "tls.crt", tmp_path / "tls.key"), metrics=metrics)
    expiry = metrics.registry.get_sample_value("ecr_ptc_webhook_certificate_expiry_timestamp_seconds")
    assert expiry is not None
    assert expiry == certificate.not_valid_after_utc.timestamp()
    while time.time() <= expiry:  # the certificate's second runs out
        time.sleep(0.05)
    assert readiness(metrics.registry) == (0, {"certificate_expired"})
