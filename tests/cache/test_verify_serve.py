"""A real ``ecr-ptc-webhook serve`` with ``rules: discover`` and ``verify: true``: rules from an ECR API on loopback,
targets checked in a real ``docker-registry``, answers over TLS within the budget when the registry goes away."""

from __future__ import annotations

import base64
import importlib
import json
import time
from typing import TYPE_CHECKING, Any

import pytest
from cache.cache_support import (
    PASSWORD,
    USERNAME,
    Certificates,
    FakeEcrApi,
    Registry,
    build_image,
    require_registry_tools,
)
from reviews import make_pod, make_review

from webhook.cache.registry_client import ENV_CA_FILE, ENV_PASSWORD, ENV_USERNAME
from webhook.cache.verify import FAILURE_THRESHOLD

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

# tests/integration has no __init__.py: imported by name so mypy does not see one file under two module names.
WebhookProcess: Any = importlib.import_module("integration.server").WebhookProcess
BOUND = 1.5


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Registry, FakeEcrApi, Any]]:
    require_registry_tools()
    certificates = Certificates(tmp_path / "registry-certs")  # the webhook writes its own into certs/
    quay = {"ecrRepositoryPrefix": "quay", "upstreamRegistryUrl": "quay.io", "upstreamRegistry": "quay"}
    with Registry(tmp_path / "cache", certificates) as registry, FakeEcrApi([quay]) as ecr:
        registry.push(build_image("v1"), "quay/org/app", "1.0", tmp_path)
        for variable, value in {
            "AWS_ENDPOINT_URL_ECR": ecr.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            ENV_USERNAME: USERNAME,
            ENV_PASSWORD: PASSWORD,
            ENV_CA_FILE: str(certificates.ca),
        }.items():
            monkeypatch.setenv(variable, value)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        config = tmp_path / "config.yaml"
        config.write_text(
            json.dumps(
                {
                    "registry": registry.host,
                    "tiers": ["quay", "k8s"],
                    "rules": "discover",
                    "rulesRefreshSeconds": 0.5,
                    "verify": True,
                    "verifyBudgetSeconds": 0.3,
                }
            )
        )
        with WebhookProcess(tmp_path, config) as webhook:
            yield registry, ecr, webhook


def admit(webhook: Any, *images: str) -> tuple[list[str], float]:
    started = time.monotonic()
    status, body = webhook.request("POST", "/mutate?timeout=3s", make_review(make_pod(*images)))
    seconds = time.monotonic() - started
    assert status == 200
    result = list(images)
    answer = body["response"]
    for op in json.loads(base64.b64decode(answer["patch"])) if "patch" in answer else []:
        if op["path"].endswith("/image"):
            result[int(op["path"].split("/")[3])] = op["value"]
    return result, seconds


def test_serve_rewrites_only_discovered_and_verified_targets(setup: tuple[Registry, FakeEcrApi, Any]) -> None:
    registry, ecr, webhook = setup
    status, ready = webhook.request("GET", "/readyz")
    assert status == 200
    assert "rules: rewriting quay (drift: k8s missing)" in ready["detail"]
    assert "verify: ok" in ready["detail"]
    images, _ = admit(webhook, "quay.io/org/app:1.0", "quay.io/org/app:9.9", "registry.k8s.io/pause:3.10")
    assert images == [f"{registry.host}/quay/org/app:1.0", "quay.io/org/app:9.9", "registry.k8s.io/pause:3.10"]
    _, metrics = webhook.request("GET", "/metrics")
    text = metrics.decode()
    assert 'ecr_ptc_webhook_discovered_rules{prefix="quay",tier="quay",upstream="quay.io"} 1.0' in text
    assert 'ecr_ptc_webhook_rules_drift{kind="missing",prefix="k8s",tier="k8s"} 1.0' in text
    assert 'reason="target-missing"' in text
    assert 'reason="rule-missing"' in text

    # ECR's API fails: the last known rules stay, the replica stays ready and says so.
    ecr.failing = True
    calls = ecr.calls
    until = time.monotonic() + 10
    while ecr.calls == calls and time.monotonic() < until:
        time.sleep(0.05)
    time.sleep(0.2)
    status, ready = webhook.request("GET", "/readyz")
    assert status == 200
    assert "reading rules failing" in ready["detail"]

    # The registry goes away: pods go through unmodified, within the budget.
    registry.stop()
    images, _ = admit(webhook, "quay.io/org/app:1.0")  # resolved before, the breaker still closed
    assert images == [f"{registry.host}/quay/org/app:1.0"]
    for _ in range(FAILURE_THRESHOLD):
        images, seconds = admit(webhook, "quay.io/org/app:2.0")
        assert images == ["quay.io/org/app:2.0"]
        assert seconds < BOUND
    # The breaker is open: every pod goes through unmodified, the image that resolved before included.
    images, seconds = admit(webhook, "quay.io/org/app:1.0")
    assert images == ["quay.io/org/app:1.0"]
    assert seconds < BOUND
    _, ready = webhook.request("GET", "/readyz")
    assert "verify: breaker open" in ready["detail"]
    assert "Traceback" not in webhook.logs()
