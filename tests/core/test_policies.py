"""The image policies (`pullSecrets`, `movingTags`, `exclude`, `include`), the order of decisions, and the EKS table."""

from __future__ import annotations

import re
from typing import Any

import pytest
from reviews import make_pod, make_review

from webhook.core.admission import Mode, parse_review, review
from webhook.core.config import parse_config
from webhook.core.patch import has_pull_secrets, plan_pod, pod_template_key
from webhook.core.reasons import DECISION_ORDER, Reason
from webhook.core.registries import (
    EKS_ADDON_ACCOUNT_BY_REGION,
    EKS_ADDON_ACCOUNTS,
    EKS_ADDON_DEFAULT_ACCOUNT,
    TIERS,
    TIERS_BY_NAME,
)
from webhook.core.review_cache import ReviewCache
from webhook.core.rules import Decision, Rules
from webhook.exceptions import ConfigError

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
ALL_TIERS = [tier.name for tier in TIERS]
DIGEST = "sha256:" + "b" * 64


def make_rules(**config: Any) -> Rules:
    return Rules(parse_config({"registry": REGISTRY, "tiers": ALL_TIERS, **config}))


DEFAULTS = make_rules()


def with_pull_secrets(pod: dict[str, Any], *names: str) -> dict[str, Any]:
    pod["spec"]["imagePullSecrets"] = [{"name": name} for name in names]
    return pod


# -- pullSecrets ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "tier"),
    [
        ("quay.io/acme/app:v1", "quay"),
        ("nginx:1.27", "docker-hub"),
        ("ghcr.io/acme/app:v1", "ghcr"),
        ("registry.gitlab.com/acme/app:v1", "gitlab"),
    ],
)
def test_a_pod_with_pull_secrets_keeps_images_of_upstreams_that_can_be_private(image: str, tier: str) -> None:
    assert DEFAULTS.decide(image, pull_secrets=True) == Decision(image, "skip", image, Reason.PULL_SECRET, tier)
    assert DEFAULTS.decide(image).reason is Reason.REWRITTEN
    assert make_rules(pullSecrets="rewrite").decide(image, pull_secrets=True).reason is Reason.REWRITTEN


def test_registry_k8s_io_has_no_private_images_so_pull_secrets_do_not_matter() -> None:
    assert not TIERS_BY_NAME["k8s"].private_images
    assert all(tier.private_images for tier in TIERS if tier.name != "k8s")
    assert DEFAULTS.decide("registry.k8s.io/pause:3.10", pull_secrets=True).reason is Reason.REWRITTEN


@pytest.mark.parametrize(
    ("secrets", "expected"),
    [
        (None, False),
        ([], False),
        ([{"name": "quay-robot"}], True),
        ([{}], True),  # an odd entry still says the pod expects credentials: keep on the safe side
        ("not-a-list", False),
    ],
)
def test_what_counts_as_pull_secrets(secrets: object, *, expected: bool) -> None:
    spec: dict[str, Any] = {"containers": []}
    if secrets is not None:
        spec["imagePullSecrets"] = secrets
    assert has_pull_secrets(spec) is expected


def test_a_private_quay_image_in_a_pod_with_pull_secrets_is_not_patched() -> None:
    pod = with_pull_secrets(make_pod("quay.io/acme/private:v1", "registry.k8s.io/pause:3.10"), "quay-robot")
    plan = plan_pod(pod, DEFAULTS)
    assert [item.decision.reason for item in plan.decisions] == [Reason.PULL_SECRET, Reason.REWRITTEN]
    assert [op["path"] for op in plan.patch if op["op"] == "replace"] == ["/spec/containers/1/image"]
    assert plan_pod(with_pull_secrets(make_pod("quay.io/acme/private:v1")), DEFAULTS).rewrites  # `[]`: none


# -- movingTags -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("image", ["nginx", "nginx:latest", "quay.io/acme/app", "quay.io/acme/app:latest"])
def test_moving_tags_stay_on_their_upstream(image: str) -> None:
    assert DEFAULTS.decide(image).reason is Reason.MOVING_TAG
    assert make_rules(movingTags="rewrite").decide(image).reason is Reason.REWRITTEN


@pytest.mark.parametrize(
    "image",
    [f"nginx@{DIGEST}", f"nginx:latest@{DIGEST}", "nginx:1.27", "nginx:Latest", "quay.io/acme/app:latest-1"],
)
def test_a_digest_or_a_fixed_tag_makes_a_reference_safe(image: str) -> None:
    assert DEFAULTS.decide(image).reason is Reason.REWRITTEN


# -- exclude and include --------------------------------------------------------------------------------------------


def test_excluded_organisation_and_included_list() -> None:
    rules = make_rules(exclude=["quay.io/acme/**", "nginx"], include=["quay.io/**", "docker.io/**"])
    assert rules.decide("quay.io/acme/app:v1").reason is Reason.EXCLUDED
    assert rules.decide("index.docker.io/library/nginx:1.27").reason is Reason.EXCLUDED
    assert rules.decide("quay.io/other/app:v1").reason is Reason.REWRITTEN
    assert rules.decide("ghcr.io/other/app:v1") == Decision(
        "ghcr.io/other/app:v1", "skip", "ghcr.io/other/app:v1", Reason.NOT_INCLUDED, "ghcr"
    )


def test_patterns_are_compiled_once_and_a_bad_one_is_a_config_error_naming_key_and_pattern() -> None:
    with pytest.raises(ConfigError, match=re.escape("config key `include`: pattern 'ghcr.io/*/tools:v1': ")):
        make_rules(include=["quay.io/**", "ghcr.io/*/tools:v1"])
    with pytest.raises(ConfigError, match=re.escape("config key `exclude`: expected a list of repository patterns")):
        make_rules(exclude=[1])


# -- the order of decisions -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "image", "pull_secrets", "reason"),
    [
        # the tier before the policies
        ({"tiers": ["quay"], "exclude": ["**"]}, "nginx", True, Reason.TIER_DISABLED),
        # exclude before include, include before pull secrets, pull secrets before moving tags
        ({"exclude": ["**"], "include": ["quay.io/**"]}, "ghcr.io/a/b", True, Reason.EXCLUDED),
        ({"include": ["quay.io/**"]}, "ghcr.io/a/b", True, Reason.NOT_INCLUDED),
        ({}, "ghcr.io/a/b", True, Reason.PULL_SECRET),
        ({}, "ghcr.io/a/b", False, Reason.MOVING_TAG),
        # a digest makes a moving tag safe; then `digests: skip` decides
        ({"digests": "skip"}, f"ghcr.io/a/b@{DIGEST}", False, Reason.DIGEST_PINNED),
        # the policies before the name's length
        ({"prefixes": {"quay": "p" * 30}}, "quay.io/" + "a" * 230, False, Reason.MOVING_TAG),
        (
            {"prefixes": {"quay": "p" * 30}, "digests": "skip"},
            f"quay.io/{'a' * 230}@{DIGEST}",
            False,
            Reason.DIGEST_PINNED,
        ),
        ({"prefixes": {"quay": "p" * 30}}, "quay.io/" + "a" * 230 + ":v1", False, Reason.NAME_TOO_LONG),
        # the host before everything
        ({"exclude": ["**"]}, f"{REGISTRY}/quay/a:v1", True, Reason.ALREADY_CACHED),
        (
            {"exclude": ["**"]},
            "602401143452.dkr.ecr.eu-west-1.amazonaws.com/eks/coredns",
            True,
            Reason.EKS_ADDON_REGISTRY,
        ),
    ],
)
def test_the_first_check_that_applies_decides(
    config: dict[str, Any], image: str, *, pull_secrets: bool, reason: Reason
) -> None:
    decision = make_rules(**config).decide(image, pull_secrets=pull_secrets)
    assert decision.reason is reason
    earlier = DECISION_ORDER[: DECISION_ORDER.index(reason)]
    assert decision.reason not in earlier


def test_rule_missing_comes_before_the_policies() -> None:
    rules = Rules(make_rules(exclude=["**"]).config, available_tiers=frozenset({"quay"}))
    assert rules.decide("ghcr.io/a/b:v1").reason is Reason.RULE_MISSING
    assert rules.decide("quay.io/a/b:v1").reason is Reason.EXCLUDED


# -- decisions are cached per (image, pull secrets); answers per template including pull secrets ---------------------


def test_the_decision_cache_keeps_pods_with_and_without_pull_secrets_apart() -> None:
    rules = make_rules()
    assert rules.decide("quay.io/a/b:v1").reason is Reason.REWRITTEN
    assert rules.decide("quay.io/a/b:v1", pull_secrets=True).reason is Reason.PULL_SECRET
    assert rules.decide("quay.io/a/b:v1").reason is Reason.REWRITTEN
    relaxed = make_rules(pullSecrets="rewrite")
    assert relaxed.decide("quay.io/a/b:v1", pull_secrets=True) is relaxed.decide("quay.io/a/b:v1")


def test_the_template_key_includes_pull_secrets() -> None:
    plain = make_pod("quay.io/acme/app:v1")
    secret = with_pull_secrets(make_pod("quay.io/acme/app:v1"), "quay-robot")
    empty = with_pull_secrets(make_pod("quay.io/acme/app:v1"))
    assert pod_template_key(plain) != pod_template_key(secret)
    assert pod_template_key(plain) == pod_template_key(empty)


@pytest.mark.parametrize("first_with_secrets", [True, False])
def test_a_pod_with_pull_secrets_never_gets_the_answer_cached_for_the_same_template_without(
    *, first_with_secrets: bool
) -> None:
    cache = ReviewCache()
    rules = make_rules()

    def answer(*, secrets: bool) -> dict[str, Any]:
        pod = make_pod("quay.io/acme/private:v1")
        if secrets:
            with_pull_secrets(pod, "quay-robot")
        return dict(cache.review(parse_review(make_review(pod)), rules, Mode.MUTATE).body["response"])

    first = answer(secrets=first_with_secrets)
    second = answer(secrets=not first_with_secrets)
    with_secrets, without = (first, second) if first_with_secrets else (second, first)
    assert "patch" not in with_secrets
    assert "patch" in without
    assert cache.hits == 0
    again = answer(secrets=True)
    assert cache.hits == 1
    assert {**again, "uid": ""} == {**with_secrets, "uid": ""}


# -- /audit warnings carry what the policies keep -------------------------------------------------------------------


def test_audit_warnings_name_the_setting_that_kept_each_image() -> None:
    rules = make_rules(exclude=["ghcr.io/acme/**"])
    pod = with_pull_secrets(
        make_pod("quay.io/acme/app:v1", "nginx", "ghcr.io/acme/tool:v1", "registry.k8s.io/pause:3.10"), "s"
    )
    response = review(parse_review(make_review(pod)), rules, Mode.AUDIT).body["response"]
    assert response["warnings"] == [
        f"registry.k8s.io/pause:3.10 -> {REGISTRY}/k8s/pause:3.10",
        "quay.io/acme/app:v1 stays on its upstream: pull-secret (`pullSecrets: keep`)",
        "nginx stays on its upstream: pull-secret (`pullSecrets: keep`)",
        "ghcr.io/acme/tool:v1 stays on its upstream: excluded (`exclude`)",
    ]


# -- the EKS add-on registries --------------------------------------------------------------------------------------

EKS_ADDON_REGISTRIES = {
    "af-south-1": "877085696533",
    "ap-east-1": "800184023465",
    "ap-east-2": "533267051163",
    "ap-south-2": "900889452093",
    "ap-southeast-3": "296578399912",
    "ap-southeast-4": "491585149902",
    "ap-southeast-5": "151610086707",
    "ap-southeast-6": "333609536671",
    "ap-southeast-7": "121268973566",
    "ca-west-1": "761377655185",
    "eu-central-2": "900612956339",
    "eu-south-1": "590381155156",
    "eu-south-2": "455263428931",
    "il-central-1": "066635153087",
    "me-central-1": "759879836304",
    "me-south-1": "558608220178",
    "mx-central-1": "730335286997",
    "cn-north-1": "918309763551",
    "cn-northwest-1": "961992271922",
    "us-gov-east-1": "151742754352",
    "us-gov-west-1": "013241004608",
}
"""AWS's page "View Amazon container image registries for Amazon EKS add-ons": every region not listed here uses
602401143452."""


def test_the_eks_add_on_table_is_aws_s() -> None:
    assert EKS_ADDON_ACCOUNT_BY_REGION == EKS_ADDON_REGISTRIES
    assert EKS_ADDON_DEFAULT_ACCOUNT == "602401143452"
    assert {"602401143452", *EKS_ADDON_REGISTRIES.values()} == EKS_ADDON_ACCOUNTS
    assert "455263428327" not in EKS_ADDON_ACCOUNTS  # on no list


@pytest.mark.parametrize(("region", "account"), sorted(EKS_ADDON_REGISTRIES.items()))
def test_each_eks_add_on_registry_is_reported_as_one(region: str, account: str) -> None:
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    image = f"{account}.dkr.ecr.{region}.{suffix}/eks/coredns:v1.11.1"
    assert DEFAULTS.decide(image).reason is Reason.EKS_ADDON_REGISTRY
    assert DEFAULTS.decide(f"123456789013.dkr.ecr.{region}.{suffix}/eks/coredns:v1").reason is Reason.ECR_REGISTRY
