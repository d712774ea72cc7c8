"""A FAKE in-memory ECR for convergence tests of the plan/apply loop (not a model of AWS: the real adapter is tested
with botocore's Stubber and moto), plus config builders shared by the provisioner tests."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pytest
from aws_sandbox import isolate_aws

from webhook.provision.config import parse_provision_config
from webhook.provision.errors import AwsError, ConflictError, ProvisionError, SecretError
from webhook.provision.provisioner import Credential, RuleValidation
from webhook.provision.resources import CacheRule, CreationTemplate, ObservedState, RegistryPolicy

if TYPE_CHECKING:
    from webhook.provision.settings import ProvisionConfig


@pytest.fixture
def aws_sandbox(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """boto3 with fake keys, a default region, and no profile, config file or endpoint from the developer's machine."""
    isolate_aws(monkeypatch, tmp_path_factory.mktemp("aws"), "eu-west-1")


ACCOUNT = "123456789012"
REGION = "eu-west-1"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"


def secret_arn(name: str, suffix: str = "AbCdEf") -> str:
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-{suffix}"


def make_config(
    tiers: tuple[str, ...] = ("quay", "k8s", "docker-hub"),
    provision: dict[str, Any] | None = None,
    **webhook: Any,
) -> ProvisionConfig:
    section: dict[str, Any] = {"secrets": {"docker-hub": "ecr-pullthroughcache/docker-hub"}}
    if "docker-hub" not in tiers:
        section = {}
    section.update(provision or {})
    return parse_provision_config({"registry": REGISTRY, "tiers": list(tiers), "provision": section, **webhook})


def good_credential(name: str) -> Credential:
    return Credential(name=name, arn=secret_arn(name), kms_key_id=None, keys=frozenset({"username", "accessToken"}))


@dataclass
class FakeEcr:
    """In-memory stand-in implementing the provisioner's Backend protocol."""

    account: str = ACCOUNT
    rules: dict[str, CacheRule] = field(default_factory=dict)
    templates: dict[str, CreationTemplate] = field(default_factory=dict)
    policy: str | None = None
    policy_scope: str = "V2"
    credentials: dict[str, Credential] = field(default_factory=dict)
    invalid_rules: dict[str, str] = field(default_factory=dict)
    errors: dict[str, ProvisionError] = field(default_factory=dict)
    """Raise this error from the named read (``observe``, ``validate_rule``, ``registry_policy_scope``)."""
    fail_at_mutation: int | None = None
    """Raise on the n-th (0-based) mutating call, once: a partial failure mid-apply."""
    mutations: list[str] = field(default_factory=list)

    def with_secret(self, name: str = "ecr-pullthroughcache/docker-hub") -> FakeEcr:
        self.credentials[name] = good_credential(name)
        return self

    def _mutate(self, call: str) -> None:
        if self.fail_at_mutation is not None and len(self.mutations) == self.fail_at_mutation:
            self.fail_at_mutation = None
            raise AwsError(call, "ServerException", "injected failure")
        self.mutations.append(call)

    def caller_account(self) -> str:
        return self.account

    def _read(self, call: str) -> None:
        if call in self.errors:
            raise self.errors[call]

    def observe(self) -> ObservedState:
        self._read("observe")
        return ObservedState(
            rules=tuple(self.rules.values()),
            templates=tuple(self.templates.values()),
            policy=RegistryPolicy(self.policy),
        )

    def registry_policy_scope(self) -> str:
        self._read("registry_policy_scope")
        return self.policy_scope

    def credential(self, name: str) -> Credential:
        if name not in self.credentials:
            raise SecretError(f"secret {name} not found")
        return self.credentials[name]

    def validate_rule(self, prefix: str) -> RuleValidation:
        self._read("validate_rule")
        failure = self.invalid_rules.get(prefix)
        return RuleValidation(prefix, valid=failure is None, failure=failure or "")

    def create_rule(self, rule: CacheRule) -> None:
        if rule.prefix in self.rules:
            raise ConflictError("exists")
        self._mutate(f"create_rule {rule.prefix}")
        self.rules[rule.prefix] = rule

    def update_rule(self, rule: CacheRule) -> None:
        self._mutate(f"update_rule {rule.prefix}")
        self.rules[rule.prefix] = replace(self.rules[rule.prefix], credential_arn=rule.credential_arn)

    def delete_rule(self, rule: CacheRule) -> None:
        self._mutate(f"delete_rule {rule.prefix}")
        self.rules.pop(rule.prefix, None)

    def create_template(self, template: CreationTemplate) -> None:
        if template.prefix in self.templates:
            raise ConflictError("exists")
        self._mutate(f"create_template {template.prefix}")
        self.templates[template.prefix] = template

    def update_template(self, template: CreationTemplate) -> None:
        self._mutate(f"update_template {template.prefix}")
        current = self.templates[template.prefix]
        # Like ECR: what an update does not send (tags when the config has none) stays as it was.
        tags = current.resource_tags if template.resource_tags is None else template.resource_tags
        self.templates[template.prefix] = replace(template, resource_tags=tags)

    def delete_template(self, template: CreationTemplate) -> None:
        self._mutate(f"delete_template {template.prefix}")
        self.templates.pop(template.prefix, None)

    def put_policy(self, text: str) -> None:
        self._mutate("put_policy")
        self.policy = text

    def delete_policy(self) -> None:
        self._mutate("delete_policy")
        self.policy = None


CENTRAL = "111122223333.dkr.ecr.us-east-1.amazonaws.com"
"""A central registry in another account and region: the ECR upstream of the tests."""
UPSTREAM_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ecr-ptc-upstream"
NEW_KINDS: dict[str, Any] = {
    "registry": REGISTRY,
    "upstreams": [
        {
            "name": "acme-acr",
            "upstreamRegistry": "azure-container-registry",
            "host": "acmecorp.azurecr.io",
            "prefix": "acr",
        },
        {"name": "central-ecr", "upstreamRegistry": "ecr", "host": CENTRAL, "prefix": "use1"},
    ],
    "tiers": ["chainguard", "acme-acr", "central-ecr"],
    "provision": {
        "secrets": {"chainguard": "ecr-pullthroughcache/chainguard", "acme-acr": "ecr-pullthroughcache/acme-acr"},
        "upstreamRoles": {"central-ecr": UPSTREAM_ROLE},
    },
}
"""A config with all three new kinds of upstream: chainguard, an Azure registry, a cross-account ECR registry."""


def new_kinds_config(**changes: Any) -> ProvisionConfig:
    """:data:`NEW_KINDS`, with top-level keys replaced by ``changes``."""
    return parse_provision_config({**NEW_KINDS, **changes})
