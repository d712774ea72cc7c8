"""The pure side: settings, desired state, policy merge and the planner, without AWS."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from provision.provision_fakes import ACCOUNT, REGION, REGISTRY, FakeEcr, good_credential, make_config, secret_arn

from webhook.core.registries import TIERS
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


def test_foreign_template_on_our_prefix_is_a_conflict_without_adopt() -> None:
    desired = desired_for(tiers=("quay",))
    foreign = CreationTemplate("quay", "hand-made", ("PULL_THROUGH_CACHE",), "IMMUTABLE", None)
    with pytest.raises(ConflictError) as error:
        plan_apply(desired, ObservedState((), (foreign,)))
    assert str(error.value) == (
        "prefix 'quay': the repository creation template quay/ (description 'hand-made') was not created by "
        "ecr-ptc-webhook; re-run with --adopt to manage it as the config says (destroy and pruning then leave it in "
        "place), or delete it, or choose another prefix in the config's `prefixes`"
    )


def test_adopted_template_is_marked_and_kept_by_destroy_and_pruning() -> None:
    desired = desired_for(tiers=("quay",))
    foreign = CreationTemplate("quay", "hand-made", ("PULL_THROUGH_CACHE",), "IMMUTABLE", None, (("cost", "x"),))
    template_action, rule_action = plan_apply(desired, ObservedState((), (foreign,)), adopt=True).changes
    adopted_template = template_action.resource
    assert isinstance(adopted_template, CreationTemplate)
    assert (
        adopted_template.description == "Managed by ecr-ptc-webhook (adopted: template): pull-through cache of quay.io"
    )
    assert any("(adopts the template)" in change for change in template_action.changes)
    assert "imageTagMutability: IMMUTABLE -> MUTABLE" in template_action.changes
    assert rule_action.describe() == "+ create pull-through cache rule quay (quay.io -> quay/)"
    after = ObservedState(desired.rules, (replace(adopted_template, resource_tags=foreign.resource_tags),))
    # The mark keeps it ours: no --adopt needed again, and the next plan changes nothing.
    assert plan_apply(desired, after).changes == ()
    destroy = plan_destroy(after)
    assert [action.describe() for action in destroy.actions] == [
        "- delete pull-through cache rule quay (quay.io -> quay/)"
    ]
    (warning,) = destroy.warnings
    assert warning == (
        "left in place: repository creation template quay/ existed before ecr-ptc-webhook adopted it (--adopt); "
        "delete it by hand if nothing uses it"
    )
    pruned = plan_apply(desired_for(tiers=("k8s",)), after)
    assert "- delete repository creation template quay/" not in [action.describe() for action in pruned.changes]


def test_foreign_rule_on_our_prefix_is_a_conflict_and_adopting_it_is_recorded() -> None:
    desired = desired_for(tiers=("quay",))
    hand_made = CacheRule("quay", "quay", "quay.io")
    with pytest.raises(ConflictError, match=r"the pull-through cache rule quay \(quay.io -> quay/\) was not created"):
        plan_apply(desired, ObservedState((hand_made,)))
    (template_action,) = plan_apply(desired, ObservedState((hand_made,)), adopt=True).changes
    assert template_action.kind == "create"
    record = template_action.resource
    assert isinstance(record, CreationTemplate)
    assert record.description.startswith("Managed by ecr-ptc-webhook (adopted: rule): ")
    destroy = plan_destroy(ObservedState((hand_made,), (record,)))
    assert [action.describe() for action in destroy.actions] == ["- delete repository creation template quay/"]
    assert destroy.warnings[0].startswith("left in place: pull-through cache rule quay (quay.io -> quay/) existed")


def test_destroy_deletes_no_rule_without_our_template_even_if_the_config_names_it() -> None:
    desired = desired_for(tiers=("quay",))
    assert plan_destroy(ObservedState(desired.rules)).actions == ()


def test_adopting_never_deletes_a_foreign_resource() -> None:
    desired = desired_for(tiers=("quay",))
    with_credential = CacheRule("quay", "quay", "quay.io", secret_arn("ecr-pullthroughcache/quay"))
    with pytest.raises(
        ConflictError, match="was not created by ecr-ptc-webhook and ECR cannot change its credentialArn"
    ):
        plan_apply(desired, ObservedState((with_credential,)), adopt=True)
    role = "arn:aws:iam::123456789012:role/theirs"
    with_role = CreationTemplate("quay", "theirs", ("PULL_THROUGH_CACHE",), "MUTABLE", None, custom_role_arn=role)
    with pytest.raises(ConflictError, match=f"has customRoleArn {role}, which the config does not set"):
        plan_apply(desired, ObservedState((), (with_role,)), adopt=True)


def test_conflicts_of_every_prefix_are_reported_together() -> None:
    desired = desired_for(tiers=("quay", "k8s"))
    observed = ObservedState((CacheRule("quay", "quay", "quay.io"), CacheRule("k8s", "k8s", "registry.k8s.io")))
    with pytest.raises(ConflictError, match=r"prefix 'quay': .*; prefix 'k8s': "):
        plan_apply(desired, observed)


def test_template_tags_are_left_alone_unless_the_config_sets_them() -> None:
    role = "arn:aws:iam::123456789012:role/ecr-create"
    untagged = desired_for(tiers=("quay",), provision={"repositoryRoleArn": role})
    tagged_by_someone = replace(untagged.templates[0], resource_tags=(("cost-center", "42"),))
    assert plan_apply(untagged, ObservedState(untagged.rules, (tagged_by_someone,))).changes == ()
    cleared = desired_for(tiers=("quay",), provision={"repositoryRoleArn": role, "tags": {}})
    (action,) = plan_apply(cleared, ObservedState(cleared.rules, (tagged_by_someone,))).changes
    assert action.changes == ("resourceTags: {'cost-center': '42'} -> {}",)


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
    plan = plan_destroy(observed)
    assert [action.describe() for action in plan.actions] == [
        "- delete pull-through cache rule quay (quay.io -> quay/)",
        "- delete repository creation template quay/",
        "~ update registry permissions policy",
    ]
    assert json.loads(plan.actions[2].resource.text or "")["Statement"] == [FOREIGN]  # type: ignore[union-attr]


def test_quota_warning_beyond_50_rules() -> None:
    taken = tuple(CacheRule(f"other{n}", "quay", "quay.io") for n in range(49))
    plan = plan_apply(desired_for(), ObservedState(taken))
    assert any("would hold 52 pull-through cache rules" in warning for warning in plan.warnings)


# --- property: any starting state converges in one apply, and destroy removes exactly what apply created ------------

TIER_NAMES = [tier.name for tier in TIERS]
ANONYMOUS = {tier.name for tier in TIERS if not tier.needs_credentials}
WITH_SECRET = [tier.name for tier in TIERS if tier.needs_credentials]
rule_state = st.sampled_from(["absent", "correct", "other-secret", "partial-arn"])
template_state = st.sampled_from(["absent", "ours", "ours-drifted", "foreign"])


@settings(max_examples=80, deadline=None)
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
    secrets = {name: f"ecr-pullthroughcache/{name}" for name in tiers if name in WITH_SECRET}
    config = make_config(tiers=tuple(tiers), provision={"secrets": secrets, "principals": {"accounts": accounts}})
    everything = desired_for(
        tiers=tuple(TIER_NAMES),
        provision={"secrets": {name: f"ecr-pullthroughcache/{name}" for name in WITH_SECRET}},
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
    ours_before = {
        template.prefix
        for name, template in zip(TIER_NAMES, everything.templates, strict=True)
        if templates[name] in {"ours", "ours-drifted"}
    }
    foreign_rules = {prefix for prefix in fake.rules if prefix not in ours_before}
    foreign_templates = {p for p, t in fake.templates.items() if t.description == "theirs"}

    provisioner = Provisioner(fake, config)
    # Adopting never deletes: a foreign rule holding a credential that an anonymous tier must drop is a conflict.
    must_conflict = any(
        name in ANONYMOUS and rules[name] == "other-secret" and config.webhook.prefix_for(name) not in ours_before
        for name in tiers
    )
    if must_conflict:
        with pytest.raises(ConflictError, match="was not created by ecr-ptc-webhook and ECR cannot change"):
            provisioner.apply(adopt=True)
        assert fake.mutations == []
        return
    provisioner.apply(adopt=True)

    assert provisioner.plan().changes == ()  # converged, and no --adopt needed any more
    kept = [
        s for s in (parse_policy(fake.policy) or {"Statement": []})["Statement"] if str(s["Sid"]).startswith("Foreign")
    ]
    assert kept == foreign
    # destroy removes exactly what the tool created: what existed without our mark (adopted or not) stays.
    provisioner.destroy()
    assert set(fake.rules) == foreign_rules
    assert set(fake.templates) == foreign_templates
    assert provisioner.plan_destroy().changes == ()


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
    assert "resourceTags: {'team': 'a'} -> (none)" in actions[1].changes


def test_docs_config_example_is_valid() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "provision.md").read_text(encoding="utf-8")
    block = docs.split("```yaml\n", 1)[1].split("```", 1)[0]
    config = parse_provision_config(yaml.safe_load(block))
    assert config.settings.secrets == {"docker-hub": "ecr-pullthroughcache/docker-hub"}


def test_rule_mapping_to_an_upstream_subpath_is_replaced_if_ours_and_a_conflict_if_not() -> None:
    desired = desired_for(tiers=("quay",))
    subpath = replace(desired.rules[0], upstream_repository_prefix="prometheus")
    actions = plan_apply(desired, ObservedState((subpath,), desired.templates)).changes
    assert [action.describe() for action in actions] == [
        "- delete pull-through cache rule quay (quay.io -> quay/)",
        "+ create pull-through cache rule quay (quay.io -> quay/)",
    ]
    assert actions[1].changes == ("upstreamRepositoryPrefix: prometheus -> ROOT",)
    root = replace(desired.rules[0], upstream_repository_prefix="ROOT")
    assert plan_apply(desired, ObservedState((root,), desired.templates)).changes == ()
    with pytest.raises(ConflictError, match=r"cannot change its upstreamRepositoryPrefix in place"):
        plan_apply(desired, ObservedState((subpath,)), adopt=True)


def test_rule_without_upstream_registry_is_compared_by_url_only() -> None:
    desired = desired_for(tiers=("quay", "docker-hub"))
    described = tuple(replace(rule, upstream_registry=None) for rule in desired.rules)
    assert plan_apply(desired, ObservedState(described, desired.templates)).changes == ()


def test_renaming_a_prefix_at_the_rule_quota_deletes_the_old_rule_first() -> None:
    before = desired_for(tiers=("quay",))
    others = tuple(CacheRule(f"other{n}", "quay", "quay.io") for n in range(49))
    after = desired_for(tiers=("quay",), prefixes={"quay": "quayio"})
    plan = plan_apply(after, ObservedState((*others, *before.rules), before.templates))
    assert [action.describe() for action in plan.changes] == [
        "- delete pull-through cache rule quay (quay.io -> quay/)",
        "+ create repository creation template quayio/",
        "+ create pull-through cache rule quayio (quay.io -> quayio/)",
        "- delete repository creation template quay/",
    ]
    assert plan.warnings == ()


def test_quota_warning_counts_the_peak_of_the_run_not_its_end() -> None:
    from webhook.provision.plan import Action, _quota_warnings  # noqa: PLC0415 - the helper under test

    full = ObservedState(tuple(CacheRule(f"other{n}", "quay", "quay.io") for n in range(50)))
    extra = CacheRule("extra", "quay", "quay.io")
    (warning,) = _quota_warnings(full, [Action("create", extra), Action("delete", full.rules[0])])
    assert warning.startswith("the registry would hold 51 pull-through cache rules during this apply")


def test_repository_role_must_be_in_the_registry_account() -> None:
    role = {"repositoryRoleArn": "arn:aws:iam::999999999999:role/ecr-create"}
    with pytest.raises(LocationError, match=r"`provision.repositoryRoleArn`: role .* is in account 999999999999, but"):
        desired_for(provision=role)
    fake = FakeEcr().with_secret()
    with pytest.raises(LocationError, match="registry's account 123456789012"):
        Provisioner(fake, make_config(provision=role)).apply()
    assert fake.mutations == []


def test_v1_registry_policy_scope_stops_plan_when_principals_are_set() -> None:
    fake = FakeEcr(policy_scope="V1").with_secret()
    with pytest.raises(ConflictError) as error:
        Provisioner(fake, make_config(provision={"principals": {"accounts": ["111122223333"]}})).apply()
    assert "policy scope (account setting REGISTRY_POLICY_SCOPE) is V1" in str(error.value)
    assert "`aws ecr put-account-setting --name REGISTRY_POLICY_SCOPE --value V2 --region eu-west-1`" in str(
        error.value
    )
    assert fake.mutations == []
    assert Provisioner(fake, make_config()).apply().changes  # a single-account cache needs no registry policy


def test_an_adopted_rule_deleted_by_hand_is_recreated_as_ours() -> None:
    desired = desired_for(tiers=("quay",))
    record = replace(desired.templates[0], description=f"{MANAGED_BY} (adopted: rule): pull-through cache of quay.io")
    template_action, rule_action = plan_apply(desired, ObservedState((), (record,))).changes
    assert template_action.changes == (f"description: {record.description!r} -> {desired.templates[0].description!r}",)
    assert rule_action.describe() == "+ create pull-through cache rule quay (quay.io -> quay/)"
