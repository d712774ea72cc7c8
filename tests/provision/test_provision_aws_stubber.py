"""The boto3 backend against botocore's Stubber: every request is checked against the real ECR, Secrets Manager and
STS service models (an unknown parameter or a wrong shape fails), and error codes become actionable messages."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.exceptions import ParamValidationError
from botocore.stub import Stubber
from provision.provision_fakes import ACCOUNT, aws_sandbox, make_config, secret_arn

from webhook.provision import AwsError, ConflictError, LocationError, Provisioner, QuotaError, SecretError
from webhook.provision.aws import AwsBackend, session
from webhook.provision.desired import MANAGED_BY, lifecycle_policy
from webhook.provision.policy import merge_policy, registry_statements
from webhook.provision.resources import CacheRule, CreationTemplate, Location

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sts import STSClient

DOCKER_CREDENTIAL = "ecr-pullthroughcache/docker-hub"
DOCKER_ARN = secret_arn(DOCKER_CREDENTIAL)
QUAY_RULE = CacheRule("quay", "quay", "quay.io")
DOCKER_RULE = CacheRule("docker-hub", "docker-hub", "registry-1.docker.io", DOCKER_ARN)
TEMPLATE = CreationTemplate(
    "quay", f"{MANAGED_BY}: pull-through cache of quay.io", ("PULL_THROUGH_CACHE",), "MUTABLE", lifecycle_policy(30)
)

pytestmark = pytest.mark.usefixtures(aws_sandbox.__name__)


class Stubs:
    def __init__(self) -> None:
        self.ecr: ECRClient = boto3.client("ecr", region_name="eu-west-1")
        self.secrets: SecretsManagerClient = boto3.client("secretsmanager", region_name="eu-west-1")
        self.sts: STSClient = boto3.client("sts", region_name="eu-west-1")
        self.ecr_stub = Stubber(self.ecr)
        self.secrets_stub = Stubber(self.secrets)
        self.sts_stub = Stubber(self.sts)
        self.backend = AwsBackend(self.ecr, self.secrets, self.sts)

    def all(self) -> tuple[Stubber, ...]:
        return (self.ecr_stub, self.secrets_stub, self.sts_stub)


@pytest.fixture
def stubs() -> Iterator[Stubs]:
    stubs = Stubs()
    for stub in stubs.all():
        stub.activate()
    yield stubs
    for stub in stubs.all():
        stub.assert_no_pending_responses()
        stub.deactivate()


def test_stubber_rejects_what_the_service_model_does_not_know() -> None:
    ecr = boto3.client("ecr", region_name="eu-west-1")
    stub = Stubber(ecr)
    stub.add_response("create_pull_through_cache_rule", {})
    stub.add_response("create_pull_through_cache_rule", {})
    stub.activate()
    with pytest.raises(ParamValidationError, match="Invalid length"):
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="q", upstreamRegistryUrl="quay.io")
    with pytest.raises(ParamValidationError, match="Unknown parameter in input"):
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io", bogus=1)  # type: ignore[call-arg]


def test_observe_pages_through_rules_and_templates(stubs: Stubs) -> None:
    stubs.ecr_stub.add_response(
        "describe_pull_through_cache_rules",
        {
            "pullThroughCacheRules": [
                {"ecrRepositoryPrefix": "quay", "upstreamRegistryUrl": "quay.io", "upstreamRegistry": "quay"}
            ],
            "nextToken": "page2",
        },
        {},
    )
    stubs.ecr_stub.add_response(
        "describe_pull_through_cache_rules",
        {
            "pullThroughCacheRules": [
                {
                    "ecrRepositoryPrefix": "docker-hub",
                    "upstreamRegistryUrl": "registry-1.docker.io",
                    "upstreamRegistry": "docker-hub",
                    "credentialArn": DOCKER_ARN,
                }
            ]
        },
        {"nextToken": "page2"},
    )
    stubs.ecr_stub.add_response(
        "describe_repository_creation_templates",
        {
            "repositoryCreationTemplates": [
                {
                    "prefix": "quay",
                    "description": TEMPLATE.description,
                    "appliedFor": ["PULL_THROUGH_CACHE"],
                    "imageTagMutability": "MUTABLE",
                    "lifecyclePolicy": lifecycle_policy(30),
                    "resourceTags": [{"Key": "team", "Value": "platform"}],
                }
            ]
        },
        {},
    )
    stubs.ecr_stub.add_client_error("get_registry_policy", "RegistryPolicyNotFoundException", "none", 400, {})
    observed = stubs.backend.observe()
    assert observed.rules == (QUAY_RULE, DOCKER_RULE)
    (template,) = observed.templates
    assert template.resource_tags == (("team", "platform"),)
    assert observed.policy.text is None


def test_create_rule_sends_exactly_the_model_fields(stubs: Stubs) -> None:
    stubs.ecr_stub.add_response(
        "create_pull_through_cache_rule",
        {},
        {"ecrRepositoryPrefix": "quay", "upstreamRegistryUrl": "quay.io", "upstreamRegistry": "quay"},
    )
    stubs.ecr_stub.add_response(
        "create_pull_through_cache_rule",
        {},
        {
            "ecrRepositoryPrefix": "docker-hub",
            "upstreamRegistryUrl": "registry-1.docker.io",
            "upstreamRegistry": "docker-hub",
            "credentialArn": DOCKER_ARN,
        },
    )
    stubs.backend.create_rule(QUAY_RULE)
    stubs.backend.create_rule(DOCKER_RULE)


def test_update_and_delete_rule(stubs: Stubs) -> None:
    stubs.ecr_stub.add_response(
        "update_pull_through_cache_rule", {}, {"ecrRepositoryPrefix": "docker-hub", "credentialArn": DOCKER_ARN}
    )
    stubs.ecr_stub.add_response("delete_pull_through_cache_rule", {}, {"ecrRepositoryPrefix": "quay"})
    stubs.ecr_stub.add_client_error(
        "delete_pull_through_cache_rule",
        "PullThroughCacheRuleNotFoundException",
        "gone",
        400,
        {"ecrRepositoryPrefix": "quay"},
    )
    stubs.backend.update_rule(DOCKER_RULE)
    stubs.backend.delete_rule(QUAY_RULE)
    stubs.backend.delete_rule(QUAY_RULE)  # already gone: fine, a re-run after a partial destroy


@pytest.mark.parametrize(
    ("code", "error", "message"),
    [
        ("LimitExceededException", QuotaError, "quota of pull-through cache rules (50 by default)"),
        ("UnableToDecryptSecretValueException", SecretError, "cannot use customer-managed KMS keys"),
        ("SecretNotFoundException", SecretError, f"ECR cannot find secret {DOCKER_ARN}"),
        ("UnableToAccessSecretException", SecretError, "check the secret's resource policy"),
        ("PullThroughCacheRuleAlreadyExistsException", ConflictError, "run plan again"),
        ("UnsupportedUpstreamRegistryException", LocationError, "does not support that upstream registry"),
        ("ServerException", AwsError, "ecr:CreatePullThroughCacheRule failed: ServerException: boom"),
    ],
)
def test_create_rule_errors_are_actionable(stubs: Stubs, code: str, error: type[Exception], message: str) -> None:
    stubs.ecr_stub.add_client_error("create_pull_through_cache_rule", code, "boom", 400)
    with pytest.raises(error) as raised:
        stubs.backend.create_rule(DOCKER_RULE)
    assert message in str(raised.value)


def test_templates_create_update_delete(stubs: Stubs) -> None:
    tagged = CreationTemplate(
        "quay",
        TEMPLATE.description,
        ("PULL_THROUGH_CACHE",),
        "MUTABLE",
        lifecycle_policy(30),
        (("team", "platform"),),
        "arn:aws:iam::123456789012:role/ecr-repository-creation",
    )
    base = {
        "prefix": "quay",
        "description": TEMPLATE.description,
        "appliedFor": ["PULL_THROUGH_CACHE"],
        "imageTagMutability": "MUTABLE",
        "lifecyclePolicy": lifecycle_policy(30),
    }
    stubs.ecr_stub.add_response("create_repository_creation_template", {}, base)
    stubs.ecr_stub.add_response(
        "create_repository_creation_template",
        {},
        {**base, "resourceTags": [{"Key": "team", "Value": "platform"}], "customRoleArn": tagged.custom_role_arn},
    )
    # An update sends the whole tag list, so tags dropped from the config leave the template.
    stubs.ecr_stub.add_response("update_repository_creation_template", {}, {**base, "resourceTags": []})
    stubs.ecr_stub.add_client_error(
        "delete_repository_creation_template", "TemplateNotFoundException", "gone", 400, {"prefix": "quay"}
    )
    stubs.backend.create_template(TEMPLATE)
    stubs.backend.create_template(tagged)
    stubs.backend.update_template(TEMPLATE)
    stubs.backend.delete_template(TEMPLATE)


def test_validate_rule(stubs: Stubs) -> None:
    stubs.ecr_stub.add_response(
        "validate_pull_through_cache_rule",
        {"ecrRepositoryPrefix": "docker-hub", "isValid": False, "failure": "401 from upstream"},
        {"ecrRepositoryPrefix": "docker-hub"},
    )
    result = stubs.backend.validate_rule("docker-hub")
    assert (result.valid, result.failure) == (False, "401 from upstream")


def test_registry_policy_calls(stubs: Stubs) -> None:
    text = json.dumps({"Version": "2012-10-17", "Statement": []})
    stubs.ecr_stub.add_response("put_registry_policy", {"policyText": text}, {"policyText": text})
    stubs.ecr_stub.add_client_error("delete_registry_policy", "RegistryPolicyNotFoundException", "none", 400, {})
    stubs.backend.put_policy(text)
    stubs.backend.delete_policy()


def test_missing_secret_says_how_to_create_it(stubs: Stubs) -> None:
    stubs.secrets_stub.add_client_error(
        "describe_secret", "ResourceNotFoundException", "nope", 400, {"SecretId": DOCKER_CREDENTIAL}
    )
    with pytest.raises(SecretError, match=r"not found; create it .* `aws secretsmanager create-secret --name "):
        stubs.backend.credential(DOCKER_CREDENTIAL)


def test_secret_keys_are_read_but_the_value_never_kept(stubs: Stubs) -> None:
    value = json.dumps({"username": "bot", "accessToken": "hunter2-very-secret"})
    stubs.secrets_stub.add_response(
        "describe_secret",
        {"ARN": DOCKER_ARN, "Name": DOCKER_CREDENTIAL, "KmsKeyId": "alias/aws/secretsmanager"},
        {"SecretId": DOCKER_CREDENTIAL},
    )
    stubs.secrets_stub.add_response(
        "get_secret_value", {"ARN": DOCKER_ARN, "SecretString": value}, {"SecretId": DOCKER_ARN}
    )
    credential = stubs.backend.credential(DOCKER_CREDENTIAL)
    assert credential.keys == frozenset({"username", "accessToken"})
    assert "hunter2" not in repr(credential)


def test_undecryptable_secret_is_a_secret_error(stubs: Stubs) -> None:
    stubs.secrets_stub.add_response("describe_secret", {"ARN": DOCKER_ARN, "Name": DOCKER_CREDENTIAL})
    stubs.secrets_stub.add_client_error("get_secret_value", "DecryptionFailure", "kms says no", 400)
    with pytest.raises(SecretError, match="cannot be decrypted with your credentials"):
        stubs.backend.credential(DOCKER_CREDENTIAL)


def test_full_apply_through_the_real_adapter(stubs: Stubs) -> None:
    """Provisioner + AwsBackend: the exact call sequence of a first apply, each request model-checked."""
    stubs.sts_stub.add_response(
        "get_caller_identity", {"Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:user/ci", "UserId": "AIDAEXAMPLE"}
    )
    stubs.ecr_stub.add_response("describe_pull_through_cache_rules", {"pullThroughCacheRules": []}, {})
    stubs.ecr_stub.add_response("describe_repository_creation_templates", {"repositoryCreationTemplates": []}, {})
    stubs.ecr_stub.add_client_error("get_registry_policy", "RegistryPolicyNotFoundException", "none", 400)
    stubs.ecr_stub.add_response(
        "create_repository_creation_template",
        {},
        {
            "prefix": "quay",
            "description": TEMPLATE.description,
            "appliedFor": ["PULL_THROUGH_CACHE"],
            "imageTagMutability": "MUTABLE",
            "lifecyclePolicy": lifecycle_policy(30),
        },
    )
    stubs.ecr_stub.add_response(
        "create_pull_through_cache_rule",
        {},
        {"ecrRepositoryPrefix": "quay", "upstreamRegistryUrl": "quay.io", "upstreamRegistry": "quay"},
    )
    config = make_config(tiers=("quay",), provision={"principals": {"accounts": ["111122223333"]}})
    statements = registry_statements(Location(ACCOUNT, "eu-west-1"), ["quay"], config.settings.principals)
    stubs.ecr_stub.add_response("put_registry_policy", {}, {"policyText": merge_policy(None, statements)})
    plan = Provisioner(stubs.backend, config).apply()
    assert [action.kind for action in plan.changes] == ["create", "create", "create"]


def test_endpoint_overrides_reach_the_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:4566")
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", "http://ecr.internal:5000")
    backend = AwsBackend.from_session(session(None, "eu-west-1"))
    assert backend._ecr.meta.endpoint_url == "http://ecr.internal:5000"
    assert backend._sts.meta.endpoint_url == "http://localhost:4566"
    assert backend._ecr.meta.region_name == "eu-west-1"


def test_unknown_profile_is_one_clear_error() -> None:
    with pytest.raises(Exception, match="cannot start an AWS session"):
        session("no-such-profile", "eu-west-1")


def test_missing_credentials_and_transport_errors_are_one_line() -> None:
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError  # noqa: PLC0415

    from webhook.provision.aws import _calling  # noqa: PLC0415
    from webhook.provision.errors import ProvisionError  # noqa: PLC0415

    with (
        pytest.raises(ProvisionError, match="no AWS credentials found; use --profile"),
        _calling("sts:GetCallerIdentity"),
    ):
        raise NoCredentialsError
    with pytest.raises(ProvisionError, match="Could not connect"), _calling("ecr:DescribePullThroughCacheRules"):
        raise EndpointConnectionError(endpoint_url="http://ecr.internal:5000")
