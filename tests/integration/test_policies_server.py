"""The image policies as a user meets them: the real server over TLS, `/mutate` and `/audit`, logs and metrics."""

from __future__ import annotations

import base64
import json
import time
from typing import TYPE_CHECKING, Any

import jsonpatch
import pytest
from integration.server import WebhookProcess
from reviews import make_pod, make_review

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
PRIVATE = "quay.io/acme/private:v1"
LATEST = "nginx:latest"
EXCLUDED = "ghcr.io/legacy/agent:v3"
PINNED = "ghcr.io/acme/app:v2"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WebhookProcess]:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"registry: {REGISTRY}\ntiers: [quay, k8s, docker-hub, ghcr]\nexclude: [ghcr.io/legacy/**]\n", encoding="utf-8"
    )
    with WebhookProcess(tmp_path, config) as process:
        yield process


def patched_images(review: dict[str, Any], answer: dict[str, Any]) -> list[str]:
    pod = review["request"]["object"]
    if "patch" in answer["response"]:
        pod = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(answer["response"]["patch"])))
    return [container["image"] for container in pod["spec"]["containers"]]


def with_pull_secrets(pod: dict[str, Any]) -> dict[str, Any]:
    pod["spec"]["imagePullSecrets"] = [{"name": "quay-robot"}]
    return pod


def test_the_policies_through_mutate_and_audit(server: WebhookProcess) -> None:
    # A private quay image in a pod with pull secrets, a `latest` image, an excluded organisation: all kept.
    review = make_review(with_pull_secrets(make_pod(PRIVATE, "registry.k8s.io/pause:3.10")))
    status, answer = server.request("POST", "/mutate?timeout=3s", review)
    assert status == 200
    assert patched_images(review, answer) == [PRIVATE, f"{REGISTRY}/k8s/pause:3.10"]

    review = make_review(make_pod(PRIVATE, LATEST, EXCLUDED, PINNED))
    status, answer = server.request("POST", "/mutate?timeout=3s", review)
    assert status == 200
    assert patched_images(review, answer) == [
        f"{REGISTRY}/quay/acme/private:v1",
        LATEST,
        EXCLUDED,
        f"{REGISTRY}/ghcr/acme/app:v2",
    ]

    # The same template with pull secrets: never the answer cached for the pod without them.
    review = make_review(with_pull_secrets(make_pod(PRIVATE, LATEST, EXCLUDED, PINNED)))
    _, answer = server.request("POST", "/mutate?timeout=3s", review)
    assert patched_images(review, answer) == [PRIVATE, LATEST, EXCLUDED, PINNED]

    _, answer = server.request("POST", "/audit", make_review(with_pull_secrets(make_pod(PRIVATE, LATEST, EXCLUDED))))
    assert "patch" not in answer["response"]
    assert answer["response"]["warnings"] == [
        f"{PRIVATE} stays on its upstream: pull-secret (`pullSecrets: keep`)",
        f"{LATEST} stays on its upstream: pull-secret (`pullSecrets: keep`)",
        f"{EXCLUDED} stays on its upstream: excluded (`exclude`)",
    ]
    _, answer = server.request("POST", "/audit", make_review(make_pod(LATEST)))
    assert answer["response"]["warnings"] == [f"{LATEST} stays on its upstream: moving-tag (`movingTags: keep`)"]

    _, metrics = server.request("GET", "/metrics")
    text = metrics.decode()
    for reason, tier, mode in [
        ("pull-secret", "quay", "mutate"),
        ("moving-tag", "docker-hub", "mutate"),
        ("excluded", "ghcr", "mutate"),
        ("moving-tag", "docker-hub", "audit"),
    ]:
        assert f'ecr_ptc_webhook_decisions_total{{action="skip",mode="{mode}",reason="{reason}",tier="{tier}"}}' in text

    # Decision lines are written in batches (at least every 0.2 s): wait for them, bounded.
    until = time.monotonic() + 5
    while time.monotonic() < until and '"reason":"moving-tag"' not in server.logs():
        time.sleep(0.05)
    lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    decisions = {(line["original"], line["reason"]) for line in lines if line.get("msg") == "decision"}
    assert {(PRIVATE, "pull-secret"), (LATEST, "moving-tag"), (EXCLUDED, "excluded")} <= decisions
