"""The boto3 backend: ECR, Secrets Manager and STS calls, with AWS errors turned into actionable messages.

Clients come from a :class:`boto3.Session`, so ``AWS_PROFILE``, ``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_ECR``
and the rest of boto3's configuration apply as they do for any AWS tool.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from webhook.provision.errors import AwsError, ConflictError, LocationError, ProvisionError, QuotaError, SecretError
from webhook.provision.provisioner import Credential, RuleValidation
from webhook.provision.resources import (
    REGISTRY_POLICY_SCOPE,
    CacheRule,
    CreationTemplate,
    ObservedState,
    RegistryPolicy,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_ecr.type_defs import PullThroughCacheRuleTypeDef, RepositoryCreationTemplateTypeDef
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sts import STSClient

_HOW_TO_CREATE: Final = (
    "create it in the registry's account and region with "
    "`aws secretsmanager create-secret --name {name} --secret-string "
    '\'{{"username":"...","accessToken":"..."}}\'`'
)


def session(profile: str | None, region: str) -> boto3.Session:
    """A boto3 session for ``region``, with ``profile`` if given (else the usual credential chain)."""
    try:
        return boto3.Session(profile_name=profile, region_name=region)
    except BotoCoreError as error:
        raise ProvisionError(f"cannot start an AWS session: {error}") from None


class AwsBackend:
    """The provisioner's :class:`~webhook.provision.provisioner.Backend` on real (or ECR-compatible) endpoints."""

    def __init__(self, ecr: ECRClient, secrets: SecretsManagerClient, sts: STSClient) -> None:
        """Use these clients (tests pass stubbed ones)."""
        self._ecr = ecr
        self._secrets = secrets
        self._sts = sts

    @classmethod
    def from_session(cls, aws: boto3.Session) -> AwsBackend:
        """Clients for ECR, Secrets Manager and STS from one session."""
        return cls(aws.client("ecr"), aws.client("secretsmanager"), aws.client("sts"))

    def caller_account(self) -> str:
        """sts:GetCallerIdentity's account."""
        with _calling("sts:GetCallerIdentity"):
            return self._sts.get_caller_identity()["Account"]

    def observe(self) -> ObservedState:
        """Every pull-through cache rule and creation template, and the registry policy."""
        with _calling("ecr:DescribePullThroughCacheRules"):
            rules = tuple(
                _rule(item)
                for page in self._ecr.get_paginator("describe_pull_through_cache_rules").paginate()
                for item in page.get("pullThroughCacheRules", [])
            )
        with _calling("ecr:DescribeRepositoryCreationTemplates"):
            templates = tuple(
                _template(item)
                for page in self._ecr.get_paginator("describe_repository_creation_templates").paginate()
                for item in page.get("repositoryCreationTemplates", [])
            )
        return ObservedState(rules=rules, templates=templates, policy=self._policy())

    def _policy(self) -> RegistryPolicy:
        try:
            with _calling("ecr:GetRegistryPolicy"):
                return RegistryPolicy(self._ecr.get_registry_policy().get("policyText"))
        except AwsError as error:
            if error.code == "RegistryPolicyNotFoundException":
                return RegistryPolicy(None)
            raise

    def registry_policy_scope(self) -> str:
        """GetAccountSetting REGISTRY_POLICY_SCOPE (``V1`` or ``V2``)."""
        with _calling("ecr:GetAccountSetting"):
            return self._ecr.get_account_setting(name=REGISTRY_POLICY_SCOPE)["value"]

    def credential(self, name: str) -> Credential:
        """DescribeSecret and GetSecretValue; keeps only the JSON keys of the value, never the value."""
        try:
            with _calling("secretsmanager:DescribeSecret"):
                described = self._secrets.describe_secret(SecretId=name)
            if "DeletedDate" in described:
                raise SecretError(
                    f"secret {name} is scheduled for deletion; restore it with "
                    f"`aws secretsmanager restore-secret --secret-id {name}`"
                )
            with _calling("secretsmanager:GetSecretValue"):
                value = self._secrets.get_secret_value(SecretId=described["ARN"])
        except AwsError as error:
            raise _secret_error(name, error) from None
        return Credential(
            name=name,
            arn=described["ARN"],
            kms_key_id=described.get("KmsKeyId"),
            keys=_json_keys(value.get("SecretString")),
        )

    def validate_rule(self, prefix: str) -> RuleValidation:
        """ValidatePullThroughCacheRule."""
        with _calling("ecr:ValidatePullThroughCacheRule", prefix=prefix):
            answer = self._ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix=prefix)
        return RuleValidation(prefix, valid=bool(answer.get("isValid")), failure=answer.get("failure", ""))

    def create_rule(self, rule: CacheRule) -> None:
        """CreatePullThroughCacheRule."""
        extra = _rule_credentials(rule)
        with _calling("ecr:CreatePullThroughCacheRule", prefix=rule.prefix, secret=rule.credential_arn):
            self._ecr.create_pull_through_cache_rule(
                ecrRepositoryPrefix=rule.prefix,
                upstreamRegistryUrl=rule.upstream_registry_url,
                upstreamRegistry=rule.upstream_registry,  # type: ignore[arg-type] # the tier table holds enum values
                **extra,
            )

    def update_rule(self, rule: CacheRule) -> None:
        """UpdatePullThroughCacheRule: the credential (secret or role) is all ECR lets us change."""
        extra = _rule_credentials(rule)
        with _calling("ecr:UpdatePullThroughCacheRule", prefix=rule.prefix, secret=rule.credential_arn):
            self._ecr.update_pull_through_cache_rule(ecrRepositoryPrefix=rule.prefix, **extra)

    def delete_rule(self, rule: CacheRule) -> None:
        """DeletePullThroughCacheRule; a rule already gone is fine."""
        try:
            with _calling("ecr:DeletePullThroughCacheRule", prefix=rule.prefix):
                self._ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix=rule.prefix)
        except AwsError as error:
            if error.code != "PullThroughCacheRuleNotFoundException":
                raise

    def create_template(self, template: CreationTemplate) -> None:
        """CreateRepositoryCreationTemplate."""
        with _calling("ecr:CreateRepositoryCreationTemplate", prefix=template.prefix):
            self._ecr.create_repository_creation_template(**_template_request(template, updating=False))

    def update_template(self, template: CreationTemplate) -> None:
        """UpdateRepositoryCreationTemplate."""
        with _calling("ecr:UpdateRepositoryCreationTemplate", prefix=template.prefix):
            self._ecr.update_repository_creation_template(**_template_request(template, updating=True))

    def delete_template(self, template: CreationTemplate) -> None:
        """DeleteRepositoryCreationTemplate; a template already gone is fine."""
        try:
            with _calling("ecr:DeleteRepositoryCreationTemplate", prefix=template.prefix):
                self._ecr.delete_repository_creation_template(prefix=template.prefix)
        except AwsError as error:
            if error.code != "TemplateNotFoundException":
                raise

    def put_policy(self, text: str) -> None:
        """PutRegistryPolicy."""
        with _calling("ecr:PutRegistryPolicy"):
            self._ecr.put_registry_policy(policyText=text)

    def delete_policy(self) -> None:
        """DeleteRegistryPolicy; a policy already gone is fine."""
        try:
            with _calling("ecr:DeleteRegistryPolicy"):
                self._ecr.delete_registry_policy()
        except AwsError as error:
            if error.code != "RegistryPolicyNotFoundException":
                raise


def _rule_credentials(rule: CacheRule) -> dict[str, str]:
    """The rule's ``credentialArn`` and ``customRoleArn``, those it has."""
    fields = {"credentialArn": rule.credential_arn, "customRoleArn": rule.custom_role_arn}
    return {key: value for key, value in fields.items() if value}


def _rule(item: PullThroughCacheRuleTypeDef) -> CacheRule:
    return CacheRule(
        prefix=item.get("ecrRepositoryPrefix", ""),
        upstream_registry=item.get("upstreamRegistry"),
        upstream_registry_url=item.get("upstreamRegistryUrl", ""),
        credential_arn=item.get("credentialArn"),
        upstream_repository_prefix=item.get("upstreamRepositoryPrefix"),
        custom_role_arn=item.get("customRoleArn"),
    )


def _template(item: RepositoryCreationTemplateTypeDef) -> CreationTemplate:
    return CreationTemplate(
        prefix=item.get("prefix", ""),
        description=item.get("description", ""),
        applied_for=tuple(item.get("appliedFor", [])),
        image_tag_mutability=item.get("imageTagMutability", "MUTABLE"),
        lifecycle_policy=item.get("lifecyclePolicy"),
        resource_tags=tuple(sorted((tag["Key"], tag["Value"]) for tag in item.get("resourceTags", []))),
        custom_role_arn=item.get("customRoleArn"),
    )


def _template_request(template: CreationTemplate, *, updating: bool) -> dict[str, Any]:
    request: dict[str, Any] = {
        "prefix": template.prefix,
        "description": template.description,
        "appliedFor": list(template.applied_for),
        "imageTagMutability": template.image_tag_mutability,
    }
    if template.lifecycle_policy is not None:
        request["lifecyclePolicy"] = template.lifecycle_policy
    if template.resource_tags or (updating and template.resource_tags is not None):
        # Only tags the config sets are sent (an update replaces the whole list); without `tags` in the config the
        # template keeps whatever tags it has.
        request["resourceTags"] = [{"Key": key, "Value": value} for key, value in template.resource_tags]
    if template.custom_role_arn is not None:
        request["customRoleArn"] = template.custom_role_arn
    return request


def _json_keys(text: str | None) -> frozenset[str]:
    if text is None:
        return frozenset()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return frozenset()
    return frozenset(key for key, item in value.items() if item) if isinstance(value, dict) else frozenset()


def _secret_error(name: str, error: AwsError) -> ProvisionError:
    if error.code == "ResourceNotFoundException":
        return SecretError(f"secret {name} not found; " + _HOW_TO_CREATE.format(name=name))
    if error.code == "DecryptionFailure":
        return SecretError(f"secret {name} cannot be decrypted with your credentials (KMS): {error}")
    if error.code == "AccessDeniedException":
        return SecretError(
            f"secret {name}: access denied; the provisioner needs secretsmanager:DescribeSecret and GetSecretValue "
            "on it (it checks the keys, never prints the value)"
        )
    return SecretError(f"secret {name}: {error}")


@contextmanager
def _calling(operation: str, prefix: str | None = None, secret: str | None = None) -> Iterator[None]:
    """Turn botocore's errors into ours: known ECR error codes into actionable messages, others into AwsError."""
    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "Unknown")
        message = error.response.get("Error", {}).get("Message", "")
        raise _client_error(operation, code, message, prefix, secret) from None
    except NoCredentialsError:
        raise ProvisionError(
            f"{operation}: no AWS credentials found; use --profile, AWS_PROFILE or the usual credential chain"
        ) from None
    except BotoCoreError as error:
        raise ProvisionError(f"{operation}: {error}") from None


_RULE_WRITES: Final = frozenset({"ecr:CreatePullThroughCacheRule", "ecr:UpdatePullThroughCacheRule"})
"""The operations where ECR itself reads the credential secret."""


def _client_error(  # noqa: PLR0911 - one return per error code, read as a table
    operation: str, code: str, message: str, prefix: str | None, secret: str | None
) -> ProvisionError:
    """The error for ``code`` from ``operation``: the same code means different things in different operations."""
    rule = f"pull-through cache rule {prefix!r}"
    if code == "LimitExceededException" and operation == "ecr:CreatePullThroughCacheRule":
        return QuotaError(
            f"{operation}: the registry is at its quota of pull-through cache rules (50 per registry, not "
            f"adjustable) ({message}); delete unused rules"
        )
    if code == "LimitExceededException" and operation == "ecr:CreateRepositoryCreationTemplate":
        return QuotaError(
            f"{operation}: the registry is at its quota of repository creation templates ({message}); delete unused "
            "templates"
        )
    if operation in _RULE_WRITES:
        if code == "UnableToDecryptSecretValueException":
            return SecretError(
                f"{rule}: ECR cannot decrypt secret {secret}: the pull-through cache cannot use customer-managed KMS "
                "keys; re-create the secret encrypted with the AWS managed key aws/secretsmanager"
            )
        if code == "SecretNotFoundException":
            return SecretError(f"{rule}: ECR cannot find secret {secret}; check it exists in the registry's region")
        if code == "UnableToAccessSecretException":
            return SecretError(
                f"{rule}: ECR cannot read secret {secret} ({message}); check the secret's resource policy and KMS key"
            )
    if code in {"PullThroughCacheRuleAlreadyExistsException", "TemplateAlreadyExistsException"}:
        return ConflictError(f"{operation}: prefix {prefix!r} was taken since the plan was made; run plan again")
    if code == "UnsupportedUpstreamRegistryException":
        return LocationError(
            f"{rule}: this region does not support that upstream registry ({message}); put the cache in a region "
            "that does"
        )
    # Secrets Manager's own errors stay AwsError here: AwsBackend.credential turns them into SecretError.
    return AwsError(operation, code, message)
