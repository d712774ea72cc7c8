from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import Written, grammar_biased_text, tier_references

from webhook.core.config import parse_config
from webhook.core.reasons import Reason
from webhook.core.reference import parse
from webhook.core.registries import EKS_ADDON_ACCOUNTS, TIER_BY_HOST, TIERS
from webhook.core.rules import Decision, Rules

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
ALL_TIERS = [tier.name for tier in TIERS]
SHA256 = "sha256:" + "a" * 64


def make_rules(**config: Any) -> Rules:
    """Every tier enabled; ``movingTags: rewrite`` unless given, so that the grammar and prefix tests can use every
    spelling, tagged or not (the policies have their own tests, in test_policies.py)."""
    return Rules(parse_config({"registry": REGISTRY, "tiers": ALL_TIERS, "movingTags": "rewrite", **config}))


RULES = make_rules()
"""Every tier enabled, default prefixes (module-level so hypothesis tests need no function-scoped fixture)."""


@pytest.mark.parametrize(
    ("image", "result", "tier"),
    [
        # the examples
        ("quay.io/prometheus/node-exporter:v1.8.2", f"{REGISTRY}/quay/prometheus/node-exporter:v1.8.2", "quay"),
        ("nginx", f"{REGISTRY}/docker-hub/library/nginx", "docker-hub"),
        ("velero/velero:v1.15.1", f"{REGISTRY}/docker-hub/velero/velero:v1.15.1", "docker-hub"),
        # every tier host
        ("registry.k8s.io/pause:3.10", f"{REGISTRY}/k8s/pause:3.10", "k8s"),
        ("docker.io/library/nginx:1.27", f"{REGISTRY}/docker-hub/library/nginx:1.27", "docker-hub"),
        ("docker.io/nginx", f"{REGISTRY}/docker-hub/library/nginx", "docker-hub"),
        ("index.docker.io/nginx", f"{REGISTRY}/docker-hub/library/nginx", "docker-hub"),
        ("index.docker.io/bitnami/redis", f"{REGISTRY}/docker-hub/bitnami/redis", "docker-hub"),
        ("registry-1.docker.io/nginx", f"{REGISTRY}/docker-hub/library/nginx", "docker-hub"),
        ("registry-1.docker.io/library/nginx", f"{REGISTRY}/docker-hub/library/nginx", "docker-hub"),
        ("registry-1.docker.io/bitnami/redis", f"{REGISTRY}/docker-hub/bitnami/redis", "docker-hub"),
        ("ghcr.io/nicolaka/netshoot:v0.13", f"{REGISTRY}/ghcr/nicolaka/netshoot:v0.13", "ghcr"),
        ("registry.gitlab.com/group/project/image:1", f"{REGISTRY}/gitlab/group/project/image:1", "gitlab"),
        # hosts match case-insensitively
        ("QUAY.IO/org/app:v1", f"{REGISTRY}/quay/org/app:v1", "quay"),
        ("Registry.K8s.io/pause", f"{REGISTRY}/k8s/pause", "k8s"),
        ("INDEX.DOCKER.IO/nginx", f"{REGISTRY}/docker-hub/library/nginx", "docker-hub"),
        ("Docker.IO/nginx", f"{REGISTRY}/docker-hub/library/nginx", "docker-hub"),
        # tag and digest kept exactly as written: no `:latest` added, no digest dropped
        (f"quay.io/org/app@{SHA256}", f"{REGISTRY}/quay/org/app@{SHA256}", "quay"),
        (f"quay.io/org/app:v1@{SHA256}", f"{REGISTRY}/quay/org/app:v1@{SHA256}", "quay"),
        (f"nginx:1.27@{SHA256}", f"{REGISTRY}/docker-hub/library/nginx:1.27@{SHA256}", "docker-hub"),
        ("quay.io/org/app:V1.0_RC-1", f"{REGISTRY}/quay/org/app:V1.0_RC-1", "quay"),
    ],
)
def test_rewrites(image: str, result: str, tier: str) -> None:
    decision = RULES.decide(image)
    assert decision == Decision(image=image, action="rewrite", result=result, reason=Reason.REWRITTEN, tier=tier)
    assert decision.rewrites
    assert decision.as_dict() == {
        "image": image,
        "action": "rewrite",
        "result": result,
        "reason": "rewritten",
        "tier": tier,
    }


@pytest.mark.parametrize(
    ("image", "reason", "tier"),
    [
        ("public.ecr.aws/eks-distro/kubernetes/pause:3.9", Reason.PUBLIC_ECR, None),
        ("PUBLIC.ECR.AWS/x/y", Reason.PUBLIC_ECR, None),
        ("602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/coredns:v1.11.1", Reason.EKS_ADDON_REGISTRY, None),
        ("877085696533.dkr.ecr.af-south-1.amazonaws.com/amazon-k8s-cni:v1.18", Reason.EKS_ADDON_REGISTRY, None),
        ("918309763551.dkr.ecr.cn-north-1.amazonaws.com.cn/eks/kube-proxy:v1", Reason.EKS_ADDON_REGISTRY, None),
        ("013241004608.dkr.ecr-fips.us-gov-west-1.amazonaws.com/eks/pause", Reason.EKS_ADDON_REGISTRY, None),
        ("111122223333.dkr.ecr.us-east-1.amazonaws.com/team/app:1", Reason.ECR_REGISTRY, None),
        ("111122223333.dkr.ecr-fips.us-east-1.amazonaws.com/team/app", Reason.ECR_REGISTRY, None),
        ("111122223333.dkr.ecr.cn-northwest-1.amazonaws.com.cn/team/app", Reason.ECR_REGISTRY, None),
        ("111122223333.DKR.ECR.US-EAST-1.AMAZONAWS.COM/team/app", Reason.ECR_REGISTRY, None),
        (f"{REGISTRY}/quay/org/app:v1", Reason.ALREADY_CACHED, None),
        (f"{REGISTRY.upper()}/quay/org/app:v1", Reason.ALREADY_CACHED, None),
        (f"{REGISTRY}/docker-hub/library/nginx", Reason.ALREADY_CACHED, None),
        (f"{REGISTRY}/anything/else", Reason.ALREADY_CACHED, None),
        ("gcr.io/distroless/static:nonroot", Reason.UPSTREAM_UNSUPPORTED, None),
        ("k8s.gcr.io/pause:3.2", Reason.UPSTREAM_UNSUPPORTED, None),
        ("us.gcr.io/project/app", Reason.UPSTREAM_UNSUPPORTED, None),
        ("europe-west1-docker.pkg.dev/project/repo/app:1", Reason.UPSTREAM_UNSUPPORTED, None),
        ("GCR.IO/x", Reason.UPSTREAM_UNSUPPORTED, None),
        ("example.com/org/app", Reason.NO_RULE, None),
        ("localhost:5000/app", Reason.NO_RULE, None),
        ("mcr.microsoft.com/dotnet/runtime:8.0", Reason.NO_RULE, None),
        # host matching is exact, never a string prefix or suffix
        ("docker.io.evil.example/x", Reason.NO_RULE, None),
        ("quay.io.evil.example/x", Reason.NO_RULE, None),
        ("evilquay.io/x", Reason.NO_RULE, None),
        ("notgcr.io/x", Reason.NO_RULE, None),
        ("ghcr.io.example/x", Reason.NO_RULE, None),
        (f"{REGISTRY}.evil.example/quay/x", Reason.NO_RULE, None),
        ("", Reason.INVALID_REFERENCE, None),
        ("Quay.io/Org/App", Reason.INVALID_REFERENCE, None),
        ("nginx:", Reason.INVALID_REFERENCE, None),
        ("nginx\n", Reason.INVALID_REFERENCE, None),
        ("my_host.com/foo", Reason.INVALID_REFERENCE, None),  # the documented deviation from distribution
        ("a" * 64, Reason.INVALID_REFERENCE, None),
        ("quay.io/org/app@sha256:" + "A" * 64, Reason.INVALID_REFERENCE, None),
    ],
)
def test_skips(image: str, reason: Reason, tier: str | None) -> None:
    decision = RULES.decide(image)
    assert decision == Decision(image=image, action="skip", result=image, reason=reason, tier=tier)
    assert not decision.rewrites


def test_every_eks_addon_account_is_skipped() -> None:
    for account in sorted(EKS_ADDON_ACCOUNTS):
        decision = RULES.decide(f"{account}.dkr.ecr.eu-west-1.amazonaws.com/eks/pause:3.9")
        assert decision.reason is Reason.EKS_ADDON_REGISTRY, account


def test_tier_disabled_names_the_tier() -> None:
    rules = Rules(parse_config({"registry": REGISTRY}))  # the default tiers: quay, k8s
    assert rules.decide("quay.io/org/app:v1").reason is Reason.REWRITTEN
    assert rules.decide("registry.k8s.io/pause:3.10").reason is Reason.REWRITTEN
    for image, tier in [
        ("nginx", "docker-hub"),
        ("registry-1.docker.io/library/nginx", "docker-hub"),
        ("ghcr.io/org/app", "ghcr"),
        ("registry.gitlab.com/group/app", "gitlab"),
    ]:
        assert rules.decide(image) == Decision(image, "skip", image, Reason.TIER_DISABLED, tier)


def test_configured_prefixes_are_used() -> None:
    rules = make_rules(prefixes={"docker-hub": "dockerhub", "quay": "mirror/quay-io"})
    assert rules.decide("nginx:1").result == f"{REGISTRY}/dockerhub/library/nginx:1"
    assert rules.decide("quay.io/org/app").result == f"{REGISTRY}/mirror/quay-io/org/app"
    assert rules.decide("ghcr.io/org/app").result == f"{REGISTRY}/ghcr/org/app"


def test_registry_is_written_as_configured_and_recognised_in_any_case() -> None:
    rules = Rules(parse_config({"registry": REGISTRY.upper()}))
    result = rules.decide("quay.io/org/app:v1").result
    assert result == f"{REGISTRY.upper()}/quay/org/app:v1"
    assert rules.decide(result).reason is Reason.ALREADY_CACHED
    assert rules.decide(f"{REGISTRY}/quay/org/app").reason is Reason.ALREADY_CACHED


def test_registry_with_port_is_recognised_as_the_cache() -> None:
    rules = Rules(parse_config({"registry": "cache.example:5000"}))
    result = rules.decide("quay.io/org/app:v1").result
    assert result == "cache.example:5000/quay/org/app:v1"
    assert rules.decide(result).reason is Reason.ALREADY_CACHED


def test_digest_pinned_with_digests_skip() -> None:
    rules = make_rules(digests="skip")
    for image in (f"quay.io/org/app@{SHA256}", f"quay.io/org/app:v1@{SHA256}", f"nginx@{SHA256}"):
        decision = rules.decide(image)
        assert (decision.action, decision.reason, decision.result) == ("skip", Reason.DIGEST_PINNED, image)
        assert decision.tier is not None
    assert rules.decide("quay.io/org/app:v1").reason is Reason.REWRITTEN
    # a disabled tier says so, whatever the digest
    assert Rules(parse_config({"registry": REGISTRY, "digests": "skip"})).decide(f"nginx@{SHA256}").reason is (
        Reason.TIER_DISABLED
    )


def test_rule_missing_when_discovery_lacks_the_tier() -> None:
    rules = Rules(RULES.config, available_tiers=frozenset({"quay"}))
    assert rules.decide("quay.io/org/app").reason is Reason.REWRITTEN
    assert rules.decide("ghcr.io/org/app") == Decision(
        "ghcr.io/org/app", "skip", "ghcr.io/org/app", Reason.RULE_MISSING, "ghcr"
    )


def test_name_too_long_at_ecr_and_grammar_limits() -> None:
    # quay/ + path: the rewritten path is 5 characters longer than the original
    fits = "quay.io/" + "a" * 250  # quay/ + 250 = 255: the grammar's limit, inside ECR's 256
    assert RULES.decide(fits).reason is Reason.REWRITTEN
    assert len(parse(RULES.decide(fits).result).path) == 255
    too_long = "quay.io/" + "a" * 251  # 256: ECR would take it, the reference grammar would not
    assert RULES.decide(too_long) == Decision(too_long, "skip", too_long, Reason.NAME_TOO_LONG, "quay")
    # Docker Hub's official namespace is part of the original path: docker-hub/ + library/... counts in full
    official = "a" * 244  # docker-hub/library/ + 244 = 263
    assert RULES.decide(official).reason is Reason.NAME_TOO_LONG
    assert RULES.decide("a" * 236).reason is Reason.REWRITTEN  # 11 + 8 + 236 = 255


def test_name_too_long_when_prefix_makes_ecr_name_exceed_256() -> None:
    rules = make_rules(prefixes={"quay": "p" * 30})
    assert rules.decide("quay.io/" + "a" * 224).reason is Reason.REWRITTEN  # 30 + 1 + 224 = 255
    assert rules.decide("quay.io/" + "a" * 225).reason is Reason.NAME_TOO_LONG  # 256
    assert rules.decide("quay.io/" + "a" * 226).reason is Reason.NAME_TOO_LONG  # 257: over ECR's limit too


def test_rerun_never_double_prefixes() -> None:
    first = RULES.decide("quay.io/org/app:v1")
    second = RULES.decide(first.result)
    assert second == Decision(first.result, "skip", first.result, Reason.ALREADY_CACHED, None)


def test_decision_cache_returns_the_same_decision() -> None:
    rules = make_rules()
    first = rules.decide("quay.io/org/app:v1")
    assert rules.decide("quay.io/org/app:v1") is first
    assert rules._decide("quay.io/org/app:v1", pull_secrets=False) == first
    # the cache is per image string: a different spelling is a different entry with its own `image`
    other = rules.decide("QUAY.IO/org/app:v1")
    assert other.image == "QUAY.IO/org/app:v1"
    assert other.result == first.result


def test_reasons_used_here_are_stable_strings() -> None:
    assert {reason.value for reason in Reason} >= {
        "rewritten",
        "tier-disabled",
        "public-ecr",
        "eks-addon-registry",
        "ecr-registry",
        "already-cached",
        "upstream-unsupported",
        "no-rule",
        "invalid-reference",
        "name-too-long",
        "digest-pinned",
    }


# --- properties ---------------------------------------------------------------------------------------------------


@given(tier_references())
def test_tier_references_rewrite_into_the_cache(written: Written) -> None:
    original = written.expected
    decision = RULES.decide(written.text)
    tier = TIER_BY_HOST[original.host]
    assert decision.tier == tier.name
    path = original.path
    if tier.official_namespace is not None and "/" not in path:
        path = f"{tier.official_namespace}/{path}"
    repository = f"{RULES.config.prefix_for(tier.name)}/{path}"
    if len(repository) > 255:
        assert decision.reason is Reason.NAME_TOO_LONG
        return
    assert decision.action == "rewrite"
    assert decision.reason is Reason.REWRITTEN
    rewritten = parse(decision.result)
    assert rewritten.domain == REGISTRY
    assert rewritten.path == repository
    assert (rewritten.tag, rewritten.digest) == (original.tag, original.digest)
    assert decision.result.endswith(original.suffix)
    again = RULES.decide(decision.result)
    assert (again.action, again.reason, again.result) == ("skip", Reason.ALREADY_CACHED, decision.result)


@given(st.one_of(st.text(), grammar_biased_text()))
def test_decide_never_raises(image: str) -> None:
    decision = RULES.decide(image)
    assert decision.image == image
    assert decision is RULES.decide(image)
    assert decision == RULES._decide(image, pull_secrets=False)
    if decision.rewrites:
        assert parse(decision.result).domain == REGISTRY
        assert RULES.decide(decision.result).reason is Reason.ALREADY_CACHED
    else:
        assert decision.result == image


def test_huge_image_strings_are_decided_but_not_kept(rules: Rules) -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        huge = [f"quay.io/team/app:v{index}" + "x" * 100_000 for index in range(50)]
        decisions = [rules.decide(image).reason for image in huge]
        del huge
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert decisions == [Reason.INVALID_REFERENCE] * 50
    assert held < 500_000  # 5 MB of image strings, none of them kept
    assert rules.decide("quay.io/team/app:v1") is rules.decide("quay.io/team/app:v1")  # ordinary ones are
