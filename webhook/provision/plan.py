"""The planner: desired state and observed state in, the actions that converge them out. Pure: no AWS here.

Ownership (what ``apply`` may change and ``destroy`` and pruning may delete):

- a repository creation template is ours when its description starts with ``Managed by ecr-ptc-webhook``;
- a pull-through cache rule is ours when its prefix has a template of ours: rules cannot be tagged, so the template is
  the rule's ownership record;
- a registry policy statement is ours when its ``Sid`` starts with ``EcrPtcWebhook``.

A template or rule on one of the config's prefixes that is not ours is a :class:`ConflictError` unless the plan is
made with ``adopt``; adopting records ``(adopted: rule, template)`` in the template's description, and ``destroy``
and pruning leave adopted resources in place. Adopting never deletes: an adopted resource that ECR cannot update in
place is a conflict too.

Apply orders actions so that a failure part-way leaves a state the next run converges from: deletions of pruned rules
first (so a renamed prefix does not need a 51st rule), templates before the rules that use them (ECR applies a
template only to repositories created after it), rule deletions before the deletion of the template that records
their ownership, the registry policy last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Literal

from webhook.provision.desired import (
    PULL_THROUGH_CACHE_RULES_QUOTA,
    adopted,
    is_managed,
    lifecycle_policy,
    mark_adopted,
)
from webhook.provision.errors import ConflictError
from webhook.provision.policy import is_ours, merge_policy, our_statements, parse_policy
from webhook.provision.resources import ROOT, CacheRule, CreationTemplate, RegistryPolicy

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


def plan_apply(desired: DesiredState, observed: ObservedState, *, adopt: bool = False) -> Plan:
    """The actions that make ``observed`` what ``desired`` says, pruning resources we own that the config dropped.

    Raises :class:`ConflictError` (naming every conflicting prefix) for a rule of another upstream on a prefix of the
    config, and, unless ``adopt``, for a template or rule on one that this tool did not create.
    """
    rules = {rule.prefix: rule for rule in observed.rules}
    templates = {template.prefix: template for template in observed.templates}
    wanted = {template.prefix: template for template in desired.templates}
    conflicts: list[str] = []
    template_actions: list[Action] = []
    rule_actions: list[Action] = []
    for rule in desired.rules:
        try:
            for_template, for_rule = _prefix_actions(
                rule, wanted[rule.prefix], rules.get(rule.prefix), templates.get(rule.prefix), adopt=adopt
            )
        except ConflictError as error:
            conflicts.append(str(error))
            continue
        template_actions.extend(for_template)
        rule_actions.extend(for_rule)
    if conflicts:
        raise ConflictError("; ".join(conflicts))
    pruned_rules, pruned_templates, kept = _prune(observed, set(wanted))
    actions = [
        *pruned_rules,
        *template_actions,
        *rule_actions,
        *pruned_templates,
        *_policy_actions(observed.policy, desired.policy_statements),
    ]
    return Plan(tuple(actions), (*_kept_warnings(kept), *_quota_warnings(observed, actions)))


def plan_destroy(observed: ObservedState) -> Plan:
    """The actions that delete what we created and nothing else; adopted resources and others' statements stay."""
    rule_deletions, template_deletions, kept = _prune(observed, set())
    actions = [*rule_deletions, *template_deletions, *_policy_actions(observed.policy, ())]
    return Plan(tuple(actions), _kept_warnings(kept))


def _prefix_actions(
    rule: CacheRule,
    template: CreationTemplate,
    current_rule: CacheRule | None,
    current_template: CreationTemplate | None,
    *,
    adopt: bool,
) -> tuple[list[Action], list[Action]]:
    """The template and rule actions of one prefix of the config, after its ownership checks."""
    _check_upstream(rule, current_rule)
    if current_template is not None and is_managed(current_template):
        # An adopted rule that is gone since is recreated by us: ours to delete later, so its mark goes.
        parts = adopted(current_template) - ({"rule"} if current_rule is None else set())
        foreign = []
    else:
        foreign = [resource for resource in (current_template, current_rule) if resource is not None]
        parts = frozenset(
            name for name, resource in (("template", current_template), ("rule", current_rule)) if resource is not None
        )
    rule_actions = _rule_actions(rule, current_rule, created="rule" not in parts)
    target = replace(template, description=mark_adopted(template.description, parts))
    template_actions = _template_actions(target, current_template, created="template" not in parts)
    if foreign and not adopt:
        raise ConflictError(_not_ours(rule.prefix, foreign))
    return template_actions, rule_actions


def _not_ours(prefix: str, foreign: Sequence[Resource]) -> str:
    described = [
        f"{resource.describe()} (description {resource.description!r})"
        if isinstance(resource, CreationTemplate)
        else resource.describe()
        for resource in foreign
    ]
    subject = " and ".join(described)
    verb, it = ("were", "them") if len(described) > 1 else ("was", "it")
    return (
        f"prefix {prefix!r}: the {subject} {verb} not created by ecr-ptc-webhook; re-run with --adopt to manage "
        f"{it} as the config says (destroy and pruning then leave {it} in place), or delete {it}, or choose another "
        "prefix in the config's `prefixes`"
    )


def _check_upstream(rule: CacheRule, current: CacheRule | None) -> None:
    if current is not None and current.upstream_registry_url != rule.upstream_registry_url:
        raise ConflictError(
            f"prefix {rule.prefix!r} is taken by an existing pull-through cache rule for "
            f"{current.upstream_registry_url}, not {rule.upstream_registry_url}; choose another prefix in the "
            f"config's `prefixes`, or delete that rule if nothing uses it"
        )


def _prune(observed: ObservedState, wanted: set[str]) -> tuple[list[Action], list[Action], list[Resource]]:
    """Deletions of what we created on prefixes outside ``wanted`` (rules, templates), and what we adopted there."""
    rules = {rule.prefix: rule for rule in observed.rules}
    rule_deletions: list[Action] = []
    template_deletions: list[Action] = []
    kept: list[Resource] = []
    for template in observed.templates:
        if not is_managed(template) or template.prefix in wanted:
            continue
        parts = adopted(template)
        rule = rules.get(template.prefix)
        if rule is not None:
            if "rule" in parts:
                kept.append(rule)
            else:
                rule_deletions.append(Action("delete", rule))
        if "template" in parts:
            kept.append(template)
        else:
            template_deletions.append(Action("delete", template))
    return rule_deletions, template_deletions, kept


def _kept_warnings(kept: Sequence[Resource]) -> tuple[str, ...]:
    return tuple(
        f"left in place: {resource.describe()} existed before ecr-ptc-webhook adopted it (--adopt); delete it by hand "
        "if nothing uses it"
        for resource in kept
    )


def _rule_actions(rule: CacheRule, current: CacheRule | None, *, created: bool) -> list[Action]:
    if current is None:
        return [Action("create", rule, _rule_fields(rule))]
    fixed = _fixed_rule_changes(current, rule)
    if fixed:
        if not created:
            fields = ", ".join(change.split(":", 1)[0] for change in fixed)
            raise ConflictError(
                f"{current.describe()} was not created by ecr-ptc-webhook and ECR cannot change its {fields} in place "
                f"({'; '.join(fixed)}); delete it by hand (apply then creates the rule the config needs) or choose "
                "another prefix in the config's `prefixes`"
            )
        # UpdatePullThroughCacheRule changes only the credentials; anything else means a new rule.
        return [
            Action("delete", current, ("replaced: ECR cannot update these fields in place",)),
            Action("create", rule, (*fixed, *_credential_changes(current, rule))),
        ]
    changes = _credential_changes(current, rule)
    return [Action("update", rule, changes) if changes else Action("no-op", rule)]


def _credential_changes(current: CacheRule, rule: CacheRule) -> tuple[str, ...]:
    """The secret and role the rule should have instead of its current ones (what UpdatePullThroughCacheRule sets)."""
    changes = []
    if rule.credential_arn is not None and not _same_secret(current.credential_arn, rule.credential_arn):
        changes.append(f"credentialArn: {current.credential_arn or '(none)'} -> {rule.credential_arn}")
    if rule.custom_role_arn is not None and current.custom_role_arn != rule.custom_role_arn:
        changes.append(f"customRoleArn: {current.custom_role_arn or '(none)'} -> {rule.custom_role_arn}")
    return tuple(changes)


def _fixed_rule_changes(current: CacheRule, rule: CacheRule) -> tuple[str, ...]:
    """Differences that UpdatePullThroughCacheRule cannot make; an absent ``upstreamRegistry`` is not one."""
    changes: list[str] = []
    if current.upstream_registry is not None and current.upstream_registry != rule.upstream_registry:
        changes.append(f"upstreamRegistry: {current.upstream_registry} -> {rule.upstream_registry}")
    if current.upstream_repository_prefix not in {None, ROOT}:
        # `<prefix>/x` would be fetched from `<upstream prefix>/x`, not from the `x` the webhook rewrote.
        changes.append(f"upstreamRepositoryPrefix: {current.upstream_repository_prefix} -> {ROOT}")
    if rule.credential_arn is None and current.credential_arn:
        changes.append(f"credentialArn: {current.credential_arn} -> (none)")
    if rule.custom_role_arn is None and current.custom_role_arn:
        changes.append(f"customRoleArn: {current.custom_role_arn} -> (none)")
    return tuple(changes)


def _rule_fields(rule: CacheRule) -> tuple[str, ...]:
    fields = [f"upstreamRegistry: {rule.upstream_registry}"]
    if rule.credential_arn:
        fields.append(f"credentialArn: {rule.credential_arn}")
    if rule.custom_role_arn:
        fields.append(f"customRoleArn: {rule.custom_role_arn}")
    return tuple(fields)


def _same_secret(observed: str | None, desired: str | None) -> bool:
    """Full ARNs end in ``-xxxxxx``; a rule may hold the partial ARN (without it) of the same secret."""
    if observed == desired:
        return True
    if observed is None or desired is None:
        return False
    shorter, longer = sorted((observed, desired), key=len)
    return longer.startswith(shorter + "-") and len(longer) == len(shorter) + _SECRET_SUFFIX_LENGTH


def _template_actions(template: CreationTemplate, current: CreationTemplate | None, *, created: bool) -> list[Action]:
    if current is None:
        return [Action("create", template, _template_fields(template))]
    changes = _template_diff(current, template)
    if current.custom_role_arn and template.custom_role_arn is None:
        if not created:
            raise ConflictError(
                f"{current.describe()} was not created by ecr-ptc-webhook and has customRoleArn "
                f"{current.custom_role_arn}, which the config does not set and ECR cannot remove in place; set "
                "`provision.repositoryRoleArn` to it, or delete the template by hand (apply then creates ours)"
            )
        # An update cannot remove the role; a new template (affecting only repositories created later) can.
        dropped_tags = (
            (f"resourceTags: {dict(current.resource_tags)} -> (none)",)
            if template.resource_tags is None and current.resource_tags
            else ()
        )
        return [
            Action("delete", current, ("replaced: ECR cannot remove customRoleArn in place",)),
            Action("create", template, (*changes, *dropped_tags)),
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
        adopt = "" if is_managed(current) else " (adopts the template)"
        changes.append(f"description: {current.description!r} -> {template.description!r}{adopt}")
    if set(current.applied_for) != set(template.applied_for):
        changes.append(f"appliedFor: {', '.join(current.applied_for)} -> {', '.join(template.applied_for)}")
    if current.image_tag_mutability != template.image_tag_mutability:
        changes.append(f"imageTagMutability: {current.image_tag_mutability} -> {template.image_tag_mutability}")
    if _json_or_text(current.lifecycle_policy) != _json_or_text(template.lifecycle_policy):
        changes.append(
            f"lifecyclePolicy: {_lifecycle(current.lifecycle_policy)} -> {_lifecycle(template.lifecycle_policy)}"
        )
    if template.resource_tags is not None and dict(current.resource_tags or ()) != dict(template.resource_tags):
        changes.append(f"resourceTags: {dict(current.resource_tags or ())} -> {dict(template.resource_tags)}")
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
    """Warn when the rule count would pass the quota at any point of the run, not only at its end."""
    count = peak = len(observed.rules)
    for action in actions:
        if isinstance(action.resource, CacheRule) and action.kind in {"create", "delete"}:
            count += 1 if action.kind == "create" else -1
            peak = max(peak, count)
    if peak <= PULL_THROUGH_CACHE_RULES_QUOTA:
        return ()
    warning = (
        f"the registry would hold {peak} pull-through cache rules during this apply; ECR allows "
        f"{PULL_THROUGH_CACHE_RULES_QUOTA} per registry (not adjustable). Delete unused rules first"
    )
    return (warning,)
