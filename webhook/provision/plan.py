"""The planner: desired state and observed state in, the actions that converge them out. Pure: no AWS here.

Ownership (what ``destroy`` and pruning may delete):

- a repository creation template is ours when its description starts with ``Managed by ecr-ptc-webhook``;
- a pull-through cache rule is ours when the config names its prefix with the same upstream, or when its prefix
  has a template of ours (rules cannot be tagged, so the template is the rule's ownership record);
- a registry policy statement is ours when its ``Sid`` starts with ``EcrPtcWebhook``.

Apply orders actions so that a failure part-way leaves a state the next run converges from: templates before the
rules that use them (ECR applies a template only to repositories created after it), rule deletions before the
deletion of the template that records their ownership, the registry policy last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from webhook.provision.desired import MANAGED_BY, PULL_THROUGH_CACHE_RULES_QUOTA, is_managed, lifecycle_policy
from webhook.provision.errors import ConflictError
from webhook.provision.policy import is_ours, merge_policy, our_statements, parse_policy
from webhook.provision.resources import CacheRule, CreationTemplate, RegistryPolicy

if TYPE_CHECKING:
    from collections.abc import Sequence

    from webhook.provision.resources import DesiredState, ObservedState, Resource

ActionKind = Literal["create", "update", "delete", "no-op"]
SYMBOLS: Final[dict[ActionKind, str]] = {"create": "+", "update": "~", "delete": "-", "no-op": "="}
_SECRET_SUFFIX_LENGTH: Final = 7
"""Secrets Manager appends ``-`` and six characters to a secret's name in its full ARN."""


@dataclass(frozen=True, slots=True)
class Action:
    """One step: create, update or delete a resource (carrying its target state), or leave it alone."""

    kind: ActionKind
    resource: Resource
    changes: tuple[str, ...] = ()
    """Human-readable field diffs, e.g. ``credentialArn: (none) -> arn:...``."""

    def describe(self) -> str:
        """``+ create pull-through cache rule quay (quay.io -> quay/)``."""
        return f"{SYMBOLS[self.kind]} {self.kind} {self.resource.describe()}"


@dataclass(frozen=True, slots=True)
class Plan:
    """The actions in the order to run them, and warnings worth reading before running them."""

    actions: tuple[Action, ...]
    warnings: tuple[str, ...] = ()

    @property
    def changes(self) -> tuple[Action, ...]:
        """The actions that change something."""
        return tuple(action for action in self.actions if action.kind != "no-op")

    def summary(self) -> str:
        """``Plan: 2 to create, 1 to update, 0 to delete, 3 unchanged.``."""
        count = {kind: sum(1 for action in self.actions if action.kind == kind) for kind in SYMBOLS}
        return (
            f"Plan: {count['create']} to create, {count['update']} to update, {count['delete']} to delete, "
            f"{count['no-op']} unchanged."
        )


def plan_apply(desired: DesiredState, observed: ObservedState) -> Plan:
    """The actions that make ``observed`` what ``desired`` says, pruning resources we own that the config dropped."""
    rules = {rule.prefix: rule for rule in observed.rules}
    templates = {template.prefix: template for template in observed.templates}
    for rule in desired.rules:
        _check_no_conflict(rule, rules.get(rule.prefix))
    wanted = {rule.prefix for rule in desired.rules}

    actions: list[Action] = []
    for template in desired.templates:
        actions.extend(_template_actions(template, templates.get(template.prefix)))
    for rule in desired.rules:
        actions.extend(_rule_actions(rule, rules.get(rule.prefix)))
    dropped = [template for template in observed.templates if is_managed(template) and template.prefix not in wanted]
    actions.extend(Action("delete", rules[template.prefix]) for template in dropped if template.prefix in rules)
    actions.extend(Action("delete", template) for template in dropped)
    actions.extend(_policy_actions(observed.policy, desired.policy_statements))
    return Plan(tuple(actions), _quota_warnings(observed, actions))


def plan_destroy(desired: DesiredState, observed: ObservedState) -> Plan:
    """The actions that delete what we own and nothing else; others' policy statements stay."""
    wanted = {rule.prefix: rule for rule in desired.rules}
    owned_prefixes = {template.prefix for template in observed.templates if is_managed(template)}
    actions = [
        Action("delete", rule)
        for rule in observed.rules
        if rule.prefix in owned_prefixes
        or (rule.prefix in wanted and wanted[rule.prefix].upstream_registry_url == rule.upstream_registry_url)
    ]
    actions.extend(Action("delete", template) for template in observed.templates if is_managed(template))
    actions.extend(_policy_actions(observed.policy, ()))
    return Plan(tuple(actions))


def _check_no_conflict(rule: CacheRule, current: CacheRule | None) -> None:
    if current is not None and current.upstream_registry_url != rule.upstream_registry_url:
        raise ConflictError(
            f"prefix {rule.prefix!r} is taken by an existing pull-through cache rule for "
            f"{current.upstream_registry_url}, not {rule.upstream_registry_url}; choose another prefix in the "
            f"config's `prefixes`, or delete that rule if nothing uses it"
        )


def _rule_actions(rule: CacheRule, current: CacheRule | None) -> list[Action]:
    if current is None:
        return [Action("create", rule, _rule_fields(rule))]
    if current.upstream_registry != rule.upstream_registry or (rule.credential_arn is None and current.credential_arn):
        # UpdatePullThroughCacheRule changes only the credential; anything else means a new rule.
        changes = (
            f"upstreamRegistry: {current.upstream_registry} -> {rule.upstream_registry}",
            f"credentialArn: {current.credential_arn or '(none)'} -> {rule.credential_arn or '(none)'}",
        )
        return [
            Action("delete", current, ("replaced: ECR cannot update these fields in place",)),
            Action("create", rule, changes),
        ]
    if not _same_secret(current.credential_arn, rule.credential_arn):
        return [
            Action("update", rule, (f"credentialArn: {current.credential_arn or '(none)'} -> {rule.credential_arn}",))
        ]
    return [Action("no-op", rule)]


def _rule_fields(rule: CacheRule) -> tuple[str, ...]:
    fields = [f"upstreamRegistry: {rule.upstream_registry}"]
    if rule.credential_arn:
        fields.append(f"credentialArn: {rule.credential_arn}")
    return tuple(fields)


def _same_secret(observed: str | None, desired: str | None) -> bool:
    """Full ARNs end in ``-xxxxxx``; a rule may hold the partial ARN (without it) of the same secret."""
    if observed == desired:
        return True
    if observed is None or desired is None:
        return False
    shorter, longer = sorted((observed, desired), key=len)
    return longer.startswith(shorter + "-") and len(longer) == len(shorter) + _SECRET_SUFFIX_LENGTH


def _template_actions(template: CreationTemplate, current: CreationTemplate | None) -> list[Action]:
    if current is None:
        return [Action("create", template, _template_fields(template))]
    changes = _template_diff(current, template)
    if current.custom_role_arn and template.custom_role_arn is None:
        # An update cannot remove the role; a new template (affecting only repositories created later) can.
        return [
            Action("delete", current, ("replaced: ECR cannot remove customRoleArn in place",)),
            Action("create", template, changes),
        ]
    return [Action("update", template, changes) if changes else Action("no-op", template)]


def _template_fields(template: CreationTemplate) -> tuple[str, ...]:
    fields = [
        f"appliedFor: {', '.join(template.applied_for)}",
        f"imageTagMutability: {template.image_tag_mutability}",
        f"lifecyclePolicy: {_lifecycle(template.lifecycle_policy)}",
    ]
    if template.resource_tags:
        fields.append(f"resourceTags: {dict(template.resource_tags)}")
    if template.custom_role_arn:
        fields.append(f"customRoleArn: {template.custom_role_arn}")
    return tuple(fields)


def _template_diff(current: CreationTemplate, template: CreationTemplate) -> tuple[str, ...]:
    changes: list[str] = []
    if current.description != template.description:
        adopt = "" if current.description.startswith(MANAGED_BY) else " (adopts the template)"
        changes.append(f"description: {current.description!r} -> {template.description!r}{adopt}")
    if set(current.applied_for) != set(template.applied_for):
        changes.append(f"appliedFor: {', '.join(current.applied_for)} -> {', '.join(template.applied_for)}")
    if current.image_tag_mutability != template.image_tag_mutability:
        changes.append(f"imageTagMutability: {current.image_tag_mutability} -> {template.image_tag_mutability}")
    if _json_or_text(current.lifecycle_policy) != _json_or_text(template.lifecycle_policy):
        changes.append(
            f"lifecyclePolicy: {_lifecycle(current.lifecycle_policy)} -> {_lifecycle(template.lifecycle_policy)}"
        )
    if dict(current.resource_tags) != dict(template.resource_tags):
        changes.append(f"resourceTags: {dict(current.resource_tags)} -> {dict(template.resource_tags)}")
    if current.custom_role_arn != template.custom_role_arn:
        changes.append(
            f"customRoleArn: {current.custom_role_arn or '(none)'} -> {template.custom_role_arn or '(none)'}"
        )
    return tuple(changes)


def _json_or_text(text: str | None) -> object:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _lifecycle(text: str | None) -> str:
    """Our own lifecycle policy in words (``expire images 30 days after caching``); any other as compact JSON."""
    value = _json_or_text(text)
    try:
        days = value["rules"][0]["selection"]["countNumber"]  # type: ignore[index]
    except (TypeError, KeyError, IndexError):
        return _compact(text)
    if isinstance(days, int) and value == json.loads(lifecycle_policy(days)):
        return f"expire images {days} days after caching (sinceImagePushed)"
    return _compact(text)


def _compact(text: str | None) -> str:
    value = _json_or_text(text)
    if value is None:
        return "(none)"
    return json.dumps(value, separators=(",", ":"), sort_keys=True) if not isinstance(value, str) else value


def _policy_actions(policy: RegistryPolicy, ours: Sequence[dict[str, Any]]) -> list[Action]:
    document = parse_policy(policy.text)
    current = our_statements(document)
    if not current and not ours:
        return []
    merged = RegistryPolicy(merge_policy(policy.text, ours))
    changes = _statement_diff(current, ours)
    others = sum(1 for statement in (document or {}).get("Statement", []) if not is_ours(statement))
    if others:
        changes.append(f"keeps {others} statement(s) of others unchanged")
    if not _statement_diff(current, ours):
        return [Action("no-op", merged)]
    if merged.text is None:
        return [Action("delete", policy, tuple(changes))]
    return [Action("create" if document is None else "update", merged, tuple(changes))]


def _statement_diff(current: Sequence[dict[str, Any]], ours: Sequence[dict[str, Any]]) -> list[str]:
    before = {str(statement.get("Sid")): _normalise(statement) for statement in current}
    after = {str(statement.get("Sid")): _normalise(statement) for statement in ours}
    lines = [f"- statement {sid}" for sid in before if sid not in after]
    for sid, statement in after.items():
        if sid not in before:
            lines.append(f"+ statement {sid}")
        elif before[sid] != statement:
            lines.append(f"~ statement {sid}")
    if len(current) != len(before):
        lines.append("- duplicate statements of ours")
    return lines


def _normalise(value: object, key: str = "") -> object:
    """IAM reads ``"Action": "x"`` as ``["x"]`` and lists as sets; compare policies the way IAM reads them."""
    if isinstance(value, dict):
        return {name: _normalise(item, name) for name, item in value.items()}
    if isinstance(value, str) and key in {"Action", "NotAction", "Resource", "NotResource", "AWS", "Service"}:
        return [value]
    if isinstance(value, list):
        items = [_normalise(item) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    return value


def _quota_warnings(observed: ObservedState, actions: Sequence[Action]) -> tuple[str, ...]:
    after = len(observed.rules) + sum(
        (action.kind == "create") - (action.kind == "delete")
        for action in actions
        if isinstance(action.resource, CacheRule)
    )
    if after <= PULL_THROUGH_CACHE_RULES_QUOTA:
        return ()
    warning = (
        f"the registry would hold {after} pull-through cache rules; the default quota is "
        f"{PULL_THROUGH_CACHE_RULES_QUOTA}. Delete unused rules or raise the quota in Service Quotas first"
    )
    return (warning,)
