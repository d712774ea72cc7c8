"""The boto3 backend against botocore's Stubber: every request is checked against the real ECR, Secrets Manager and
STS service models (an unknown parameter or a wrong shape fails), and error codes become actionable messages."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ParamValidationError
from botocore.stub import Stubber
from provision.provision_fakes import (
    ACCOUNT,
    CENTRAL,
    NEW_KINDS,
    UPSTREAM_ROLE,
    aws_sandbox,
    make_config,
    new_kinds_config,
    secret_arn,
)

from webhook.provision import AwsError, ConflictError, LocationError, Provisioner, QuotaError, SecretError
from webhook.provision.aws import AwsBackend, session
from webhook.provision.desired import MANAGED_BY, lifecycle_policy
from webhook.provision.policy import merge_policy, registry_statements
from webhook.provision.resources import CacheRule, CreationTemplate, Location

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

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
        ("LimitExceededException", QuotaError, "quota of pull-through cache rules (50 per registry, not adjustable)"),
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
    # Without `tags` in the config an update leaves the template's tags alone; with `tags: {}` it clears them.
    stubs.ecr_stub.add_response("update_repository_creation_template", {}, base)
    stubs.ecr_stub.add_response("update_repository_creation_template", {}, {**base, "resourceTags": []})
    stubs.ecr_stub.add_client_error(
        "delete_repository_creation_template", "TemplateNotFoundException", "gone", 400, {"prefix": "quay"}
    )
    stubs.backend.create_template(TEMPLATE)
    stubs.backend.create_template(tagged)
    stubs.backend.update_template(TEMPLATE)
    stubs.backend.update_template(replace(TEMPLATE, resource_tags=()))
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
    stubs.ecr_stub.add_response(
        "get_account_setting", {"name": "REGISTRY_POLICY_SCOPE", "value": "V2"}, {"name": "REGISTRY_POLICY_SCOPE"}
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


def caller_identity(stubs: Stubs) -> None:
    stubs.sts_stub.add_response(
        "get_caller_identity", {"Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:user/ci", "UserId": "AIDAEXAMPLE"}
    )


def docker_hub_secret(stubs: Stubs) -> None:
    stubs.secrets_stub.add_response(
        "describe_secret", {"ARN": DOCKER_ARN, "Name": DOCKER_CREDENTIAL}, {"SecretId": DOCKER_CREDENTIAL}
    )
    stubs.secrets_stub.add_response(
        "get_secret_value",
        {"ARN": DOCKER_ARN, "SecretString": '{"username": "bot", "accessToken": "x"}'},
        {"SecretId": DOCKER_ARN},
    )


def policy_scope(stubs: Stubs, value: str) -> None:
    stubs.ecr_stub.add_response(
        "get_account_setting", {"name": "REGISTRY_POLICY_SCOPE", "value": value}, {"name": "REGISTRY_POLICY_SCOPE"}
    )


def test_registry_policy_scope_comes_from_get_account_setting(stubs: Stubs) -> None:
    policy_scope(stubs, "V1")
    assert stubs.backend.registry_policy_scope() == "V1"


def test_v1_policy_scope_stops_plan_before_the_registry_is_read(stubs: Stubs) -> None:
    caller_identity(stubs)
    policy_scope(stubs, "V1")
    config = make_config(tiers=("quay",), provision={"principals": {"organizationId": "o-a1b2c3d4e5"}})
    with pytest.raises(ConflictError, match=r"aws ecr put-account-setting --name REGISTRY_POLICY_SCOPE --value V2"):
        Provisioner(stubs.backend, config).plan()


def test_observe_keeps_what_ecr_says_about_the_upstream(stubs: Stubs) -> None:
    stubs.ecr_stub.add_response(
        "describe_pull_through_cache_rules",
        {
            "pullThroughCacheRules": [
                {"ecrRepositoryPrefix": "quay", "upstreamRegistryUrl": "quay.io", "upstreamRepositoryPrefix": "ROOT"},
                {
                    "ecrRepositoryPrefix": "k8s",
                    "upstreamRegistryUrl": "registry.k8s.io",
                    "upstreamRegistry": "k8s",
                    "upstreamRepositoryPrefix": "kube-proxy",
                },
            ]
        },
    )
    stubs.ecr_stub.add_response("describe_repository_creation_templates", {"repositoryCreationTemplates": []})
    stubs.ecr_stub.add_client_error("get_registry_policy", "RegistryPolicyNotFoundException", "none", 400)
    assert stubs.backend.observe().rules == (
        CacheRule("quay", None, "quay.io", None, "ROOT"),
        CacheRule("k8s", "k8s", "registry.k8s.io", None, "kube-proxy"),
    )


@pytest.mark.parametrize(
    ("operation", "call", "error", "message"),
    [
        (
            "create_repository_creation_template",
            lambda backend: backend.create_template(TEMPLATE),
            QuotaError,
            "quota of repository creation templates",
        ),
        (
            "update_repository_creation_template",
            lambda backend: backend.update_template(TEMPLATE),
            AwsError,
            "UpdateRepositoryCreationTemplate failed: LimitExceeded",
        ),
        (
            "put_registry_policy",
            lambda backend: backend.put_policy("{}"),
            AwsError,
            "ecr:PutRegistryPolicy failed: LimitExceededException",
        ),
    ],
)
def test_limit_exceeded_means_the_quota_of_the_operation(
    stubs: Stubs, operation: str, call: Callable[[AwsBackend], None], error: type[Exception], message: str
) -> None:
    stubs.ecr_stub.add_client_error(operation, "LimitExceededException", "too many", 400)
    with pytest.raises(error) as raised:
        call(stubs.backend)
    assert message in str(raised.value)
    assert "pull-through cache rules" not in str(raised.value)


def test_secrets_manager_errors_stay_secret_errors(stubs: Stubs) -> None:
    stubs.secrets_stub.add_response("describe_secret", {"ARN": DOCKER_ARN, "Name": DOCKER_CREDENTIAL})
    stubs.secrets_stub.add_client_error("get_secret_value", "LimitExceededException", "slow down", 400)
    with pytest.raises(SecretError) as raised:
        stubs.backend.credential(DOCKER_CREDENTIAL)
    assert str(raised.value).startswith(f"secret {DOCKER_CREDENTIAL}: secretsmanager:GetSecretValue failed: ")
    assert "quota" not in str(raised.value)


def verify_stubs(stubs: Stubs) -> None:
    """What verify reads for a docker-hub tier that matches the config."""
    caller_identity(stubs)
    rule = {
        "ecrRepositoryPrefix": "docker-hub",
        "upstreamRegistryUrl": "registry-1.docker.io",
        "upstreamRegistry": "docker-hub",
        "credentialArn": DOCKER_ARN,
    }
    stubs.ecr_stub.add_response("describe_pull_through_cache_rules", {"pullThroughCacheRules": [rule]})
    template = {
        "prefix": "docker-hub",
        "description": f"{MANAGED_BY}: pull-through cache of registry-1.docker.io",
        "appliedFor": ["PULL_THROUGH_CACHE"],
        "imageTagMutability": "MUTABLE",
        "lifecyclePolicy": lifecycle_policy(30),
    }
    stubs.ecr_stub.add_response("describe_repository_creation_templates", {"repositoryCreationTemplates": [template]})
    stubs.ecr_stub.add_client_error("get_registry_policy", "RegistryPolicyNotFoundException", "none", 400)
    docker_hub_secret(stubs)


def test_verify_reports_access_denied_on_validation_as_a_failed_check(stubs: Stubs) -> None:
    verify_stubs(stubs)
    stubs.ecr_stub.add_client_error(
        "validate_pull_through_cache_rule", "AccessDeniedException", "not authorized to perform", 400
    )
    verification = Provisioner(stubs.backend, make_config(tiers=("docker-hub",))).verify()
    failed = [(check.subject, check.detail) for check in verification.checks if not check.ok]
    assert failed == [
        (
            "ValidatePullThroughCacheRule docker-hub",
            "ecr:ValidatePullThroughCacheRule failed: AccessDeniedException: not authorized to perform",
        )
    ]


def test_verify_turns_ecr_decrypt_failures_into_the_aws_managed_key_advice(stubs: Stubs) -> None:
    verify_stubs(stubs)
    stubs.ecr_stub.add_response(
        "validate_pull_through_cache_rule",
        {"ecrRepositoryPrefix": "docker-hub", "isValid": False, "failure": "UnableToDecryptSecretValue: KMS key"},
    )
    verification = Provisioner(stubs.backend, make_config(tiers=("docker-hub",))).verify()
    (failed,) = [check for check in verification.checks if not check.ok]
    assert failed.detail.endswith("re-create the secret encrypted with the AWS managed key aws/secretsmanager")


def test_apply_then_what_ecr_describes_back_plans_all_no_op(stubs: Stubs) -> None:
    """Round trip: what apply sent, described back the way ECR answers (extra fields, reformatted JSON), is no-op."""
    config = make_config(
        tiers=("quay", "docker-hub"),
        prefixes={"docker-hub": "dockerhub"},
        provision={
            "lifecycleDays": 14,
            "principals": {"accounts": ["111122223333"], "organizationId": "o-a1b2c3d4e5"},
            "tags": {"team": "platform", "cost": "42"},
            "repositoryRoleArn": f"arn:aws:iam::{ACCOUNT}:role/ecr-repository-creation",
        },
    )
    sent: list[tuple[str, dict[str, Any]]] = []
    stubs.ecr.meta.events.register(
        "before-parameter-build.ecr.*",
        lambda params, model, **_: sent.append((model.name, dict(params))),
    )
    caller_identity(stubs)
    docker_hub_secret(stubs)
    policy_scope(stubs, "V2")
    stubs.ecr_stub.add_response("describe_pull_through_cache_rules", {"pullThroughCacheRules": []})
    stubs.ecr_stub.add_response("describe_repository_creation_templates", {"repositoryCreationTemplates": []})
    stubs.ecr_stub.add_client_error("get_registry_policy", "RegistryPolicyNotFoundException", "none", 400)
    for operation in ["create_repository_creation_template"] * 2 + ["create_pull_through_cache_rule"] * 2:
        stubs.ecr_stub.add_response(operation, {})
    stubs.ecr_stub.add_response("put_registry_policy", {})
    assert len(Provisioner(stubs.backend, config).apply().changes) == 5
    stubs.ecr_stub.assert_no_pending_responses()

    sent_by = {name: [params for operation, params in sent if operation == name] for name, _ in sent}
    when = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    rules = [
        {**params, "createdAt": when, "updatedAt": when, "registryId": ACCOUNT, "upstreamRepositoryPrefix": "ROOT"}
        for params in sent_by["CreatePullThroughCacheRule"]
    ]
    templates = [
        {
            **params,
            "lifecyclePolicy": json.dumps(json.loads(params["lifecyclePolicy"]), indent=4, sort_keys=True),
            "resourceTags": list(reversed(params["resourceTags"])),
            "encryptionConfiguration": {"encryptionType": "AES256"},
            "createdAt": when,
            "updatedAt": when,
        }
        for params in sent_by["CreateRepositoryCreationTemplate"]
    ]
    (put,) = sent_by["PutRegistryPolicy"]
    document = json.loads(put["policyText"])
    for statement in document["Statement"]:
        statement["Action"] = list(reversed(statement["Action"]))
        statement["Resource"] = list(reversed(statement["Resource"]))
    described_policy = json.dumps(document, sort_keys=True, separators=(",", ":"))

    caller_identity(stubs)
    docker_hub_secret(stubs)
    policy_scope(stubs, "V2")
    stubs.ecr_stub.add_response("describe_pull_through_cache_rules", {"pullThroughCacheRules": rules})
    stubs.ecr_stub.add_response(
        "describe_repository_creation_templates", {"registryId": ACCOUNT, "repositoryCreationTemplates": templates}
    )
    stubs.ecr_stub.add_response("get_registry_policy", {"registryId": ACCOUNT, "policyText": described_policy})
    plan = Provisioner(stubs.backend, config).plan()
    assert [action.kind for action in plan.actions] == ["no-op"] * 5


# --- the new kinds of upstream: chainguard and Azure with secrets, ECR with customRoleArn ----------------------------


def new_kind_secrets(stubs: Stubs) -> None:
    for name in ("ecr-pullthroughcache/chainguard", "ecr-pullthroughcache/acme-acr"):
        stubs.secrets_stub.add_response("describe_secret", {"ARN": secret_arn(name), "Name": name}, {"SecretId": name})
        stubs.secrets_stub.add_response(
            "get_secret_value",
            {"ARN": secret_arn(name), "SecretString": '{"username": "bot", "accessToken": "x"}'},
            {"SecretId": secret_arn(name)},
        )


NEW_KIND_RULES = [
    {
        "ecrRepositoryPrefix": "chainguard",
        "upstreamRegistryUrl": "cgr.dev",
        "upstreamRegistry": "chainguard",
        "credentialArn": secret_arn("ecr-pullthroughcache/chainguard"),
    },
    {
        "ecrRepositoryPrefix": "acr",
        "upstreamRegistryUrl": "acmecorp.azurecr.io",
        "upstreamRegistry": "azure-container-registry",
        "credentialArn": secret_arn("ecr-pullthroughcache/acme-acr"),
    },
    {
        "ecrRepositoryPrefix": "use1",
        "upstreamRegistryUrl": CENTRAL,
        "upstreamRegistry": "ecr",
        "customRoleArn": UPSTREAM_ROLE,
    },
]


def new_kind_template(prefix: str, url: str) -> dict[str, Any]:
    return {
        "prefix": prefix,
        "description": f"{MANAGED_BY}: pull-through cache of {url}",
        "appliedFor": ["PULL_THROUGH_CACHE"],
        "imageTagMutability": "MUTABLE",
        "lifecyclePolicy": lifecycle_policy(30),
    }


NEW_KIND_TEMPLATES = [
    new_kind_template(rule["ecrRepositoryPrefix"], rule["upstreamRegistryUrl"]) for rule in NEW_KIND_RULES
]


def test_apply_creates_the_new_kinds_rules_with_their_secret_or_role(stubs: Stubs) -> None:
    """Every request checked against the ECR model: credentialArn for chainguard and Azure, customRoleArn for ECR."""
    caller_identity(stubs)
    new_kind_secrets(stubs)
    stubs.ecr_stub.add_response("describe_pull_through_cache_rules", {"pullThroughCacheRules": []}, {})
    stubs.ecr_stub.add_response("describe_repository_creation_templates", {"repositoryCreationTemplates": []}, {})
    stubs.ecr_stub.add_client_error("get_registry_policy", "RegistryPolicyNotFoundException", "none", 400)
    for template in NEW_KIND_TEMPLATES:
        stubs.ecr_stub.add_response("create_repository_creation_template", {}, template)
    for rule in NEW_KIND_RULES:
        stubs.ecr_stub.add_response("create_pull_through_cache_rule", {}, rule)
    plan = Provisioner(stubs.backend, new_kinds_config()).apply()
    assert [action.describe() for action in plan.changes][3:] == [
        "+ create pull-through cache rule chainguard (cgr.dev -> chainguard/)",
        "+ create pull-through cache rule acr (acmecorp.azurecr.io -> acr/)",
        f"+ create pull-through cache rule use1 ({CENTRAL} -> use1/)",
    ]
    assert plan.changes[-1].changes == ("upstreamRegistry: ecr", f"customRoleArn: {UPSTREAM_ROLE}")


def registry_holds(stubs: Stubs, rules: list[dict[str, Any]]) -> None:
    """The registry's answers to observe: these rules, the new kinds' templates, no registry policy."""
    stubs.ecr_stub.add_response("describe_pull_through_cache_rules", {"pullThroughCacheRules": rules})
    stubs.ecr_stub.add_response(
        "describe_repository_creation_templates", {"repositoryCreationTemplates": NEW_KIND_TEMPLATES}
    )
    stubs.ecr_stub.add_client_error("get_registry_policy", "RegistryPolicyNotFoundException", "none", 400)


def test_the_new_kinds_described_back_plan_no_op_and_a_new_role_is_an_update(stubs: Stubs) -> None:
    described = [{**rule, "registryId": ACCOUNT, "upstreamRepositoryPrefix": "ROOT"} for rule in NEW_KIND_RULES]
    caller_identity(stubs)
    new_kind_secrets(stubs)
    registry_holds(stubs, described)
    assert {action.kind for action in Provisioner(stubs.backend, new_kinds_config()).plan().actions} == {"no-op"}

    other_role = f"arn:aws:iam::{ACCOUNT}:role/ecr-ptc-upstream-v2"
    provision = {**NEW_KINDS["provision"], "upstreamRoles": {"central-ecr": other_role}}
    caller_identity(stubs)
    new_kind_secrets(stubs)
    registry_holds(stubs, described)
    stubs.ecr_stub.add_response(
        "update_pull_through_cache_rule", {}, {"ecrRepositoryPrefix": "use1", "customRoleArn": other_role}
    )
    plan = Provisioner(stubs.backend, new_kinds_config(provision=provision)).apply()
    (update,) = plan.changes
    assert update.changes == (f"customRoleArn: {UPSTREAM_ROLE} -> {other_role}",)


def test_verify_validates_the_ecr_rule_and_points_at_the_role_policies(stubs: Stubs) -> None:
    described = [{**rule, "registryId": ACCOUNT} for rule in NEW_KIND_RULES]
    caller_identity(stubs)
    registry_holds(stubs, described)
    new_kind_secrets(stubs)
    for prefix in ("chainguard", "acr"):
        stubs.ecr_stub.add_response(
            "validate_pull_through_cache_rule",
            {"ecrRepositoryPrefix": prefix, "isValid": True},
            {"ecrRepositoryPrefix": prefix},
        )
    stubs.ecr_stub.add_response(
        "validate_pull_through_cache_rule",
        {"ecrRepositoryPrefix": "use1", "isValid": False, "failure": "AccessDenied: sts:AssumeRole"},
        {"ecrRepositoryPrefix": "use1"},
    )
    verification = Provisioner(stubs.backend, new_kinds_config()).verify()
    (failed,) = [check for check in verification.checks if not check.ok]
    assert failed.subject == "ValidatePullThroughCacheRule use1"
    assert "check the role's trust and permissions policies and the upstream registry's policy" in failed.detail
    assert sum(1 for check in verification.checks if check.ok) == 10  # secrets 2, rules 3, templates 3, validations 2
