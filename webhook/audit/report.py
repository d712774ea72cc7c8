"""Coverage of a cluster or of manifests: every image occurrence, its decision, and the report they add up to.

Pure: workloads in (see :mod:`webhook.core.workloads`), occurrences and a :class:`Report` out. Decisions come from
:meth:`~webhook.rules.Rules.decide` through :func:`~webhook.patch.decide_slots`, exactly as ``/mutate`` takes them.
Pods the chart's webhook configuration never sends to the webhook (excluded namespaces, mirror pods) are reported
with an audit-only reason, :class:`NotSent`, instead of the decision the webhook would take if it saw them.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Literal

from webhook.audit.service_accounts import brief
from webhook.core.patch import decide_slots, has_pull_secrets, is_json_object, is_opted_out
from webhook.core.reasons import CHANGED_BY, POLICY_KEYS, Reason
from webhook.core.reference import parse
from webhook.core.registries import TIERS_BY_NAME, CredentialKind
from webhook.exceptions import InvalidReferenceError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from webhook.core.registries import Tier
    from webhook.core.rules import Decision, Rules
    from webhook.core.workloads import Workload

Coverage = Literal["covered", "exempt", "uncovered"]


class NotSent(StrEnum):
    """Audit-only reasons: the webhook is never called for these pods, so it decides nothing for their images."""

    NAMESPACE_EXCLUDED = "namespace-excluded"
    """The pod's namespace is excluded by the webhook configuration's namespaceSelector."""
    MIRROR_POD = "mirror-pod"
    """A mirror pod (the API copy of a static pod), skipped by the webhook configuration's matchConditions."""


CHART_EXCLUDED_NAMESPACES: Final = frozenset({"kube-system", "kube-node-lease"})
"""Namespaces the chart always excludes, besides its release namespace and ``webhook.excludedNamespaces``."""
MIRROR_POD_ANNOTATION: Final = "kubernetes.io/config.mirror"
"""Set by the kubelet on mirror pods; the chart's matchConditions skip pods that carry it."""

COVERAGE: Final[dict[Reason | NotSent, Coverage]] = {
    Reason.REWRITTEN: "covered",
    Reason.ALREADY_CACHED: "covered",
    Reason.EKS_ADDON_REGISTRY: "exempt",
    Reason.ECR_REGISTRY: "exempt",
    Reason.PUBLIC_ECR: "exempt",
    Reason.POD_OPTED_OUT: "exempt",
    Reason.DIGEST_PINNED: "exempt",
    Reason.TIER_DISABLED: "uncovered",
    Reason.NO_RULE: "uncovered",
    Reason.UPSTREAM_UNSUPPORTED: "uncovered",
    Reason.NAME_TOO_LONG: "uncovered",
    Reason.INVALID_REFERENCE: "uncovered",
    Reason.RULE_MISSING: "uncovered",
    Reason.TARGET_MISSING: "uncovered",
    Reason.VERIFY_FAILED: "uncovered",
    Reason.EXCLUDED: "exempt",
    Reason.NOT_INCLUDED: "exempt",
    Reason.PULL_SECRET: "exempt",
    Reason.MOVING_TAG: "exempt",
    NotSent.NAMESPACE_EXCLUDED: "exempt",
    NotSent.MIRROR_POD: "exempt",
}
"""Reason -> coverage. ``covered``: pulls through the cache. ``exempt``: not rewritten, on purpose: already on AWS,
or left out by a choice (the opt-out annotation, ``exclude``/``include``, ``pullSecrets``, ``movingTags``,
``digests: skip``, a namespace or mirror pod the webhook is never sent), whatever registry it pulls from.
``uncovered``: left on its upstream with no such choice (a tier not enabled, a registry without a tier or that no
cache can front, a reference that cannot be rewritten)."""

INVALID_REGISTRY: Final = "(invalid)"
"""The registry column of references that do not parse."""

FIELDS: Final = ("image", "action", "result", "reason", "tier", "kind", "namespace", "name", "container", "source")
"""Keys of :meth:`Occurrence.as_dict`, in order: ``explain``'s keys, then where the image is."""


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One image of one pod spec and the decision for it."""

    kind: str
    namespace: str | None
    name: str
    container: str
    """The container name; ``volumes/<name>`` for an image volume (as in the original-images annotation)."""
    decision: Decision
    """What the webhook decides for the image (would decide, for a pod it is not sent)."""
    source: str | None = None
    """Where the object was read, ``file:line``; ``None`` for a live cluster."""
    not_sent: NotSent | None = None
    """Why the webhook never sees this pod; ``None`` when it does."""

    @property
    def reason(self) -> Reason | NotSent:
        """The reason reported: the decision's, or why the pod is not sent to the webhook."""
        return self.not_sent or self.decision.reason

    @property
    def tier(self) -> str | None:
        """The tier reported; none for a pod the webhook is not sent (no tier would change it)."""
        return None if self.not_sent else self.decision.tier

    @property
    def rewrites(self) -> bool:
        """Whether the image would change."""
        return self.not_sent is None and self.decision.rewrites

    def as_dict(self) -> dict[str, str | None]:
        """The wire form of ``audit --output json``: the decision's keys plus where the image is."""
        decision = self.decision.as_dict()
        if self.not_sent is not None:
            decision.update(action="skip", result=self.decision.image, reason=self.not_sent.value, tier=None)
        return {
            **decision,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "container": self.container,
            "source": self.source,
        }


def occurrences(
    workload: Workload,
    rules: Rules,
    source: str | None = None,
    *,
    not_sent: NotSent | None = None,
    pull_secrets: bool | None = None,
) -> Iterator[Occurrence]:
    """The decision for every image of ``workload``, opt-out annotation included, as the webhook would take them.

    ``pull_secrets`` says whether the pod will have ``imagePullSecrets`` once admitted (its ServiceAccount's
    included, see :mod:`webhook.audit.service_accounts`); ``None`` reads the pod spec alone.
    """
    opted_out = is_opted_out(workload.pod_metadata)
    secrets = has_pull_secrets(workload.spec) if pull_secrets is None else pull_secrets
    for item in decide_slots(workload.image_slots(), rules, opted_out=opted_out, pull_secrets=secrets):
        yield Occurrence(
            kind=workload.kind,
            namespace=workload.namespace,
            name=workload.name,
            container=item.slot.key,
            decision=item.decision,
            source=source,
            not_sent=not_sent,
        )


def not_sent_reason(workload: Workload, excluded_namespaces: frozenset[str]) -> NotSent | None:
    """Why the chart's webhook configuration never sends this workload's pods to the webhook; ``None`` if it does.

    A mirror pod first: it is never sent, whatever the namespaces. Then the namespaces the namespaceSelector excludes.
    """
    annotations = workload.pod_metadata.get("annotations") if workload.pod_metadata is not None else None
    if is_json_object(annotations) and MIRROR_POD_ANNOTATION in annotations:
        return NotSent.MIRROR_POD
    if workload.namespace in excluded_namespaces:
        return NotSent.NAMESPACE_EXCLUDED
    return None


@functools.lru_cache(maxsize=4096)
def registry_of(image: str) -> str:
    """The registry host an image pulls from (``docker.io`` for short names), or :data:`INVALID_REGISTRY`."""
    try:
        return parse(image).host
    except InvalidReferenceError:
        return INVALID_REGISTRY


@dataclass(slots=True)
class Group:
    """The occurrences of one registry and tier."""

    registry: str
    tier: str | None
    images: set[str] = field(default_factory=set)
    pods: int = 0
    """Pod specs with at least one image here."""
    rewrite: int = 0
    skipped: Counter[Reason | NotSent] = field(default_factory=Counter)
    uncovered: int = 0


@dataclass(slots=True)
class Report:
    """Occurrences added up by registry and tier; add one pod spec's occurrences at a time."""

    groups: dict[tuple[str, str | None], Group] = field(default_factory=dict)
    pods: int = 0
    occurrences: int = 0
    coverage: Counter[Coverage] = field(default_factory=Counter)
    disabled_tiers: dict[str, Group] = field(default_factory=dict)
    """Tier -> its ``tier-disabled`` occurrences, over all the tier's registries (Docker Hub has three hosts)."""
    kept: dict[Reason, Group] = field(default_factory=dict)
    """Policy reason (``pull-secret``, ``moving-tag``, ...) -> the occurrences it kept on their upstream."""
    unknown_service_accounts: Counter[str] = field(default_factory=Counter)
    """``namespace/name`` of ServiceAccounts pod specs run as but the input did not hold -> pod specs: their
    ``imagePullSecrets`` could not be known, so those pods were decided as having none of their own."""

    def add(self, pod: Iterable[Occurrence]) -> None:
        """Count the occurrences of one pod spec."""
        seen: set[tuple[str, str | None]] = set()
        disabled_seen: set[str] = set()
        kept_seen: set[Reason] = set()
        for occurrence in pod:
            image, reason = occurrence.decision.image, occurrence.reason
            key = (registry_of(image), occurrence.tier)
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = Group(*key)
            group.images.add(image)
            if occurrence.rewrites:
                group.rewrite += 1
            else:
                group.skipped[reason] += 1
            if COVERAGE[reason] == "uncovered":
                group.uncovered += 1
            if key not in seen:
                seen.add(key)
                group.pods += 1
            if reason == Reason.TIER_DISABLED and occurrence.tier is not None:
                tier = self.disabled_tiers.setdefault(occurrence.tier, Group(registry=key[0], tier=occurrence.tier))
                tier.images.add(image)
                tier.skipped[reason] += 1
                if occurrence.tier not in disabled_seen:  # a pod spec counts once per tier, whatever its hosts
                    disabled_seen.add(occurrence.tier)
                    tier.pods += 1
            if reason in POLICY_KEYS and isinstance(reason, Reason):
                policy = self.kept.setdefault(reason, Group(registry="", tier=None))
                policy.images.add(image)
                policy.skipped[reason] += 1
                if reason not in kept_seen:
                    kept_seen.add(reason)
                    policy.pods += 1
            self.occurrences += 1
            self.coverage[COVERAGE[reason]] += 1
        self.pods += 1

    @property
    def uncovered(self) -> int:
        """Occurrences that would pull from an upstream outside AWS."""
        return self.coverage["uncovered"]

    @property
    def tier_disabled(self) -> int:
        """Occurrences a tier could cover if it were enabled."""
        return sum(group.skipped[Reason.TIER_DISABLED] for group in self.groups.values())

    def tiers_to_enable(self) -> dict[str, Group]:
        """Tier -> its ``tier-disabled`` occurrences: what enabling each tier would add to the cache."""
        order = [group.tier for group in self.sorted_groups() if group.tier in self.disabled_tiers]
        return {tier: self.disabled_tiers[tier] for tier in dict.fromkeys(order) if tier is not None}

    def sorted_groups(self) -> list[Group]:
        """Groups by registry, then tier."""
        return [self.groups[key] for key in sorted(self.groups, key=lambda key: (key[0], key[1] or ""))]


CREDENTIAL_NOTES: Final[dict[CredentialKind, str]] = {
    "none": "",
    "secret": " (opt-in: needs a Secrets Manager credential)",
    "role": " (another account's registry needs an IAM role for ECR, `customRoleArn`)",
}
"""What enabling a tier takes on the ECR side, by what its upstream needs (see ``docs/provision.md``)."""


def format_table(report: Report, tiers: Mapping[str, Tier] = TIERS_BY_NAME) -> str:
    """The human-readable report: one row per registry and tier, totals, then what would cover the rest."""
    header = ("REGISTRY", "TIER", "IMAGES", "PODS", "REWRITE", "SKIPPED")
    rows = [
        (
            group.registry,
            group.tier or "-",
            str(len(group.images)),
            str(group.pods),
            str(group.rewrite),
            _reasons(group.skipped),
        )
        for group in report.sorted_groups()
    ]
    widths = [max(len(row[column]) for row in (header, *rows)) for column in range(len(header) - 1)]
    lines = [_row(row, widths) for row in (header, *rows)]
    distinct = len(set().union(*(group.images for group in report.groups.values())))
    lines.append("")
    lines.append(
        f"{report.pods} pod specs, {report.occurrences} image occurrences ({distinct} distinct images): "
        f"{report.coverage['covered']} covered, {report.coverage['exempt']} exempt (on AWS or left out on purpose), "
        f"{report.uncovered} uncovered."
    )
    for tier, group in report.tiers_to_enable().items():
        credentials = CREDENTIAL_NOTES[tiers[tier].credential_kind]
        lines.append(
            f"Enable tier {tier}{credentials} to cover {group.skipped[Reason.TIER_DISABLED]} more occurrences "
            f"(images: {len(group.images)}, pod specs: {group.pods})."
        )
    for reason in (reason for reason in POLICY_KEYS if reason in report.kept):
        group = report.kept[reason]
        lines.append(
            f"{group.skipped[reason]} images in {group.pods} pod specs ({len(group.images)} distinct) kept on their "
            f"upstream by `{POLICY_KEYS[reason]}` ({reason}); {CHANGED_BY[reason]} would change it."
        )
    if report.unknown_service_accounts:
        pods = sum(report.unknown_service_accounts.values())
        names = brief(report.unknown_service_accounts)
        lines.append(
            f"{pods} pod specs run as ServiceAccounts not in the input ({names}): decided as if they had no "
            "imagePullSecrets; add the ServiceAccounts to the input, or use audit --cluster."
        )
    for group in report.sorted_groups():
        left: Counter[Reason | NotSent] = Counter(
            {
                reason: count
                for reason, count in group.skipped.items()
                if COVERAGE[reason] == "uncovered" and reason != Reason.TIER_DISABLED
            }
        )
        if left:
            lines.append(f"Uncovered whatever the tiers: {group.registry}: {_reasons(left)}.")
    return "\n".join(lines) + "\n"


def _reasons(skipped: Counter[Reason | NotSent]) -> str:
    return ", ".join(f"{reason}={count}" for reason, count in sorted(skipped.items())) or "-"


def _row(cells: tuple[str, ...], widths: list[int]) -> str:
    """Registry and tier left-aligned, counts right-aligned, reasons last (unpadded)."""
    left = (cells[0].ljust(widths[0]), cells[1].ljust(widths[1]))
    counts = (cell.rjust(width) for cell, width in zip(cells[2:-1], widths[2:], strict=True))
    return "  ".join((*left, *counts, cells[-1])).rstrip()
