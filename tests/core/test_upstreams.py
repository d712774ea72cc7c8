"""Tiers beyond the seed five: the built-in `chainguard` tier and the config's own `upstreams` (Azure Container
Registry, another ECR registry), from the config's validation through the reference parser to the decision."""

from __future__ import annotations

import re
from typing import Any

import pytest

from webhook.core.config import Config, parse_config
from webhook.core.reasons import Reason
from webhook.core.reference import parse
from webhook.core.registries import UPSTREAM_KINDS
from webhook.core.rules import Rules
from webhook.exceptions import ConfigError

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
ACR = {
    "name": "acme-acr",
    "upstreamRegistry": "azure-container-registry",
    "host": "acmecorp.azurecr.io",
    "prefix": "acr",
}
CENTRAL = "111122223333.dkr.ecr.us-east-1.amazonaws.com"
ECR = {"name": "central-ecr", "upstreamRegistry": "ecr", "host": CENTRAL, "prefix": "use1"}
CENTRAL_FORMS = (
    CENTRAL,
    "111122223333.dkr.ecr-fips.us-east-1.amazonaws.com",
    "111122223333.dkr-ecr.us-east-1.on.aws",
    "111122223333.dkr-ecr-fips.us-east-1.on.aws",
)
SHA256 = "sha256:" + "b" * 64


def config(*upstreams: dict[str, Any], **keys: Any) -> Config:
    names = [str(upstream["name"]) for upstream in upstreams]
    data: dict[str, Any] = {"registry": REGISTRY, "upstreams": list(upstreams), "tiers": ["quay", *names], **keys}
    return parse_config(data)


def error(*upstreams: dict[str, Any], **keys: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        config(*upstreams, **keys)
    return str(caught.value)


# --- the reference parser reads these hosts as registries ----------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "host", "path"),
    [
        ("cgr.dev/chainguard/nginx:latest", "cgr.dev", "chainguard/nginx"),
        ("acmecorp.azurecr.io/team/app:1.0", "acmecorp.azurecr.io", "team/app"),
        ("AcmeCorp.AzureCR.io/app", "acmecorp.azurecr.io", "app"),
        *((f"{host}/platform/api:v2", host, "platform/api") for host in CENTRAL_FORMS),
        ("111122223333.DKR.ECR.US-EAST-1.AMAZONAWS.COM/api", CENTRAL, "api"),
    ],
)
def test_the_parser_reads_the_new_hosts_as_registries(image: str, host: str, path: str) -> None:
    reference = parse(image)
    assert (reference.host, reference.path) == (host, path)


# --- chainguard: a built-in opt-in tier -----------------------------------------------------------------------------


def test_chainguard_is_a_built_in_opt_in_tier() -> None:
    rules = Rules(parse_config({"registry": REGISTRY, "tiers": ["chainguard"]}))
    decision = rules.decide(f"cgr.dev/chainguard/static:latest@{SHA256}")
    assert (decision.action, decision.reason, decision.tier) == ("rewrite", Reason.REWRITTEN, "chainguard")
    assert decision.result == f"{REGISTRY}/chainguard/chainguard/static:latest@{SHA256}"
    assert rules.config.tier("chainguard").needs_credentials
    off = Rules(parse_config({"registry": REGISTRY})).decide("cgr.dev/chainguard/static")
    assert (off.reason, off.tier) == (Reason.TIER_DISABLED, "chainguard")


# --- issue 12's policies apply to the new tiers as to the others ---------------------------------------------------


@pytest.mark.parametrize(
    "image", ["cgr.dev/chainguard/static:1", "acmecorp.azurecr.io/team/app:1", f"{CENTRAL}/platform/api:v2"]
)
def test_the_new_tiers_pass_through_the_policies(image: str) -> None:
    rules = Rules(config(ACR, ECR, tiers=["chainguard", "acme-acr", "central-ecr"]))
    # Each can hold private images: with `pullSecrets: keep` a pod with imagePullSecrets keeps them upstream.
    assert rules.decide(image, pull_secrets=True).reason == Reason.PULL_SECRET
    assert rules.decide(image).reason == Reason.REWRITTEN
    # `movingTags: keep` (the default) leaves `:latest` and untagged references alone, whatever the tier.
    assert rules.decide(image.rsplit(":", 1)[0]).reason == Reason.MOVING_TAG
    # `exclude` names them by their registry host.
    repository = image.rsplit(":", 1)[0]
    excluding = Rules(config(ACR, ECR, tiers=["chainguard", "acme-acr", "central-ecr"], exclude=[repository]))
    assert excluding.decide(image).reason == Reason.EXCLUDED


# --- Azure Container Registry ---------------------------------------------------------------------------------------


def test_an_azure_registry_is_rewritten_under_its_prefix() -> None:
    rules = Rules(config(ACR))
    decision = rules.decide(f"acmecorp.azurecr.io/team/app:1.0@{SHA256}")
    assert (decision.reason, decision.tier) == (Reason.REWRITTEN, "acme-acr")
    assert decision.result == f"{REGISTRY}/acr/team/app:1.0@{SHA256}"
    # Another Azure registry is not this tier's: it has no rule.
    assert rules.decide("othercorp.azurecr.io/team/app").reason == Reason.NO_RULE
    # A host that merely starts like it is another host.
    assert rules.decide("acmecorp.azurecr.io.evil.example/app").reason == Reason.NO_RULE


@pytest.mark.parametrize(
    "host",
    [
        "acme.azurecr.io",  # Azure registry names are 5-50 characters
        "acme-corp.azurecr.io",  # letters and digits only
        "acmecorp.azurecr.io.evil.example",
        "acmecorp.azurecr.cn",
        "https://acmecorp.azurecr.io",
        "acmecorp.azurecr.io/team",
        CENTRAL,  # an ECR host under the Azure kind
    ],
)
def test_azure_hosts_of_another_shape_are_refused(host: str) -> None:
    message = error({**ACR, "host": host})
    assert "config key `upstreams.0.host`" in message
    assert "is not a azure-container-registry host; expected <name>.azurecr.io" in message


def test_the_host_is_lowercased() -> None:
    assert config({**ACR, "host": "AcmeCorp.AzureCR.io"}).upstreams[0].host == "acmecorp.azurecr.io"


# --- ECR to ECR -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("configured", CENTRAL_FORMS)
def test_an_ecr_upstream_claims_every_host_of_its_registry(configured: str) -> None:
    rules = Rules(config({**ECR, "host": configured}))
    tier = rules.config.tier("central-ecr")
    assert tier.hosts == CENTRAL_FORMS
    assert tier.upstream_registry_url == CENTRAL  # the form ECR's rule takes
    for host in CENTRAL_FORMS:
        decision = rules.decide(f"{host}/platform/api:v2")
        assert (decision.reason, decision.tier) == (Reason.REWRITTEN, "central-ecr"), host
        assert decision.result == f"{REGISTRY}/use1/platform/api:v2"


@pytest.mark.parametrize("pattern_host", CENTRAL_FORMS)
def test_patterns_name_an_ecr_upstream_by_any_of_its_hosts(pattern_host: str) -> None:
    # Patterns are normalised with the config's tiers: every host form of the upstream is one repository.
    rules = Rules(config(ECR, exclude=[f"{pattern_host}/platform/**"]))
    for host in CENTRAL_FORMS:
        assert rules.decide(f"{host}/platform/api:v2").reason is Reason.EXCLUDED, host
        assert rules.decide(f"{host}/other/api:v2").reason is Reason.REWRITTEN, host


def test_an_ecr_upstream_opts_out_that_registry_only() -> None:
    rules = Rules(config(ECR))
    assert rules.decide("111122223333.dkr.ecr.eu-west-1.amazonaws.com/api").reason == Reason.ECR_REGISTRY
    assert rules.decide("444455556666.dkr.ecr.us-east-1.amazonaws.com/api").reason == Reason.ECR_REGISTRY
    assert rules.decide("602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/coredns").reason == Reason.EKS_ADDON_REGISTRY
    assert rules.decide("public.ecr.aws/karpenter/controller").reason == Reason.PUBLIC_ECR
    assert rules.decide(f"{REGISTRY}/use1/platform/api").reason == Reason.ALREADY_CACHED


def test_a_defined_but_disabled_ecr_upstream_names_its_tier() -> None:
    rules = Rules(parse_config({"registry": REGISTRY, "upstreams": [ECR]}))
    decision = rules.decide(f"{CENTRAL}/api")
    assert (decision.reason, decision.tier) == (Reason.TIER_DISABLED, "central-ecr")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("111122223333.dkr.ecr.us-east-1.amazonaws.com.cn", "is not a ecr host"),
        ("111122223333.dkr.ecr.us-east-1.on.aws", "is not a ecr host"),  # dual-stack is dkr-ecr
        ("111122223333.dkr-ecr.us-east-1.amazonaws.com", "is not a ecr host"),
        ("11112222333.dkr.ecr.us-east-1.amazonaws.com", "is not a ecr host"),
        ("111122223333.dkr.ecr.useast1.amazonaws.com", "is not a ecr host"),
        ("602401143452.dkr.ecr.us-east-1.amazonaws.com", "is an AWS-owned EKS add-on registry"),
        ("public.ecr.aws", "public.ecr.aws is never cached"),
        ("quay.io", "is the built-in tier 'quay''s host; list that in `tiers`"),
    ],
)
def test_ecr_hosts_of_another_shape_or_owner_are_refused(host: str, expected: str) -> None:
    message = error({**ECR, "host": host})
    assert "config key `upstreams.0.host`" in message
    assert expected in message


@pytest.mark.parametrize("host", [REGISTRY, "123456789012.dkr-ecr.eu-west-1.on.aws"])
def test_the_cache_registry_is_never_its_own_upstream(host: str) -> None:
    message = error({**ECR, "host": host})
    assert "config key `upstreams`: upstreams[0] ('central-ecr')" in message
    assert "is the cache registry itself (`registry`)" in message


# --- names, hosts and prefixes: each once ---------------------------------------------------------------------------


def test_a_name_is_a_new_tier_name() -> None:
    assert "'quay' is a built-in tier; give the upstream a name of its own" in error({**ACR, "name": "quay"})
    assert "'Acme_ACR' is not a tier name" in error({**ACR, "name": "Acme_ACR"})
    message = error(ACR, {**ECR, "name": "acme-acr"})
    assert "upstreams[1] ('acme-acr'): the name 'acme-acr' is used twice" in message


def test_a_registry_is_one_upstream_whatever_host_form_names_it() -> None:
    message = error(ECR, {**ECR, "name": "fips-ecr", "host": CENTRAL_FORMS[3], "prefix": "fips"})
    assert f"upstreams[1] ('fips-ecr'): the registry {CENTRAL_FORMS[3]} is already the upstream of 'central-ecr'" in (
        message
    )


def test_unknown_upstream_registry_lists_the_kinds_and_points_at_built_in_tiers() -> None:
    message = error({**ACR, "upstreamRegistry": "quay"})
    assert "config key `upstreams.0.upstreamRegistry`: unknown upstream registry 'quay' (quay is the built-in tier" in (
        message
    )
    assert f"known: {', '.join(UPSTREAM_KINDS)}" in message


def test_missing_and_unknown_keys_of_an_upstream() -> None:
    message = error({key: value for key, value in ACR.items() if key != "prefix"})
    assert "config key `upstreams.0.prefix`: required" in message
    message = error({**ACR, "credential": "x"})
    assert "config key `upstreams.0.credential`: unknown key; known keys: name, upstreamRegistry, host, prefix" in (
        message
    )


@pytest.mark.parametrize(
    ("upstreams", "keys", "expected"),
    [
        ([{**ACR, "prefix": "quay"}], {}, "tiers 'quay' and 'acme-acr' share the prefix 'quay'"),
        ([{**ACR, "prefix": "chainguard"}], {}, "tiers 'chainguard' and 'acme-acr' share the prefix 'chainguard'"),
        ([ACR, {**ECR, "prefix": "acr"}], {}, "tiers 'acme-acr' and 'central-ecr' share the prefix 'acr'"),
        (
            [{**ACR, "prefix": "quay/acr"}],
            {},
            "the prefixes 'quay' (tier 'quay') and 'quay/acr' (tier 'acme-acr') nest",
        ),
        ([ACR], {"prefixes": {"docker-hub": "acr"}}, "tiers 'docker-hub' and 'acme-acr' share the prefix 'acr'"),
    ],
)
def test_prefixes_are_distinct_and_not_nested_across_every_tier(
    upstreams: list[dict[str, Any]], keys: dict[str, Any], expected: str
) -> None:
    assert expected in error(*upstreams, **keys)


@pytest.mark.parametrize("prefix", ["a", "ACR", "acr/", "x" * 31])
def test_an_upstream_prefix_is_an_ecr_prefix(prefix: str) -> None:
    message = error({**ACR, "prefix": prefix})
    assert f"config key `upstreams.0.prefix`: prefix {prefix!r} for this upstream is not a valid ECR repository" in (
        message
    )


def test_a_built_in_prefix_moved_away_frees_its_name() -> None:
    chosen = config({**ACR, "prefix": "quay"}, prefixes={"quay": "quay-io"})
    assert (chosen.prefix_for("quay"), chosen.prefix_for("acme-acr")) == ("quay-io", "quay")


def test_an_upstreams_prefix_is_set_in_its_entry_not_in_prefixes() -> None:
    message = error(ACR, prefixes={"acme-acr": "other"})
    assert "config key `prefixes`: tier 'acme-acr' is defined in `upstreams`: set its prefix there" in message


def test_tiers_know_the_upstreams_names() -> None:
    message = error(ACR, tiers=["quay", "acme"])
    assert re.search(r"config key `tiers`: unknown tier 'acme'; known: quay, .*, chainguard, acme-acr$", message)


def test_a_broken_upstream_is_reported_once_not_again_under_tiers() -> None:
    message = error({**ACR, "host": "nope"})
    assert message.count("config key") == 1
