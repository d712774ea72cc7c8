"""The boto3 backend against moto, for the APIs moto implements: Secrets Manager, STS, the ECR registry policy and
lifecycle policies. moto has no pull-through cache rules or creation templates: those are Stubber-tested only.

moto validates registry policies with the old V1 scope (only ecr:CreateRepository and ecr:ReplicateImage), while
AWS registries use V2, which allows the pull-through cache actions; so our statements are seeded into moto's state
directly and only the foreign-only result of a merge goes through moto's PutRegistryPolicy.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import boto3
import pytest
from moto import mock_aws
from moto.ecr.models import ecr_backends
from provision.provision_fakes import ACCOUNT, REGION, aws_sandbox, make_config

from webhook.provision import SecretError
from webhook.provision.aws import AwsBackend, session
from webhook.provision.desired import desired_state, lifecycle_policy
from webhook.provision.plan import plan_destroy
from webhook.provision.provisioner import Provisioner, check_credential
from webhook.provision.resources import Location, ObservedState

if TYPE_CHECKING:
    from collections.abc import Iterator

NAME = "ecr-pullthroughcache/docker-hub"
VALUE = '{"username": "bot", "accessToken": "dckr_pat_do-not-print-me"}'
REPLICATION = {
    "Sid": "ReplicationFromProd",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
    "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
    "Resource": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/*",
}

pytestmark = pytest.mark.usefixtures(aws_sandbox.__name__)


@pytest.fixture
def backend() -> Iterator[AwsBackend]:
    with mock_aws():
        yield AwsBackend.from_session(session(None, REGION))


def test_caller_account_comes_from_sts(backend: AwsBackend) -> None:
    assert backend.caller_account() == ACCOUNT


def test_good_secret_passes_and_its_value_is_not_kept(backend: AwsBackend) -> None:
    boto3.client("secretsmanager", region_name=REGION).create_secret(Name=NAME, SecretString=VALUE)
    credential = backend.credential(NAME)
    assert credential.keys == frozenset({"username", "accessToken"})
    assert credential.arn.startswith(f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{NAME}-")
    assert check_credential("docker-hub", credential, Location(ACCOUNT, REGION)) == ()
    assert "do-not-print-me" not in repr(credential)


def test_secret_without_access_token_is_refused_without_showing_the_value(backend: AwsBackend) -> None:
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=NAME, SecretString='{"username": "bot", "password": "do-not-print-me"}'
    )
    with pytest.raises(SecretError, match="lacks accessToken") as error:
        check_credential("docker-hub", backend.credential(NAME), Location(ACCOUNT, REGION))
    assert "do-not-print-me" not in str(error.value)


def test_missing_secret(backend: AwsBackend) -> None:
    with pytest.raises(SecretError, match=f"secret {NAME} not found; create it"):
        backend.credential(NAME)


def test_secret_scheduled_for_deletion(backend: AwsBackend) -> None:
    client = boto3.client("secretsmanager", region_name=REGION)
    client.create_secret(Name=NAME, SecretString=VALUE)
    client.delete_secret(SecretId=NAME, RecoveryWindowInDays=7)
    with pytest.raises(SecretError, match="scheduled for deletion; restore it"):
        backend.credential(NAME)


def test_secret_with_a_customer_managed_key_warns(backend: AwsBackend) -> None:
    key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    boto3.client("secretsmanager", region_name=REGION).create_secret(Name=NAME, SecretString=VALUE, KmsKeyId=key)
    (warning,) = check_credential("docker-hub", backend.credential(NAME), Location(ACCOUNT, REGION))
    assert "customer-managed key" in warning


def test_registry_policy_round_trip_and_absence(backend: AwsBackend) -> None:
    assert backend._policy().text is None
    text = json.dumps({"Version": "2012-10-17", "Statement": [REPLICATION]})
    backend.put_policy(text)
    assert json.loads(backend._policy().text or "") == json.loads(text)
    backend.delete_policy()
    backend.delete_policy()  # already gone: fine
    assert backend._policy().text is None


def test_destroy_puts_back_exactly_the_foreign_statements(backend: AwsBackend) -> None:
    config = make_config(tiers=("quay",), provision={"principals": {"accounts": ["111122223333"]}})
    desired = desired_state(config.webhook, config.settings, Location(ACCOUNT, REGION), {})
    seeded = json.dumps({"Version": "2012-10-17", "Statement": [REPLICATION, *desired.policy_statements]})
    ecr_backends[ACCOUNT][REGION].registry_policy = seeded  # see the module docstring: moto's V1-only validation

    (action,) = plan_destroy(ObservedState(policy=backend._policy())).actions
    assert action.kind == "update"
    backend.put_policy(action.resource.text or "")  # type: ignore[union-attr]
    assert json.loads(backend._policy().text or "")["Statement"] == [REPLICATION]


def test_destroy_deletes_a_policy_that_held_only_ours(backend: AwsBackend) -> None:
    config = make_config(tiers=("quay",), provision={"principals": {"organizationId": "o-a1b2c3d4e5"}})
    desired = desired_state(config.webhook, config.settings, Location(ACCOUNT, REGION), {})
    ecr_backends[ACCOUNT][REGION].registry_policy = json.dumps(
        {"Version": "2012-10-17", "Statement": list(desired.policy_statements)}
    )
    (action,) = plan_destroy(ObservedState(policy=backend._policy())).actions
    assert action.kind == "delete"
    backend.delete_policy()
    assert backend._policy().text is None


def test_our_lifecycle_policy_passes_ecr_validation(backend: AwsBackend) -> None:
    ecr = backend._ecr
    ecr.create_repository(repositoryName="quay/prometheus/node-exporter")
    ecr.put_lifecycle_policy(repositoryName="quay/prometheus/node-exporter", lifecyclePolicyText=lifecycle_policy(30))
    stored = ecr.get_lifecycle_policy(repositoryName="quay/prometheus/node-exporter")["lifecyclePolicyText"]
    assert json.loads(stored) == json.loads(lifecycle_policy(30))


def test_wrong_account_is_refused_by_sts(backend: AwsBackend) -> None:
    config = make_config(registry="210987654321.dkr.ecr.eu-west-1.amazonaws.com")
    with pytest.raises(Exception, match="belong to account 123456789012, but the registry"):
        Provisioner(backend, config).plan()
