"""The provisioner: plan, apply, destroy and verify the ECR side through a :class:`Backend`.

No AWS import here: :mod:`webhook.provision.aws` is the boto3 backend; tests use an in-memory one as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from webhook.provision.desired import (
    credential_names,
    desired_state,
    locate,
    node_policy,
    upstream_policies,
    webhook_policy,
)
from webhook.provision.errors import ApplyError, ConflictError, LocationError, ProvisionError, SecretError
from webhook.provision.plan import Action, Plan, plan_apply, plan_destroy
from webhook.provision.policy import policy_scope_problem
from webhook.provision.resources import CacheRule, CreationTemplate, RegistryPolicy

if TYPE_CHECKING:
    from collections.abc import Callable

    from webhook.provision.resources import DesiredState, Location, ObservedState
    from webhook.provision.settings import ProvisionConfig

AWS_MANAGED_SECRET_KEYS: Final = frozenset({"alias/aws/secretsmanager"})
CREDENTIAL_KEYS: Final = ("username", "accessToken")
_KMS_TROUBLE: Final = re.compile(r"decrypt|kms", re.IGNORECASE)
"""ECR's validation failure text when the cache cannot decrypt the credential secret."""
_AWS_MANAGED_KEY_ADVICE: Final = (
    "the pull-through cache cannot decrypt secrets under a customer-managed KMS key: re-create the secret encrypted "
    "with the AWS managed key aws/secretsmanager"
)


@dataclass(frozen=True, slots=True)
class Credential:
    """What the backend learnt about a credential secret; never its value."""

    name: str
    arn: str
    kms_key_id: str | None
    keys: frozenset[str]
    """Top-level keys of the secret's JSON ``SecretString`` (empty when it is not a JSON object)."""


@dataclass(frozen=True, slots=True)
class RuleValidation:
    """ValidatePullThroughCacheRule's answer: can ECR reach the upstream with the rule's credential."""

    prefix: str
    valid: bool
    failure: str = ""


class Backend(Protocol):
    """The ECR, Secrets Manager and STS calls the provisioner makes."""

    def caller_account(self) -> str:
        """The account of the credentials in use."""
        ...

    def observe(self) -> ObservedState:
        """Every pull-through cache rule and creation template, and the registry policy."""
        ...

    def registry_policy_scope(self) -> str:
        """The registry's REGISTRY_POLICY_SCOPE account setting: ``V1`` or ``V2``."""
        ...

    def credential(self, name: str) -> Credential:
        """Look up a secret by name; :class:`SecretError` when it is missing or unreadable."""
        ...

    def validate_rule(self, prefix: str) -> RuleValidation:
        """Ask ECR whether the rule on ``prefix`` can authenticate to its upstream."""
        ...

    def create_rule(self, rule: CacheRule) -> None:
        """CreatePullThroughCacheRule."""
        ...

    def update_rule(self, rule: CacheRule) -> None:
        """UpdatePullThroughCacheRule (credential only)."""
        ...

    def delete_rule(self, rule: CacheRule) -> None:
        """DeletePullThroughCacheRule."""
        ...

    def create_template(self, template: CreationTemplate) -> None:
        """CreateRepositoryCreationTemplate."""
        ...

    def update_template(self, template: CreationTemplate) -> None:
        """UpdateRepositoryCreationTemplate."""
        ...

    def delete_template(self, template: CreationTemplate) -> None:
        """DeleteRepositoryCreationTemplate."""
        ...

    def put_policy(self, text: str) -> None:
        """PutRegistryPolicy."""
        ...

    def delete_policy(self) -> None:
        """DeleteRegistryPolicy."""
        ...


@dataclass(frozen=True, slots=True)
class Check:
    """One verification: what was checked, whether it holds, and what to do if not."""

    subject: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Verification:
    """Every check ``verify`` made."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return all(check.ok for check in self.checks)


class Provisioner:
    """Converges the ECR side of the cache to the config; safe to run again and again."""

    def __init__(self, backend: Backend, config: ProvisionConfig, region: str | None = None) -> None:
        """Use ``backend`` for the registry of ``config``; ``region`` (a flag) must agree with the registry host."""
        self._backend = backend
        self._config = config
        self.location: Location = locate(config.webhook, region)

    def plan(self, *, adopt: bool = False) -> Plan:
        """What ``apply`` would do; changes nothing. ``adopt``: take over what is on the config's prefixes."""
        desired, warnings = self._desired()
        if desired.policy_statements:
            problem = policy_scope_problem(self._backend.registry_policy_scope(), self.location)
            if problem is not None:
                raise ConflictError(problem)
        plan = plan_apply(desired, self._backend.observe(), adopt=adopt)
        return Plan(plan.actions, warnings + plan.warnings)

    def apply(self, on_action: Callable[[Action], None] | None = None, *, adopt: bool = False) -> Plan:
        """Run the plan's changes in order, reporting each done action to ``on_action``; return the plan."""
        plan = self.plan(adopt=adopt)
        self._run(plan, on_action)
        return plan

    def plan_destroy(self) -> Plan:
        """What ``destroy`` would delete: only what we created (see :mod:`webhook.provision.plan`)."""
        self._check_account()
        # Neither secrets nor the config's other settings are read: destroying must work when they are gone or wrong.
        return plan_destroy(self._backend.observe())

    def destroy(self, on_action: Callable[[Action], None] | None = None) -> Plan:
        """Delete what we created; return the plan that was run."""
        plan = self.plan_destroy()
        self._run(plan, on_action)
        return plan

    def verify(self) -> Verification:
        """Check secrets, that rules, templates and policy match the config, and ECR's own rule validation.

        Every failure is reported as a failed :class:`Check`, AWS errors included; checks that depend on a failed one
        (everything depends on the account and on reading the registry) are skipped.
        """
        checks: list[Check] = []
        try:
            self._check_account()
            observed = self._backend.observe()
        except ProvisionError as error:
            return Verification((Check(f"registry {self.location.host}", ok=False, detail=str(error)),))
        arns: dict[str, str] = {}
        current = {rule.prefix: rule for rule in observed.rules}
        for tier, name in self._credential_names_or_report(checks).items():
            try:
                credential = self._backend.credential(name)
                warnings = check_credential(tier, credential, self.location)
            except ProvisionError as error:
                checks.append(Check(f"secret {name}", ok=False, detail=str(error)))
                rule = current.get(self._config.webhook.prefix_for(tier))
                if rule is not None and rule.credential_arn:
                    arns[tier] = rule.credential_arn  # report the secret once, not again as rule drift
                continue
            arns[tier] = credential.arn
            checks.append(Check(f"secret {name}", ok=True, detail="; ".join(warnings)))
        try:
            desired = desired_state(self._config.webhook, self._config.settings, self.location, arns)
        except ProvisionError as error:
            checks.append(Check("provision settings", ok=False, detail=str(error)))
            return Verification(tuple(checks))
        if desired.policy_statements:
            checks.append(self._scope_check())
        checks.extend(_drift_checks(desired, observed))
        checks.extend(
            self._validation_check(rule.prefix, role=current[rule.prefix].custom_role_arn is not None)
            for rule in desired.rules
            if rule.prefix in current and (current[rule.prefix].credential_arn or current[rule.prefix].custom_role_arn)
        )
        return Verification(tuple(checks))

    def _scope_check(self) -> Check:
        subject = "registry policy scope"
        try:
            scope = self._backend.registry_policy_scope()
        except ProvisionError as error:
            return Check(subject, ok=False, detail=str(error))
        problem = policy_scope_problem(scope, self.location)
        return Check(subject, ok=problem is None, detail=problem or f"{scope}: allows the pull-through statements")

    def _validation_check(self, prefix: str, *, role: bool = False) -> Check:
        subject = f"ValidatePullThroughCacheRule {prefix}"
        try:
            result = self._backend.validate_rule(prefix)
        except ProvisionError as error:
            return Check(subject, ok=False, detail=str(error))
        if result.valid:
            return Check(subject, ok=True)
        failure = result.failure or "invalid"
        if role:
            advice = (
                "check the role's trust and permissions policies and the upstream registry's policy "
                "(`provision upstream-policy` prints all three)"
            )
        elif _KMS_TROUBLE.search(failure):
            advice = _AWS_MANAGED_KEY_ADVICE
        else:
            advice = "check the secret's username and accessToken against the upstream registry"
        return Check(subject, ok=False, detail=f"{failure}; {advice}")

    def node_policy(self) -> dict[str, Any]:
        """The identity policy the node roles of the cluster accounts need; offline."""
        return node_policy(self._config.webhook, self.location)

    def upstream_policies(self) -> list[dict[str, Any]]:
        """Per ECR upstream of another account, the role's policies and the upstream's grant; offline."""
        return upstream_policies(self._config.webhook, self.location)

    def webhook_policy(self) -> dict[str, Any] | None:
        """The identity policy the webhook's ServiceAccount role needs (``None``: none); offline."""
        return webhook_policy(self._config.webhook, self.location)

    def _desired(self) -> tuple[DesiredState, tuple[str, ...]]:
        self._check_account()
        names = credential_names(self._config.webhook, self._config.settings)
        arns: dict[str, str] = {}
        warnings: list[str] = []
        for tier, name in names.items():
            credential = self._backend.credential(name)
            warnings.extend(check_credential(tier, credential, self.location))
            arns[tier] = credential.arn
        return desired_state(self._config.webhook, self._config.settings, self.location, arns), tuple(warnings)

    def _credential_names_or_report(self, checks: list[Check]) -> dict[str, str]:
        try:
            return credential_names(self._config.webhook, self._config.settings)
        except SecretError as error:
            checks.append(Check("provision.secrets", ok=False, detail=str(error)))
            return {
                tier: name for tier, name in self._config.settings.secrets.items() if tier in self._config.webhook.tiers
            }

    def _check_account(self) -> None:
        account = self._backend.caller_account()
        if account != self.location.account:
            raise LocationError(
                f"the AWS credentials in use belong to account {account}, but the registry "
                f"{self.location.host} is in account {self.location.account}; use --profile (or AWS_PROFILE) for "
                f"account {self.location.account}"
            )

    def _run(self, plan: Plan, on_action: Callable[[Action], None] | None) -> None:
        for done, action in enumerate(plan.changes):
            try:
                self._execute(action)
            except ProvisionError as error:
                raise ApplyError(action.describe(), done, error) from error
            if on_action is not None:
                on_action(action)

    def _execute(self, action: Action) -> None:
        resource = action.resource
        backend = self._backend
        if isinstance(resource, CacheRule):
            if action.kind == "create":
                backend.create_rule(resource)
            elif action.kind == "update":
                backend.update_rule(resource)
            else:
                backend.delete_rule(resource)
        elif isinstance(resource, CreationTemplate):
            if action.kind == "create":
                backend.create_template(resource)
            elif action.kind == "update":
                backend.update_template(resource)
            else:
                backend.delete_template(resource)
        elif isinstance(resource, RegistryPolicy):
            if action.kind == "delete":
                backend.delete_policy()
            elif resource.text is not None:
                backend.put_policy(resource.text)


def check_credential(tier: str, credential: Credential, location: Location) -> tuple[str, ...]:
    """Raise :class:`SecretError` if ECR cannot use the secret; return warnings (never the secret's value)."""
    parts = credential.arn.split(":")
    region, account = (parts[3], parts[4]) if len(parts) > 4 else ("", "")
    if (account, region) != (location.account, location.region):
        raise SecretError(
            f"secret {credential.name} for tier {tier!r} is in account {account}, region {region}; ECR needs it "
            f"in the registry's account {location.account}, region {location.region}"
        )
    missing = [key for key in CREDENTIAL_KEYS if key not in credential.keys]
    if missing:
        raise SecretError(
            f"secret {credential.name} for tier {tier!r} lacks {' and '.join(missing)}: its value must be a JSON "
            'object {"username": ..., "accessToken": ...} (the value is not shown)'
        )
    if credential.kms_key_id and credential.kms_key_id not in AWS_MANAGED_SECRET_KEYS:
        warning = (
            f"secret {credential.name} is encrypted with KMS key {credential.kms_key_id}: if that is a "
            "customer-managed key, the pull-through cache cannot decrypt it (UnableToDecryptSecretValue); "
            "use the AWS managed key aws/secretsmanager"
        )
        return (warning,)
    return ()


def _drift_checks(desired: DesiredState, observed: ObservedState) -> list[Check]:
    try:
        plan = plan_apply(desired, observed)
    except ConflictError as error:
        return [Check("prefixes of the config", ok=False, detail=str(error))]
    checks = []
    for action in plan.actions:
        subject = action.resource.describe()
        if action.kind == "no-op":
            checks.append(Check(subject, ok=True, detail="matches the config"))
        else:
            detail = f"drift: apply would {action.kind} it" + "".join(f"; {change}" for change in action.changes)
            checks.append(Check(subject, ok=False, detail=detail))
    return checks
