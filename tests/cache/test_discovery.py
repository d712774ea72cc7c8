"""Live rules: the pure survey of ECR's rules against the config, and the discovery loop (botocore Stubber)."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

import pytest
from cache.cache_support import aws_env
from prometheus_client import CollectorRegistry

from webhook.cache.discovery import RETRY_MAX_UNREAD, Drift, DriftKind, RuleDiscovery, survey
from webhook.core.config import Config, parse_config
from webhook.core.reasons import Reason
from webhook.serve.app import create_app

if TYPE_CHECKING:
    from botocore.stub import Stubber
    from mypy_boto3_ecr import ECRClient

ACCOUNT = "123456789012"
REGISTRY = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"

pytestmark = pytest.mark.usefixtures(aws_env.__name__)


def rule(prefix: str, url: str, registry: str = "", **extra: str) -> dict[str, Any]:
    item: dict[str, Any] = {"ecrRepositoryPrefix": prefix, "upstreamRegistryUrl": url, "registryId": ACCOUNT}
    if registry:
        item["upstreamRegistry"] = registry
    item.update(extra)
    return item


QUAY = rule("quay", "quay.io", "quay")
K8S = rule("k8s", "registry.k8s.io", "k8s")
HUB = rule("docker-hub", "registry-1.docker.io", "docker-hub")


@pytest.fixture
def config() -> Config:
    return parse_config({"registry": REGISTRY, "tiers": ["quay", "k8s", "docker-hub"]})


def test_tiers_whose_rule_exists_as_expected_are_available(config: Config) -> None:
    result = survey(config, [QUAY, K8S, HUB])
    assert result.available_tiers == {"quay", "k8s", "docker-hub"}
    assert result.drift == ()


def test_a_missing_rule_is_drift_and_the_tier_is_not_rewritten(config: Config) -> None:
    result = survey(config, [QUAY, K8S])
    assert result.available_tiers == {"quay", "k8s"}
    assert result.drift == (
        Drift(DriftKind.MISSING, "docker-hub", "no pull-through cache rule with prefix 'docker-hub'", "docker-hub"),
    )


def test_a_rule_with_the_prefix_but_another_upstream_is_a_mismatch(config: Config) -> None:
    result = survey(config, [rule("quay", "ghcr.io", "github-container-registry"), K8S, HUB])
    assert "quay" not in result.available_tiers
    assert [(item.kind, item.tier) for item in result.drift] == [(DriftKind.UPSTREAM_MISMATCH, "quay")]


def test_a_rule_fronting_only_an_upstream_repository_prefix_is_a_mismatch(config: Config) -> None:
    partial = rule("quay", "quay.io", "quay", upstreamRepositoryPrefix="prometheus")
    result = survey(config, [partial, K8S, HUB])
    assert "quay" not in result.available_tiers
    assert "fronts only quay.io/prometheus" in result.drift[0].detail
    root = rule("quay", "quay.io", "quay", upstreamRepositoryPrefix="ROOT")
    assert "quay" in survey(config, [root]).available_tiers


def test_the_upstream_cached_under_another_prefix_is_a_prefix_mismatch(config: Config) -> None:
    result = survey(config, [rule("quay-io", "https://Quay.io/", "quay"), K8S, HUB])
    assert "quay" not in result.available_tiers
    assert result.drift[0] == Drift(
        DriftKind.PREFIX_MISMATCH, "quay", "quay.io is cached under prefix quay-io, the config expects 'quay'", "quay"
    )
    assert (result.drift[1].kind, result.drift[1].prefix) == (DriftKind.EXTRA, "quay-io")


def test_configured_prefixes_are_the_ones_expected() -> None:
    config = parse_config({"registry": REGISTRY, "tiers": ["quay"], "prefixes": {"quay": "mirror/quay"}})
    assert survey(config, [rule("mirror/quay", "quay.io")]).available_tiers == {"quay"}
    assert survey(config, [QUAY]).available_tiers == frozenset()


def test_rules_no_enabled_tier_uses_are_extra(config: Config) -> None:
    result = survey(config, [QUAY, K8S, HUB, rule("ghcr", "ghcr.io"), rule("ROOT", "public.ecr.aws", "ecr-public")])
    assert result.available_tiers == {"quay", "k8s", "docker-hub"}
    assert [(item.kind, item.tier) for item in result.drift] == [(DriftKind.EXTRA, "ghcr"), (DriftKind.EXTRA, "")]


def test_old_answers_without_a_url_match_by_upstream_registry(config: Config) -> None:
    item = {"ecrRepositoryPrefix": "quay", "upstreamRegistry": "quay"}
    assert survey(config, [item]).available_tiers == {"quay"}


def expect_pages(stubber: Stubber, *pages: list[dict[str, Any]]) -> None:
    for index, page in enumerate(pages):
        answer: dict[str, Any] = {"pullThroughCacheRules": page}
        expected: dict[str, Any] = {"registryId": ACCOUNT}
        if index + 1 < len(pages):
            answer["nextToken"] = f"page-{index + 1}"
        if index:
            expected["nextToken"] = f"page-{index}"
        stubber.add_response("describe_pull_through_cache_rules", answer, expected)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_until_the_first_read_nothing_is_rewritten_and_not_ready(
    config: Config, ecr: tuple[ECRClient, Stubber]
) -> None:
    client, _ = ecr
    discovery = RuleDiscovery(config, client, registry_id=ACCOUNT)
    assert discovery.current().decide("quay.io/org/app:1").reason is Reason.RULE_MISSING
    ready, detail = discovery.status()
    assert not ready
    assert detail == "rules: not read from ECR yet, rewriting nothing"


def test_rules_are_read_across_pages_and_published(config: Config, ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    expect_pages(stubber, [QUAY], [K8S, rule("ghcr", "ghcr.io")])
    registry = CollectorRegistry()
    discovery = RuleDiscovery(config, client, registry_id=ACCOUNT, registry=registry, clock=lambda: 1234.0)
    assert asyncio.run(discovery.refresh())
    rules = discovery.current()
    assert rules.decide("quay.io/org/app:1").rewrites
    assert rules.decide("registry.k8s.io/pause:3.10").rewrites
    assert rules.decide("docker.io/library/nginx:1").reason is Reason.RULE_MISSING
    assert discovery.status() == (True, "rules: rewriting k8s,quay (drift: docker-hub missing; ghcr extra)")
    assert sample(registry, "ecr_ptc_webhook_discovered_rules", tier="quay", upstream="quay.io", prefix="quay") == 1
    assert sample(registry, "ecr_ptc_webhook_rules_drift", tier="docker-hub", kind="missing", prefix="docker-hub") == 1
    assert sample(registry, "ecr_ptc_webhook_tier_available", tier="docker-hub") == 0
    assert sample(registry, "ecr_ptc_webhook_tier_available", tier="quay") == 1
    assert sample(registry, "ecr_ptc_webhook_discovery_last_success_timestamp_seconds") == 1234.0


def test_a_failed_read_keeps_the_last_known_rules_and_says_so(config: Config, ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    expect_pages(stubber, [QUAY, K8S, HUB])
    stubber.add_client_error("describe_pull_through_cache_rules", "AccessDeniedException", "not authorized")
    expect_pages(stubber, [QUAY])
    registry = CollectorRegistry()
    discovery = RuleDiscovery(config, client, registry_id=ACCOUNT, registry=registry, clock=lambda: 0.0)

    async def scenario() -> None:
        assert await discovery.refresh()
        before = discovery.current()
        assert not await discovery.refresh()
        assert discovery.current() is before
        ready, detail = discovery.status()
        assert ready
        assert "reading rules failing, last known from 1970-01-01T00:00:00+00:00" in detail
        assert "AccessDeniedException" in detail
        assert await discovery.refresh()  # a rule was deleted meanwhile: drift shows, rewrites stop
        assert discovery.current().decide("registry.k8s.io/pause:3.10").reason is Reason.RULE_MISSING
        assert sample(registry, "ecr_ptc_webhook_rules_drift", tier="k8s", kind="missing", prefix="k8s") == 1
        assert (
            sample(registry, "ecr_ptc_webhook_rules_drift", tier="docker-hub", kind="missing", prefix="docker-hub") == 1
        )

    asyncio.run(scenario())
    assert sample(registry, "ecr_ptc_webhook_discovery_failures_total") == 1


def test_a_failed_first_read_is_retried_soon_and_never_crashes(config: Config, ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    stubber.add_client_error("describe_pull_through_cache_rules", "ServiceUnavailableException", "try later")
    expect_pages(stubber, [QUAY, K8S, HUB])
    discovery = RuleDiscovery(config, client, registry_id=ACCOUNT)

    async def scenario() -> None:
        task = asyncio.create_task(discovery.run(interval=0.05))
        for _ in range(100):
            if discovery.survey is not None:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert discovery.status() == (True, "rules: rewriting docker-hub,k8s,quay")


def test_each_extra_rule_is_its_own_drift_series(config: Config, ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    # Two rules no enabled tier uses, neither fronting a known tier: same tier ("") and kind, told apart by prefix.
    expect_pages(stubber, [QUAY, K8S, HUB, rule("ROOT", "public.ecr.aws", "ecr-public"), rule("mirror", "example.com")])
    registry = CollectorRegistry()
    discovery = RuleDiscovery(config, client, registry_id=ACCOUNT, registry=registry)
    assert asyncio.run(discovery.refresh())
    assert sample(registry, "ecr_ptc_webhook_rules_drift", tier="", kind="extra", prefix="ROOT") == 1
    assert sample(registry, "ecr_ptc_webhook_rules_drift", tier="", kind="extra", prefix="mirror") == 1


class Stop(Exception):  # noqa: N818 - a signal to end the loop, not an error
    pass


class RecordedPauses(RuleDiscovery):
    """Records the waits of `run` instead of sleeping; ends the loop after `limit` of them."""

    pauses: list[float]
    limit = 0

    async def _pause(self, seconds: float) -> None:
        self.pauses.append(seconds)
        if len(self.pauses) >= self.limit:
            raise Stop


def test_retries_back_off_to_30_s_before_the_first_read_then_to_the_refresh_period(
    config: Config, ecr: tuple[ECRClient, Stubber]
) -> None:
    client, stubber = ecr
    for _ in range(6):
        stubber.add_client_error("describe_pull_through_cache_rules", "ServiceUnavailableException", "try later")
    expect_pages(stubber, [QUAY, K8S, HUB])
    for _ in range(7):
        stubber.add_client_error("describe_pull_through_cache_rules", "ServiceUnavailableException", "try later")
    discovery = RecordedPauses(config, client, registry_id=ACCOUNT)
    discovery.pauses, discovery.limit = [], 14
    with pytest.raises(Stop):
        asyncio.run(discovery.run(interval=300.0))
    assert RETRY_MAX_UNREAD == 30.0
    # Never read: doubling, capped at 30 s. Read once: every 300 s, and after a failure doubling up to 300 s.
    assert discovery.pauses == [2, 4, 8, 16, 30, 30, 300, 2, 4, 8, 16, 32, 64, 128]


def test_a_read_that_hangs_ends_at_the_read_timeout(config: Config, ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    expect_pages(stubber, [QUAY])  # answered only once the test lets the hung call go
    hung = threading.Event()

    def hang(**_: Any) -> None:
        hung.wait(timeout=10)

    client.meta.events.register("before-parameter-build.ecr.DescribePullThroughCacheRules", hang)
    discovery = RuleDiscovery(config, client, registry_id=ACCOUNT)
    discovery.read_timeout = 0.05

    async def scenario() -> bool:
        try:
            return await discovery.refresh()
        finally:
            hung.set()

    assert not asyncio.run(scenario())
    ready, detail = discovery.status()
    assert not ready
    assert detail == (
        "rules: not read from ECR yet, rewriting nothing: DescribePullThroughCacheRules did not answer within 0.05s"
    )


def test_the_app_reads_the_rules_in_force(config: Config, ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    expect_pages(stubber, [QUAY])
    discovery = RuleDiscovery(config, client, registry_id=ACCOUNT)
    app = create_app(discovery.current)
    asyncio.run(discovery.refresh())
    assert app._rules() is discovery.current()
    assert app._rules().available_tiers == frozenset({"quay"})


def test_for_config_reads_the_registry_s_region_and_account(config: Config, ecr: tuple[ECRClient, Stubber]) -> None:
    del ecr
    discovery = RuleDiscovery.for_config(config)
    assert discovery._registry_id == ACCOUNT
    assert discovery._ecr.meta.region_name == "eu-west-1"


# --- the config's own upstreams: matched by upstream URL -------------------------------------------------------------

CENTRAL = "111122223333.dkr.ecr.us-east-1.amazonaws.com"
UPSTREAMS = [
    {
        "name": "acme-acr",
        "upstreamRegistry": "azure-container-registry",
        "host": "acmecorp.azurecr.io",
        "prefix": "acr",
    },
    {
        "name": "central-ecr",
        "upstreamRegistry": "ecr",
        "host": "111122223333.dkr-ecr.us-east-1.on.aws",
        "prefix": "use1",
    },
]


def upstreams_config() -> Config:
    return parse_config(
        {"registry": REGISTRY, "upstreams": UPSTREAMS, "tiers": ["chainguard", "acme-acr", "central-ecr"]}
    )


def test_user_defined_upstreams_are_found_by_their_url() -> None:
    rules = [
        rule("chainguard", "cgr.dev", "chainguard"),
        rule("acr", "https://AcmeCorp.azurecr.io/", "azure-container-registry"),
        rule("use1", CENTRAL, "ecr", customRoleArn=f"arn:aws:iam::{ACCOUNT}:role/ptc"),
    ]
    result = survey(upstreams_config(), rules)
    assert result.available_tiers == {"chainguard", "acme-acr", "central-ecr"}
    assert result.drift == ()
    assert [item.tier for item in result.rules] == ["chainguard", "acme-acr", "central-ecr"]


def test_another_registry_of_the_same_kind_on_the_prefix_is_a_mismatch() -> None:
    rules = [
        rule("chainguard", "cgr.dev", "chainguard"),
        rule("acr", "othercorp.azurecr.io", "azure-container-registry"),
        rule("use1", "444455556666.dkr.ecr.us-east-1.amazonaws.com", "ecr"),
        rule("old", CENTRAL, "ecr"),
    ]
    result = survey(upstreams_config(), rules)
    assert result.available_tiers == {"chainguard"}
    drift = {(item.tier, item.kind) for item in result.drift}
    assert drift == {
        ("acme-acr", DriftKind.UPSTREAM_MISMATCH),
        ("central-ecr", DriftKind.UPSTREAM_MISMATCH),
        ("central-ecr", DriftKind.EXTRA),  # `old` fronts the central registry under a prefix the config does not use
    }
    mismatch = next(item for item in result.drift if item.tier == "acme-acr")
    assert mismatch.detail == "rule 'acr' fronts othercorp.azurecr.io, expected acmecorp.azurecr.io"


def test_a_rule_without_url_is_never_taken_for_a_user_defined_upstream() -> None:
    """`upstreamRegistry: ecr` alone names no registry: only built-in tiers match by the enum value."""
    result = survey(upstreams_config(), [rule("use1", "", "ecr"), rule("chainguard", "", "chainguard")])
    assert result.available_tiers == {"chainguard"}
