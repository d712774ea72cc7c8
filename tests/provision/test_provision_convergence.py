"""The plan/apply loop against the FAKE in-memory ECR: idempotence, partial failure, drift, destroy, verify."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from provision.provision_fakes import ACCOUNT, FakeEcr, make_config, secret_arn

from webhook.provision import ApplyError, AwsError, ConflictError, LocationError, Provisioner, SecretError
from webhook.provision.desired import lifecycle_policy
from webhook.provision.provisioner import Credential
from webhook.provision.resources import CacheRule

PRINCIPALS = {"principals": {"accounts": ["111122223333"]}}
FOREIGN_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Replication",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
                "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
                "Resource": "*",
            }
        ],
    }
)


def test_apply_twice_the_second_is_all_no_op() -> None:
    fake = FakeEcr().with_secret()
    provisioner = Provisioner(fake, make_config(provision=PRINCIPALS))
    first = provisioner.apply()
    assert len(first.changes) == 7  # 3 templates, 3 rules, 1 registry policy
    calls = list(fake.mutations)
    second = provisioner.apply()
    assert second.changes == ()
    assert fake.mutations == calls


def test_failure_mid_apply_then_rerun_converges() -> None:
    fake = FakeEcr(fail_at_mutation=3).with_secret()
    provisioner = Provisioner(fake, make_config())
    with pytest.raises(ApplyError) as error:
        provisioner.apply()
    assert error.value.done == 3
    assert "+ create pull-through cache rule quay" in str(error.value)
    assert "re-run apply" in str(error.value)
    # The templates made it; the rules that would use them did not, and the next plan picks up from there.
    assert [action.describe() for action in provisioner.plan().changes] == [
        "+ create pull-through cache rule quay (quay.io -> quay/)",
        "+ create pull-through cache rule k8s (registry.k8s.io -> k8s/)",
        "+ create pull-through cache rule docker-hub (registry-1.docker.io -> docker-hub/)",
    ]
    provisioner.apply()
    assert provisioner.plan().changes == ()


def test_rule_changed_by_hand_is_drift_that_plan_shows_verify_fails_and_apply_fixes() -> None:
    fake = FakeEcr().with_secret()
    provisioner = Provisioner(fake, make_config())
    provisioner.apply()
    hand_made = secret_arn("ecr-pullthroughcache/someone-elses", "QwErTy")
    fake.rules["docker-hub"] = replace(fake.rules["docker-hub"], credential_arn=hand_made)
    fake.templates["quay"] = replace(fake.templates["quay"], lifecycle_policy=lifecycle_policy(5))

    changes = provisioner.plan().changes
    assert [(action.kind, action.resource.describe()) for action in changes] == [
        ("update", "repository creation template quay/"),
        ("update", "pull-through cache rule docker-hub (registry-1.docker.io -> docker-hub/)"),
    ]
    assert changes[1].changes == (f"credentialArn: {hand_made} -> {secret_arn('ecr-pullthroughcache/docker-hub')}",)
    failed = [check for check in provisioner.verify().checks if not check.ok]
    assert [check.subject for check in failed] == [
        "repository creation template quay/",
        "pull-through cache rule docker-hub (registry-1.docker.io -> docker-hub/)",
    ]
    assert failed[1].detail.startswith("drift: apply would update it; credentialArn: ")

    provisioner.apply()
    assert provisioner.verify().ok


def test_verify_reports_ecr_validation_and_secret_problems_without_raising() -> None:
    fake = FakeEcr().with_secret()
    provisioner = Provisioner(fake, make_config())
    provisioner.apply()
    fake.invalid_rules["docker-hub"] = "upstream returned 401 Unauthorized"
    fake.credentials["ecr-pullthroughcache/docker-hub"] = Credential(
        "ecr-pullthroughcache/docker-hub", secret_arn("ecr-pullthroughcache/docker-hub"), None, frozenset({"username"})
    )
    verification = provisioner.verify()
    assert not verification.ok
    failed = {check.subject: check.detail for check in verification.checks if not check.ok}
    assert set(failed) == {"secret ecr-pullthroughcache/docker-hub", "ValidatePullThroughCacheRule docker-hub"}
    assert "lacks accessToken" in failed["secret ecr-pullthroughcache/docker-hub"]
    assert failed["ValidatePullThroughCacheRule docker-hub"].startswith("upstream returned 401 Unauthorized")


def test_plan_refuses_a_secret_without_the_keys_and_never_shows_its_value() -> None:
    fake = FakeEcr()
    fake.credentials["ecr-pullthroughcache/docker-hub"] = Credential(
        "ecr-pullthroughcache/docker-hub", secret_arn("ecr-pullthroughcache/docker-hub"), None, frozenset({"password"})
    )
    with pytest.raises(SecretError, match="lacks username and accessToken"):
        Provisioner(fake, make_config()).plan()


def test_secret_in_another_region_is_refused() -> None:
    fake = FakeEcr()
    arn = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:ecr-pullthroughcache/docker-hub-AbCdEf"
    fake.credentials["ecr-pullthroughcache/docker-hub"] = Credential(
        "ecr-pullthroughcache/docker-hub", arn, None, frozenset({"username", "accessToken"})
    )
    with pytest.raises(SecretError, match="region us-east-1; ECR needs it in the registry's account"):
        Provisioner(fake, make_config()).plan()


def test_customer_managed_kms_key_is_a_warning() -> None:
    fake = FakeEcr()
    fake.credentials["ecr-pullthroughcache/docker-hub"] = Credential(
        "ecr-pullthroughcache/docker-hub",
        secret_arn("ecr-pullthroughcache/docker-hub"),
        "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        frozenset({"username", "accessToken"}),
    )
    (warning,) = Provisioner(fake, make_config()).plan().warnings
    assert "UnableToDecryptSecretValue" in warning


def test_wrong_account_credentials_are_refused_before_anything_else() -> None:
    fake = FakeEcr(account="999999999999").with_secret()
    with pytest.raises(LocationError, match="belong to account 999999999999, but the registry"):
        Provisioner(fake, make_config()).apply()
    assert fake.mutations == []


def test_destroy_keeps_others_and_is_idempotent() -> None:
    fake = FakeEcr(policy=FOREIGN_POLICY).with_secret()
    fake.rules["ecr-public"] = CacheRule("ecr-public", "ecr-public", "public.ecr.aws")
    config = make_config(provision=PRINCIPALS)
    Provisioner(fake, config).apply()
    assert len(json.loads(fake.policy or "")["Statement"]) == 2

    destroyed = Provisioner(fake, config).destroy()
    assert len(destroyed.changes) == 7
    assert list(fake.rules) == ["ecr-public"]
    assert fake.templates == {}
    assert json.loads(fake.policy or "") == json.loads(FOREIGN_POLICY)
    assert Provisioner(fake, config).plan_destroy().changes == ()


def test_destroy_works_when_the_secret_is_already_gone() -> None:
    fake = FakeEcr().with_secret()
    config = make_config()
    Provisioner(fake, config).apply()
    fake.credentials.clear()
    Provisioner(fake, config).destroy()
    assert fake.rules == {}
    assert fake.templates == {}


def test_removing_the_only_principals_deletes_our_only_statements() -> None:
    fake = FakeEcr().with_secret()
    Provisioner(fake, make_config(provision=PRINCIPALS)).apply()
    assert fake.policy is not None
    plan = Provisioner(fake, make_config()).apply()
    assert [action.describe() for action in plan.changes] == ["- delete registry permissions policy"]
    assert fake.policy is None


def test_verify_reports_aws_errors_of_a_check_instead_of_aborting() -> None:
    fake = FakeEcr().with_secret()
    provisioner = Provisioner(fake, make_config())
    provisioner.apply()
    denied = AwsError("ecr:ValidatePullThroughCacheRule", "AccessDeniedException", "not authorized")
    fake.errors["validate_rule"] = denied
    verification = provisioner.verify()
    failed = {check.subject: check.detail for check in verification.checks if not check.ok}
    assert failed == {"ValidatePullThroughCacheRule docker-hub": str(denied)}
    assert len(verification.checks) > 1  # the other checks still ran and were reported


def test_verify_reports_an_unreadable_registry_as_one_failed_check() -> None:
    fake = FakeEcr().with_secret()
    fake.errors["observe"] = AwsError("ecr:DescribePullThroughCacheRules", "AccessDeniedException", "no")
    (check,) = Provisioner(fake, make_config()).verify().checks
    assert (check.subject, check.ok) == ("registry 123456789012.dkr.ecr.eu-west-1.amazonaws.com", False)
    assert "AccessDeniedException" in check.detail


def test_verify_gives_the_aws_managed_key_advice_when_ecr_cannot_decrypt() -> None:
    fake = FakeEcr().with_secret()
    provisioner = Provisioner(fake, make_config())
    provisioner.apply()
    fake.invalid_rules["docker-hub"] = "Unable to decrypt the secret value using the KMS key"
    (failed,) = [check for check in provisioner.verify().checks if not check.ok]
    assert failed.detail == (
        "Unable to decrypt the secret value using the KMS key; the pull-through cache cannot decrypt secrets under a "
        "customer-managed KMS key: re-create the secret encrypted with the AWS managed key aws/secretsmanager"
    )


def test_verify_checks_the_registry_policy_scope_when_principals_are_set() -> None:
    fake = FakeEcr().with_secret()
    config = make_config(provision=PRINCIPALS)
    Provisioner(fake, config).apply()
    fake.policy_scope = "V1"
    failed = [check for check in Provisioner(fake, config).verify().checks if not check.ok]
    assert [check.subject for check in failed] == ["registry policy scope"]
    assert "put-account-setting --name REGISTRY_POLICY_SCOPE --value V2" in failed[0].detail
    fake.errors["registry_policy_scope"] = AwsError("ecr:GetAccountSetting", "AccessDeniedException", "no")
    failed = [check for check in Provisioner(fake, config).verify().checks if not check.ok]
    assert failed[0].detail == "ecr:GetAccountSetting failed: AccessDeniedException: no"


def test_adopt_takes_over_a_hand_made_rule_and_destroy_gives_it_back() -> None:
    fake = FakeEcr().with_secret()
    hand_made = CacheRule("quay", "quay", "quay.io")
    fake.rules["quay"] = hand_made
    config = make_config()
    with pytest.raises(ConflictError, match="re-run with --adopt"):
        Provisioner(fake, config).apply()
    assert fake.mutations == []
    Provisioner(fake, config).apply(adopt=True)
    assert Provisioner(fake, config).plan().changes == ()
    destroyed = Provisioner(fake, config).destroy()
    assert fake.rules == {"quay": hand_made}
    assert fake.templates == {}
    assert destroyed.warnings[0].startswith("left in place: pull-through cache rule quay (quay.io -> quay/)")
