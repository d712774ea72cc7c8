"""The provisioner and the new kinds of upstream: which credential each needs, where its role may live, and the
IAM documents ``upstream-policy`` prints (offline, pure)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from provision.provision_fakes import ACCOUNT, CENTRAL, NEW_KINDS, REGION, UPSTREAM_ROLE, new_kinds_config

from webhook.cli import main
from webhook.exceptions import ConfigError
from webhook.provision.desired import credential_names, custom_roles, desired_state, locate, upstream_policies
from webhook.provision.errors import LocationError, RoleError, SecretError

if TYPE_CHECKING:
    from pathlib import Path

SECRETS = {"chainguard": "arn:cg", "acme-acr": "arn:acr"}


def with_provision(**changes: Any) -> dict[str, Any]:
    return {**NEW_KINDS["provision"], **changes}


def with_upstream_host(host: str) -> list[dict[str, Any]]:
    acr, ecr = NEW_KINDS["upstreams"]
    return [acr, {**ecr, "host": host}]


def test_desired_rules_carry_a_secret_or_a_role_by_kind() -> None:
    config = new_kinds_config()
    desired = desired_state(config.webhook, config.settings, locate(config.webhook), SECRETS)
    rules = {
        rule.prefix: (rule.upstream_registry, rule.upstream_registry_url, rule.credential_arn, rule.custom_role_arn)
        for rule in desired.rules
    }
    assert rules == {
        "chainguard": ("chainguard", "cgr.dev", "arn:cg", None),
        "acr": ("azure-container-registry", "acmecorp.azurecr.io", "arn:acr", None),
        "use1": ("ecr", CENTRAL, None, UPSTREAM_ROLE),
    }


def test_the_rule_names_the_standard_host_whatever_form_the_config_uses() -> None:
    config = new_kinds_config(upstreams=with_upstream_host("111122223333.dkr-ecr-fips.us-east-1.on.aws"))
    desired = desired_state(config.webhook, config.settings, locate(config.webhook), SECRETS)
    assert desired.rules[-1].upstream_registry_url == CENTRAL


def test_a_cross_account_ecr_upstream_needs_a_role() -> None:
    config = new_kinds_config(provision=with_provision(upstreamRoles={}))
    with pytest.raises(
        RoleError,
        match=r"is in account 111122223333, not the cache's 123456789012.*`provision\.upstreamRoles\.central-ecr`",
    ):
        custom_roles(config.webhook, config.settings, locate(config.webhook))


def test_the_role_lives_in_the_cache_account() -> None:
    role = "arn:aws:iam::111122223333:role/ecr-ptc-upstream"
    config = new_kinds_config(provision=with_provision(upstreamRoles={"central-ecr": role}))
    with pytest.raises(RoleError, match="ECR assumes it only in the cache registry's account 123456789012"):
        custom_roles(config.webhook, config.settings, locate(config.webhook))


def test_an_ecr_upstream_of_the_same_account_needs_no_role() -> None:
    same_account = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
    config = new_kinds_config(upstreams=with_upstream_host(same_account))
    with pytest.raises(RoleError, match=r"in the cache's own account 123456789012, so ECR needs no role.*remove"):
        custom_roles(config.webhook, config.settings, locate(config.webhook))
    config = new_kinds_config(upstreams=with_upstream_host(same_account), provision=with_provision(upstreamRoles={}))
    assert custom_roles(config.webhook, config.settings, locate(config.webhook)) == {}
    assert upstream_policies(config.webhook, locate(config.webhook)) == []


def test_an_ecr_upstream_of_another_partition_is_refused() -> None:
    config = new_kinds_config(upstreams=with_upstream_host("111122223333.dkr.ecr.us-gov-west-1.amazonaws.com"))
    with pytest.raises(LocationError, match="another AWS partition than the cache's eu-west-1"):
        custom_roles(config.webhook, config.settings, locate(config.webhook))


def test_secret_based_upstreams_need_their_secret_and_the_ecr_one_none() -> None:
    config = new_kinds_config(provision=with_provision(secrets={"chainguard": "ecr-pullthroughcache/chainguard"}))
    with pytest.raises(SecretError, match=re.escape("tier 'acme-acr' needs a credential for acmecorp.azurecr.io")):
        credential_names(config.webhook, config.settings)
    secrets = {**NEW_KINDS["provision"]["secrets"], "central-ecr": "ecr-pullthroughcache/central"}
    config = new_kinds_config(provision=with_provision(secrets=secrets))
    with pytest.raises(
        SecretError, match=r"tier 'central-ecr' pulls through an IAM role \(`provision.upstreamRoles`\)"
    ):
        credential_names(config.webhook, config.settings)


@pytest.mark.parametrize(
    ("provision", "expected"),
    [
        ({"upstreamRoles": {"acme-acr": UPSTREAM_ROLE}}, "'acme-acr' is not an ECR upstream"),
        ({"upstreamRoles": {"central-ecr": "ecr-ptc-upstream"}}, "is not an IAM role ARN"),
        (
            {"secrets": {"acme": "ecr-pullthroughcache/acme"}},
            "unknown tier 'acme'; known: quay, k8s, docker-hub, ghcr, gitlab, chainguard, acme-acr, central-ecr",
        ),
    ],
)
def test_the_provision_section_knows_the_upstreams(provision: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        new_kinds_config(provision=provision)


def test_upstream_policy_prints_the_role_and_the_upstream_grant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(NEW_KINDS), encoding="utf-8")
    assert main(["provision", "upstream-policy", "--config", str(path)]) == 0
    (policy,) = json.loads(capsys.readouterr().out)
    assert (policy["tier"], policy["upstream"]) == ("central-ecr", CENTRAL)
    (trust,) = policy["roleTrustPolicy"]["Statement"]
    assert (trust["Principal"], trust["Action"]) == (
        {"Service": "pullthroughcache.ecr.amazonaws.com"},
        "sts:AssumeRole",
    )
    login, pull = policy["rolePermissionsPolicy"]["Statement"]
    assert (login["Action"], login["Resource"]) == ("ecr:GetAuthorizationToken", "*")
    assert pull["Resource"] == [
        "arn:aws:ecr:us-east-1:111122223333:repository/*",
        f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/use1/*",
    ]
    assert {"ecr:BatchGetImage", "ecr:BatchImportUpstreamImage", "ecr:PutImage"} <= set(pull["Action"])
    grant = policy["upstreamRegistryPolicyStatement"]
    assert grant["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert grant["Resource"] == "arn:aws:ecr:us-east-1:111122223333:repository/*"
    # Not a Sid this tool owns: provisioning the upstream registry with it must not delete the grant.
    assert not grant["Sid"].startswith("EcrPtcWebhook")


def test_upstream_policy_without_a_cross_account_upstream_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {**NEW_KINDS, "tiers": ["chainguard", "acme-acr"], "provision": with_provision(upstreamRoles={})}
        ),
        encoding="utf-8",
    )
    assert main(["provision", "upstream-policy", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "no enabled ECR upstream is in another account" in err
