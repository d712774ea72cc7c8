"""Verify against real registries: Debian's ``docker-registry`` over TLS (test CA) with basic auth standing in for
the ECR token, a second one in proxy mode as the pull-through cache, and failure injection (stopped, slow, 5xx,
403, 404 for a digest). Each failure leaves the pod unmodified within the budget, and nothing is lost."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pytest
from cache.cache_support import (
    PASSWORD,
    USERNAME,
    Certificates,
    FaultyRegistry,
    OciImage,
    Registry,
    build_image,
    require_registry_tools,
)
from reviews import make_pod, make_review

from webhook.cache.registry_client import ENV_CA_FILE, ENV_PASSWORD, ENV_USERNAME, BasicAuth, RegistryClient
from webhook.cache.verify import BreakerState, TargetVerifier, VerifySettings
from webhook.core.config import parse_config
from webhook.core.reasons import Reason
from webhook.core.rules import Rules
from webhook.serve.app import create_app
from webhook.serve.metrics import Metrics

if TYPE_CHECKING:
    from collections.abc import Coroutine, Iterator

pytestmark = pytest.mark.integration

BUDGET = 0.3
BOUND = 1.5
"""Generous bound on an admission with a 0.3 s budget: a bound, not a performance assertion."""
T = TypeVar("T")
EXECUTABLE = Path(sys.executable).parent / "ecr-ptc-webhook"


@dataclass(frozen=True)
class Images:
    v1: OciImage
    v2: OciImage


@pytest.fixture(scope="module")
def images() -> Images:
    return Images(build_image("v1"), build_image("v2"))


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    require_registry_tools()
    return Certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def cache(certificates: Certificates, images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry standing for the ECR cache itself (images already in it), basic auth like ECR's token."""
    directory = tmp_path_factory.mktemp("cache")
    with Registry(directory, certificates) as registry:
        registry.push(images.v1, "quay/org/app", "1.0", directory)
        yield registry


@pytest.fixture(scope="module")
def upstream(
    certificates: Certificates, images: Images, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """A registry standing for quay.io: public, so anonymous. distribution's proxy keeps the path, where ECR strips
    the prefix, so the upstream holds `quay/org/app` for the cache's `quay/org/app`."""
    directory = tmp_path_factory.mktemp("upstream")
    with Registry(directory, certificates, auth=False) as registry:
        registry.push(images.v2, "quay/org/app", "2.0", directory)
        yield registry


@pytest.fixture(scope="module")
def proxy(
    certificates: Certificates, upstream: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """The pull-through cache: a registry in proxy mode in front of the upstream, basic auth for the webhook."""
    with Registry(tmp_path_factory.mktemp("proxy"), certificates, upstream=upstream) as registry:
        yield registry


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def rules_for(host: str) -> Rules:
    return Rules(parse_config({"registry": host, "tiers": ["quay", "k8s"]}))


def make_verifier(certificates: Certificates, password: str = PASSWORD, **settings: Any) -> TargetVerifier:
    client = RegistryClient(BasicAuth(USERNAME, password), ca_file=certificates.ca, timeout=5.0)
    return TargetVerifier(client, VerifySettings(**{"budget": BUDGET, **settings}))


@dataclass
class Admission:
    images: list[str]
    seconds: float


class Webhook:
    """The real app (create_app) with a verifier, driven over ASGI as the API server would."""

    def __init__(self, rules: Rules, verifier: TargetVerifier) -> None:
        self.metrics = Metrics()
        self.verifier = verifier
        self.app = create_app(rules, metrics=self.metrics, verifier=verifier)

    async def admit(self, *images: str) -> Admission:
        pod = make_pod(*images)
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="https://webhook") as client:
            started = time.monotonic()
            response = await client.post("/mutate?timeout=3s", json=make_review(pod))
            seconds = time.monotonic() - started
        answer = response.json()["response"]
        assert answer["allowed"] is True
        result = list(images)
        for op in json.loads(base64.b64decode(answer["patch"])) if "patch" in answer else []:
            if op["path"].startswith("/spec/containers/") and op["path"].endswith("/image"):
                result[int(op["path"].split("/")[3])] = op["value"]
        return Admission(result, seconds)

    def admit_once(self, *images: str) -> Admission:
        """One admission in its own event loop, then the verifier closed."""

        async def scenario() -> Admission:
            admission = await self.admit(*images)
            await self.verifier.aclose()
            return admission

        return run(scenario())

    def decisions(self, reason: Reason) -> float:
        labels = {"tier": "quay", "reason": reason.value, "action": "skip", "mode": "mutate"}
        return self.metrics.registry.get_sample_value("ecr_ptc_webhook_decisions_total", labels) or 0.0


def test_images_in_the_cache_are_rewritten(cache: Registry, certificates: Certificates, images: Images) -> None:
    webhook = Webhook(rules_for(cache.host), make_verifier(certificates))
    tagged, pinned, both = (
        "quay.io/org/app:1.0",
        f"quay.io/org/app@{images.v1.digest}",
        f"quay.io/org/app:1.0@{images.v1.digest}",
    )

    assert webhook.admit_once(tagged, pinned, both).images == [
        f"{cache.host}/quay/org/app:1.0",
        f"{cache.host}/quay/org/app@{images.v1.digest}",
        f"{cache.host}/quay/org/app:1.0@{images.v1.digest}",
    ]


def test_a_digest_the_cache_does_not_have_is_target_missing(
    cache: Registry, certificates: Certificates, images: Images
) -> None:
    webhook = Webhook(rules_for(cache.host), make_verifier(certificates))
    unknown = "sha256:" + "0" * 64
    pod = [
        "quay.io/org/app:1.0",
        f"quay.io/org/app:1.0@{unknown}",
        "quay.io/org/app:9.9",
        f"quay.io/org/app@{images.v2.digest}",
    ]

    admission = webhook.admit_once(*pod)
    assert admission.images == [f"{cache.host}/quay/org/app:1.0", *pod[1:]]
    assert webhook.decisions(Reason.TARGET_MISSING) == 3


def test_wrong_credentials_keep_the_original(cache: Registry, certificates: Certificates) -> None:
    expired = make_verifier(certificates, password="expired")  # noqa: S106 - a wrong test credential
    webhook = Webhook(rules_for(cache.host), expired)

    assert webhook.admit_once("quay.io/org/app:1.0").images == ["quay.io/org/app:1.0"]
    assert webhook.decisions(Reason.VERIFY_FAILED) == 1


def test_a_lookup_through_the_pull_through_cache_warms_it(
    proxy: Registry, upstream: Registry, certificates: Certificates, images: Images
) -> None:
    del upstream
    webhook = Webhook(rules_for(proxy.host), make_verifier(certificates, budget=2.0))
    assert not proxy.has_manifest("quay/org/app", images.v2.digest)

    assert webhook.admit_once("quay.io/org/app:2.0", f"quay.io/org/app:2.0@{images.v2.digest}").images == [
        f"{proxy.host}/quay/org/app:2.0",
        f"{proxy.host}/quay/org/app:2.0@{images.v2.digest}",
    ]
    assert proxy.has_manifest("quay/org/app", images.v2.digest)


def test_a_stopped_registry_keeps_pods_unmodified_within_budget_and_recovers(
    certificates: Certificates, images: Images, tmp_path: Path
) -> None:
    registry = Registry(tmp_path / "cache", certificates)
    registry.start()
    try:
        registry.push(images.v1, "quay/org/app", "1.0", tmp_path)
        registry.push(images.v2, "quay/org/app", "2.0", tmp_path)
        webhook = Webhook(rules_for(registry.host), make_verifier(certificates, failure_threshold=3))

        async def scenario() -> list[Admission]:
            seen = [await webhook.admit("quay.io/org/app:1.0")]  # resolved and cached
            registry.stop()
            seen += [await webhook.admit("quay.io/org/app:1.0", "quay.io/org/app:2.0") for _ in range(4)]
            assert webhook.verifier.breaker is BreakerState.OPEN
            registry.start()  # same port, same storage
            webhook.verifier._breaker._opened_at -= 60  # the cool-down is over (no sleeping in tests)
            # The first target is the half-open probe; the other is still refused until it has answered.
            seen.append(await webhook.admit("quay.io/org/app:1.0", "quay.io/org/app:2.0"))
            seen.append(await webhook.admit("quay.io/org/app:1.0", "quay.io/org/app:2.0"))
            await webhook.verifier.aclose()
            return seen

        seen = run(scenario())
    finally:
        registry.stop()
    cached, rewritten = f"{registry.host}/quay/org/app:1.0", f"{registry.host}/quay/org/app:2.0"
    assert seen[0].images == [cached]
    for admission in seen[1:4]:
        assert admission.images == [cached, "quay.io/org/app:2.0"]  # closed: the cached answer still counts
        assert admission.seconds < BOUND
    # Open: the registry is failing, so even the image that resolved before keeps its original.
    assert seen[4].images == ["quay.io/org/app:1.0", "quay.io/org/app:2.0"]
    assert seen[4].seconds < BOUND
    assert seen[5].images == [cached, "quay.io/org/app:2.0"]
    assert seen[6].images == [cached, rewritten]
    assert webhook.verifier.breaker is BreakerState.CLOSED
    assert webhook.decisions(Reason.VERIFY_FAILED) == 6


@pytest.mark.parametrize(("status", "delay"), [(503, 0.0), (500, 0.0), (429, 0.0), (200, 3.0)])
def test_a_failing_or_slow_registry_keeps_pods_unmodified_within_budget(
    certificates: Certificates, status: int, delay: float
) -> None:
    with FaultyRegistry(certificates, status=status, delay=delay) as faulty:
        webhook = Webhook(rules_for(faulty.host), make_verifier(certificates, failure_threshold=2))

        async def scenario() -> list[Admission]:
            seen = [await webhook.admit("quay.io/org/app:1.0", "registry.k8s.io/pause:3.10") for _ in range(3)]
            # Nothing waits for the slow answers on close: they are cancelled.
            await webhook.verifier.aclose()
            return seen

        seen = run(scenario())
    for admission in seen:
        assert admission.images == ["quay.io/org/app:1.0", "registry.k8s.io/pause:3.10"]
        assert admission.seconds < BOUND
    assert webhook.decisions(Reason.VERIFY_FAILED) == 3
    if delay == 0.0:
        assert webhook.verifier.breaker is BreakerState.OPEN


def test_a_forbidden_repository_keeps_the_original_without_opening_the_breaker(certificates: Certificates) -> None:
    with FaultyRegistry(certificates, status=403) as faulty:
        webhook = Webhook(rules_for(faulty.host), make_verifier(certificates, failure_threshold=2))

        async def scenario() -> list[Admission]:
            seen = [await webhook.admit(f"quay.io/org/app:{n}", f"quay.io/org/other:{n}") for n in range(3)]
            await webhook.verifier.aclose()
            return seen

        seen = run(scenario())
    for n, admission in enumerate(seen):
        assert admission.images == [f"quay.io/org/app:{n}", f"quay.io/org/other:{n}"]
    assert webhook.decisions(Reason.VERIFY_FAILED) == 6
    assert webhook.verifier.breaker is BreakerState.CLOSED  # the registry answers: only those images are refused


def test_warm_pulls_through_the_cache_and_reports_each_image(
    proxy: Registry, certificates: Certificates, images: Images, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"registry": proxy.host, "tiers": ["quay", "k8s"]}))
    image_list = tmp_path / "images.txt"
    image_list.write_text(
        f"# chart images\nquay.io/org/app:2.0\nquay.io/org/app@{images.v2.digest}\n\nregistry.k8s.io/pause:3.10\n"
    )
    env = {**os.environ, ENV_USERNAME: USERNAME, ENV_PASSWORD: PASSWORD, ENV_CA_FILE: str(certificates.ca)}
    result = subprocess.run(
        [str(EXECUTABLE), "warm", "--config", str(config), "-f", str(image_list), "docker.io/library/nginx:1.27"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["IMAGE", "STATUS", "DETAIL"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:-1]}
    assert rows["quay.io/org/app:2.0"] == ["resolved", f"{proxy.host}/quay/org/app:2.0", images.v2.digest]
    assert rows[f"quay.io/org/app@{images.v2.digest}"][0] == "resolved"
    assert rows["registry.k8s.io/pause:3.10"][:2] == ["missing", "3.10:"]
    assert "MANIFEST_UNKNOWN" in " ".join(rows["registry.k8s.io/pause:3.10"])
    assert rows["docker.io/library/nginx:1.27"] == ["skipped", "tier-disabled"]
    # Not an ECR registry: whether the cache held an image before cannot be told, so served images are `resolved`.
    assert lines[-1] == "0 warmed, 0 already-cached, 2 resolved, 1 missing, 0 failed, 1 skipped"
    assert "[4/4]" in result.stderr
    assert proxy.has_manifest("quay/org/app", images.v2.digest)


def test_warm_reports_the_registry_error(certificates: Certificates, tmp_path: Path) -> None:
    with FaultyRegistry(certificates, status=503) as faulty:
        config = tmp_path / "config.yaml"
        config.write_text(json.dumps({"registry": faulty.host, "tiers": ["quay"]}))
        result = subprocess.run(
            [str(EXECUTABLE), "warm", "--config", str(config), "--ca-file", str(certificates.ca), "quay.io/org/app:1"],
            capture_output=True,
            text=True,
            check=False,
        )
    assert result.returncode == 1
    assert "failed" in result.stdout
    assert "503 Service Unavailable: UNAVAILABLE injected failure" in result.stdout
