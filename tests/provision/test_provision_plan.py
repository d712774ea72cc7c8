"""The pure side: settings, desired state, policy merge and the planner, without AWS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from provision.provision_fakes import ACCOUNT, REGION, REGISTRY, FakeEcr, good_credential, make_config, secret_arn

from webhook.exceptions import ConfigError
from webhook.provision import Provisioner, plan_apply, plan_destroy
from webhook.provision.config import load_provision_config, parse_provision_config
from webhook.provision.desired import (
    MANAGED_BY,
    credential_names,
    desired_state,
    lifecycle_policy,
    locate,
)
from webhook.provision.errors import ConflictError, LocationError, SecretError
from webhook.provision.policy import CACHE_ACTIONS, merge_policy, parse_policy
from webhook.provision.resources import CacheRule, CreationTemplate, Location, ObservedState, RegistryPolicy
from webhook.registries import TIERS

LOCATION = Location(ACCOUNT, REGION)
DOCKER_ARN = secret_arn("ecr-pullthroughcache/docker-hub")
FOREIGN = {
    "Sid": "ReplicationFromProd",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
    "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
    "Resource": "arn:aws:ecr:eu-west-1:123456789012:repository/*",
}


def desired_for(**kwargs: Any) -> Any:
    config = make_config(**kwargs)
    arns = {tier: secret_arn(name) for tier, name in credential_names(config.webhook, config.settings).items()}
    return desired_state(config.webhook, config.settings, LOCATION, arns)


# --- settings and config ---------------------------------------------------------------------------------------


def test_example_config_loads() -> None:
    config = load_provision_config(Path(__file__).parents[2] / "examples" / "provision.yaml")
    assert config.webhook.prefix_for("docker-hub") == "dockerhub"
    assert config.settings.lifecycle_days == 30
    assert config.settings.principals.organization_id == "o-a1b2c3d4e5"


def test_provision_section_is_optional_and_defaults_to_30_days() -> None:
    config = parse_provision_config({"registry": REGISTRY})
    assert config.settings.lifecycle_days == 30
    assert config.settings.principals.accounts == ()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"secrets": {"docker-hub": "dockerhub-creds"}}, "must be named ecr-pullthroughcache/..."),
        ({"secrets": {"dockerhub": "ecr-pullthroughcache/x"}}, "unknown tier 'dockerhub'"),
        ({"lifecycleDays": 0}, "provision.lifecycleDays"),
        ({"principals": {"accounts": [111122223333]}}, "quote the 12 digits"),
        ({"principals": {"organizationId": "org-1"}}, "not an AWS Organization ID"),
        ({"tags": {"team": "a"}}, "`tags` needs `repositoryRoleArn`"),
        ({"lifecycle": 3}, "unknown key; known keys of `provision`"),
    ],
)
def test_bad_provision_settings_name_the_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="config key `provision") as error:
        parse_provision_config({"registry": REGISTRY, "provision": section}, source="c.yaml")
    assert message in str(error.value)


def test_webhook_keys_are_validated_by_the_webhook_config() -> None:
    with pytest.raises(ConfigError, match="unknown tier 'dockerhub'"):
        parse_provision_config({"registry": REGISTRY, "tiers": ["dockerhub"]})


@pytest.mark.parametrize(
    ("registry", "region", "message"),
    [
        ("registry.example.com", None, "not a private ECR host"),
        (REGISTRY, "us-east-1", "--region us-east-1 disagrees"),
        ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", None, "no ECR pull-through cache"),
        ("123456789012.dkr.ecr.us-gov-west-1.amazonaws.com", None, "no ECR pull-through cache"),
    ],
)
def test_location_errors(registry: str, region: str | None, message: str) -> None:
    config = parse_provision_config({"registry": registry})
    with pytest.raises(LocationError, match=message):
        locate(config.webhook, region)


def test_opt_in_tier_without_secret_says_how_to_fix() -> None:
    config = make_config(tiers=("ghcr",))
    with pytest.raises(
        SecretError,
        match=r"`provision.secrets.ghcr`.*username and accessToken|username and accessToken.*`provision.secrets.ghcr`",
    ):
        credential_names(config.webhook, config.settings)


def test_secret_on_an_anonymous_tier_is_an_error() -> None:
    config = make_config(tiers=("quay",), provision={"secrets": {"quay": "ecr-pullthroughcache/quay"}})
    with pytest.raises(SecretError, match="pulls anonymously"):
        credential_names(config.webhook, config.settings)


# --- desired state ---------------------------------------------------------------------------------------------


def test_desired_rules_follow_the_tier_table_and_prefixes() -> None:
    desired = desired_for(tiers=("quay", "docker-hub"), prefixes={"docker-hub": "dockerhub"})
    assert desired.rules == (
        CacheRule("quay", "quay", "quay.io"),
        CacheRule("dockerhub", "docker-hub", "registry-1.docker.io", DOCKER_ARN),
    )
    assert [template.prefix for template in desired.templates] == ["quay", "dockerhub"]
    template = desired.templates[0]
    assert template.applied_for == ("PULL_THROUGH_CACHE",)
    assert template.image_tag_mutability == "MUTABLE"
    assert template.description.startswith(MANAGED_BY)


def test_every_tier_upstream_is_an_ecr_enum_value() -> None:
    from botocore.loaders import create_loader  # noqa: PLC0415 - only this test reads the service model
    from botocore.model import ServiceModel, StringShape  # noqa: PLC0415

    shape = ServiceModel(create_loader().load_service_model("ecr", "service-2")).shape_for("UpstreamRegistry")
    assert isinstance(shape, StringShape)
    assert {tier.upstream_registry for tier in TIERS} <= set(shape.enum)


def test_lifecycle_policy_expires_by_push_age() -> None:
    rule = json.loads(lifecycle_policy(14))["rules"][0]
    assert rule["rulePriority"] == 1
    assert rule["selection"] == {
        "tagStatus": "any",
        "countType": "sinceImagePushed",
        "countUnit": "days",
        "countNumber": 14,
    }
    assert rule["action"] == {"type": "expire"}


def test_registry_statements_per_principal_kind() -> None:
    desired = desired_for(provision={"principals": {"accounts": ["111122223333"], "organizationId": "o-a1b2c3d4e5"}})
    accounts, organization = desired.policy_statements
    assert accounts["Sid"] == "EcrPtcWebhookAccounts"
    assert accounts["Principal"] == {"AWS": ["arn:aws:iam::111122223333:root"]}
    assert accounts["Action"] == list(CACHE_ACTIONS)
    assert "arn:aws:ecr:eu-west-1:123456789012:repository/docker-hub/*" in accounts["Resource"]
    assert organization["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}
    assert desired_for().policy_statements == ()


# --- registry policy merge -------------------------------------------------------------------------------------


def test_merge_keeps_foreign_statements_and_replaces_ours_in_place() -> None:
    stale = {
        "Sid": "EcrPtcWebhookAccounts",
        "Effect": "Allow",
        "Principal": {"AWS": "x"},
        "Action": "ecr:*",
        "Resource": "*",
    }
    last = {**FOREIGN, "Sid": "Other"}
    observed = json.dumps({"Version": "2012-10-17", "Id": "keep-me", "Statement": [FOREIGN, stale, last]})
    ours = desired_for(provision={"principals": {"accounts": ["111122223333"]}}).policy_statements
    merged = json.loads(merge_policy(observed, ours) or "")
    assert merged["Id"] == "keep-me"
    assert merged["Statement"] == [FOREIGN, ours[0], last]


def test_merge_deletes_the_policy_only_when_ours_were_alone() -> None:
    ours_only = json.dumps({"Version": "2012-10-17", "Statement": [{"Sid": "EcrPtcWebhookAccounts"}]})
    assert merge_policy(ours_only, ()) is None
    with_foreign = json.dumps({"Version": "2012-10-17", "Statement": FOREIGN})
    assert json.loads(merge_policy(with_foreign, ()) or "")["Statement"] == [FOREIGN]


def test_malformed_policy_is_a_clear_error() -> None:
    with pytest.raises(ConflictError, match="not valid JSON"):
        parse_policy("{nope")


# --- planner ---------------------------------------------------------------------------------------------------


def test_empty_registry_plans_templates_before_rules() -> None:
    plan = plan_apply(desired_for(), ObservedState())
    kinds = [(action.kind, type(action.resource).__name__) for action in plan.actions]
    assert kinds == [("create", "CreationTemplate")] * 3 + [("create", "CacheRule")] * 3
    assert plan.actions[3].describe() == "+ create pull-through cache rule quay (quay.io -> quay/)"
    assert plan.summary() == "Plan: 6 to create, 0 to update, 0 to delete, 0 unchanged."


def test_matching_state_is_all_no_op() -> None:
    desired = desired_for()
    plan = plan_apply(desired, ObservedState(desired.rules, desired.templates))
    assert plan.changes == ()
    assert {action.kind for action in plan.actions} == {"no-op"}


def test_partial_arn_in_a_rule_is_the_same_secret() -> None:
    desired = desired_for()
    partial = tuple(
        CacheRule(rule.prefix, rule.upstream_registry, rule.upstream_registry_url, rule.credential_arn[:-7])
        if rule.credential_arn else rule
        for rule in desired.rules
    )  # fmt: skip
    assert plan_apply(desired, ObservedState(partial, desired.templates)).changes == ()


def test_changed_credential_is_an_update_with_a_field_diff() -> None:
    desired = desired_for()
    other = secret_arn("ecr-pullthroughcache/old", "XyZxYz")
    rules = tuple(
        CacheRule(rule.prefix, rule.upstream_registry, rule.upstream_registry_url, other)
        if rule.credential_arn
        else rule
        for rule in desired.rules
    )
    (action,) = plan_apply(desired, ObservedState(rules, desired.templates)).changes
    assert action.kind == "update"
    assert action.changes == (f"credentialArn: {other} -> {DOCKER_ARN}",)


def test_lifecycle_compared_by_meaning_not_bytes() -> None:
    desired = desired_for(tiers=("quay",))
    (template,) = desired.templates
    reformatted = json.dumps(json.loads(template.lifecycle_policy or ""), indent=4, sort_keys=True)
    same = CreationTemplate(template.prefix, template.description, template.applied_for, "MUTABLE", reformatted)
    assert plan_apply(desired, ObservedState(desired.rules, (same,))).changes == ()
    longer = CreationTemplate(
        template.prefix, template.description, template.applied_for, "MUTABLE", lifecycle_policy(90)
    )
    (action,) = plan_apply(desired, ObservedState(desired.rules, (longer,))).changes
    assert action.kind == "update"
    assert action.changes == (
        (
            "lifecyclePolicy: expire images 90 days after caching (sinceImagePushed) -> "
            "expire images 30 days after caching (sinceImagePushed)"
        ),
    )
    hand_made = CreationTemplate(
        template.prefix, template.description, ("PULL_THROUGH_CACHE",), "MUTABLE", '{"rules":[]}'
    )
    (action,) = plan_apply(desired, ObservedState(desired.rules, (hand_made,))).changes
    assert action.changes[0].startswith('lifecyclePolicy: {"rules":[]} -> expire images 30 days')


def test_foreign_template_on_our_prefix_is_adopted_visibly() -> None:
    desired = desired_for(tiers=("quay",))
    foreign = CreationTemplate("quay", "hand-made", ("PULL_THROUGH_CACHE",), "IMMUTABLE", None)
    (action,) = plan_apply(desired, ObservedState(desired.rules, (foreign,))).changes
    assert any("(adopts the template)" in change for change in action.changes)
    assert "imageTagMutability: IMMUTABLE -> MUTABLE" in action.changes


def test_prefix_taken_by_another_upstream_is_a_conflict() -> None:
    with pytest.raises(ConflictError, match=r"prefix 'quay' is taken .* for ghcr.io, not quay.io; choose another"):
        plan_apply(
            desired_for(tiers=("quay",)), ObservedState((CacheRule("quay", "github-container-registry", "ghcr.io"),))
        )


def test_dropped_tier_is_pruned_only_when_we_own_it() -> None:
    old = desired_for(tiers=("quay", "k8s"))
    new = desired_for(tiers=("quay",))
    plan = plan_apply(new, ObservedState(old.rules, old.templates))
    assert [action.describe() for action in plan.changes] == [
        "- delete pull-through cache rule k8s (registry.k8s.io -> k8s/)",
        "- delete repository creation template k8s/",
    ]
    foreign_template = CreationTemplate("k8s", "hand-made", ("PULL_THROUGH_CACHE",), "MUTABLE", None)
    assert plan_apply(new, ObservedState(old.rules, (old.templates[0], foreign_template))).changes == ()


def test_destroy_removes_only_what_we_own() -> None:
    desired = desired_for(tiers=("quay",), provision={"principals": {"accounts": ["111122223333"]}})
    foreign_rule = CacheRule("ecr-public", "ecr-public", "public.ecr.aws")
    foreign_template = CreationTemplate("ecr-public", "theirs", ("PULL_THROUGH_CACHE",), "MUTABLE", None)
    policy = merge_policy(json.dumps({"Version": "2012-10-17", "Statement": [FOREIGN]}), desired.policy_statements)
    observed = ObservedState(
        (*desired.rules, foreign_rule), (*desired.templates, foreign_template), RegistryPolicy(policy)
    )
    plan = plan_destroy(desired, observed)
    assert [action.describe() for action in plan.actions] == [
        "- delete pull-through cache rule quay (quay.io -> quay/)",
        "- delete repository creation template quay/",
        "~ update registry permissions policy",
    ]
    assert json.loads(plan.actions[2].resource.text or "")["Statement"] == [FOREIGN]  # type: ignore[union-attr]


def test_quota_warning_beyond_50_rules() -> None:
    taken = tuple(CacheRule(f"other{n}", "quay", "quay.io") for n in range(49))
    plan = plan_apply(desired_for(), ObservedState(taken))
    assert any("quota is 50" in warning for warning in plan.warnings)


# --- property: any starting state converges in one apply, and others' things survive --------------------------

TIER_NAMES = [tier.name for tier in TIERS]
rule_state = st.sampled_from(["absent", "correct", "other-secret", "partial-arn"])
template_state = st.sampled_from(["absent", "ours", "ours-drifted", "foreign"])


@settings(max_examples=60, deadline=None)
@given(
    scenario=st.fixed_dictionaries(
        {
            "tiers": st.lists(st.sampled_from(TIER_NAMES), min_size=1, unique=True),
            "rules": st.fixed_dictionaries(dict.fromkeys(TIER_NAMES, rule_state)),
            "templates": st.fixed_dictionaries(dict.fromkeys(TIER_NAMES, template_state)),
            "accounts": st.lists(st.sampled_from(["111122223333", "444455556666"]), unique=True),
            "foreign_statements": st.integers(min_value=0, max_value=2),
            "stale_ours": st.booleans(),
        }
    )
)
def test_one_apply_converges_from_any_state(scenario: dict[str, Any]) -> None:
    tiers: list[str] = scenario["tiers"]
    rules: dict[str, str] = scenario["rules"]
    templates: dict[str, str] = scenario["templates"]
    accounts: list[str] = scenario["accounts"]
    foreign_statements: int = scenario["foreign_statements"]
    stale_ours: bool = scenario["stale_ours"]
    secrets = {name: f"ecr-pullthroughcache/{name}" for name in tiers if name in {"docker-hub", "ghcr", "gitlab"}}
    config = make_config(tiers=tuple(tiers), provision={"secrets": secrets, "principals": {"accounts": accounts}})
    everything = desired_for(
        tiers=tuple(TIER_NAMES),
        provision={"secrets": {name: f"ecr-pullthroughcache/{name}" for name in ("docker-hub", "ghcr", "gitlab")}},
    )
    fake = FakeEcr()
    for name in secrets.values():
        fake.credentials[name] = good_credential(name)
    for name, rule in zip(TIER_NAMES, everything.rules, strict=True):
        if rules[name] == "correct":
            fake.rules[rule.prefix] = rule
        elif rules[name] in {"other-secret", "partial-arn"}:
            arn = (
                secret_arn("ecr-pullthroughcache/old")
                if rules[name] == "other-secret"
                else (rule.credential_arn or "")[:-7]
            )
            fake.rules[rule.prefix] = CacheRule(
                rule.prefix, rule.upstream_registry, rule.upstream_registry_url, arn or None
            )
    for name, template in zip(TIER_NAMES, everything.templates, strict=True):
        if templates[name] == "ours":
            fake.templates[template.prefix] = template
        elif templates[name] == "ours-drifted":
            fake.templates[template.prefix] = CreationTemplate(
                template.prefix, template.description, ("PULL_THROUGH_CACHE",), "IMMUTABLE", lifecycle_policy(7)
            )
        elif templates[name] == "foreign":
            fake.templates[template.prefix] = CreationTemplate(
                template.prefix, "theirs", ("REPLICATION",), "MUTABLE", None
            )
    foreign = [{**FOREIGN, "Sid": f"Foreign{n}"} for n in range(foreign_statements)]
    stale = [{"Sid": "EcrPtcWebhookOld", "Effect": "Allow", "Principal": "*", "Action": "ecr:*", "Resource": "*"}]
    statements = foreign[:1] + (stale if stale_ours else []) + foreign[1:]
    fake.policy = json.dumps({"Version": "2012-10-17", "Statement": statements}) if statements else None
    foreign_templates = {prefix for prefix, template in fake.templates.items() if template.description == "theirs"}

    provisioner = Provisioner(fake, config)
    provisioner.apply()

    assert provisioner.plan().changes == ()
    kept = [
        s for s in (parse_policy(fake.policy) or {"Statement": []})["Statement"] if str(s["Sid"]).startswith("Foreign")
    ]
    assert kept == foreign
    wanted = {config.webhook.prefix_for(name) for name in tiers}
    # Foreign templates outside the config are never touched; ones on our prefixes are adopted.
    assert {p for p in foreign_templates if p not in wanted} <= {
        p for p, t in fake.templates.items() if t.description == "theirs"
    }


def test_rule_that_cannot_be_updated_in_place_is_replaced() -> None:
    desired = desired_for(tiers=("quay",))
    with_credential = CacheRule("quay", "quay", "quay.io", secret_arn("ecr-pullthroughcache/quay"))
    actions = plan_apply(desired, ObservedState((with_credential,), desired.templates)).changes
    assert [action.describe() for action in actions] == [
        "- delete pull-through cache rule quay (quay.io -> quay/)",
        "+ create pull-through cache rule quay (quay.io -> quay/)",
    ]
    assert actions[0].changes == ("replaced: ECR cannot update these fields in place",)


def test_dropping_the_repository_role_replaces_the_template() -> None:
    role = {"tags": {"team": "a"}, "repositoryRoleArn": "arn:aws:iam::123456789012:role/ecr-create"}
    before = desired_for(tiers=("quay",), provision=role)
    after = desired_for(tiers=("quay",))
    actions = plan_apply(after, ObservedState(after.rules, before.templates)).changes
    assert [action.describe() for action in actions] == [
        "- delete repository creation template quay/",
        "+ create repository creation template quay/",
    ]
    assert "resourceTags: {'team': 'a'} -> {}" in actions[1].changes


def test_docs_config_example_is_valid() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "provision.md").read_text(encoding="utf-8")
    block = docs.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_provision_config(yaml.safe_load(block))
    assert config.settings.secrets == {"docker-hub": "ecr-pullthroughcache/docker-hub"}
