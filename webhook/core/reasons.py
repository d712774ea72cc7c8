"""Reason codes: the stable, public strings that say why an image was or was not rewritten.

They appear in logs, metrics labels, `explain`/`audit` output and dry-run warnings; users alert and filter on them,
so a code is never renamed. The README's table is checked against :data:`REASON_DESCRIPTIONS` by a test.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Reason(StrEnum):
    """Why a decision was taken."""

    REWRITTEN = "rewritten"
    TIER_DISABLED = "tier-disabled"
    ALREADY_CACHED = "already-cached"
    EKS_ADDON_REGISTRY = "eks-addon-registry"
    ECR_REGISTRY = "ecr-registry"
    PUBLIC_ECR = "public-ecr"
    UPSTREAM_UNSUPPORTED = "upstream-unsupported"
    NO_RULE = "no-rule"
    DIGEST_PINNED = "digest-pinned"
    NAME_TOO_LONG = "name-too-long"
    INVALID_REFERENCE = "invalid-reference"
    POD_OPTED_OUT = "pod-opted-out"
    RULE_MISSING = "rule-missing"
    TARGET_MISSING = "target-missing"
    VERIFY_FAILED = "verify-failed"
    EXCLUDED = "excluded"
    NOT_INCLUDED = "not-included"
    PULL_SECRET = "pull-secret"  # noqa: S105 - a reason code, not a secret
    MOVING_TAG = "moving-tag"


REASON_DESCRIPTIONS: Final[dict[Reason, str]] = {
    Reason.REWRITTEN: "the image's registry has an enabled tier; the image now pulls through the cache",
    Reason.TIER_DISABLED: "the registry has a tier, but the tier is not in `tiers`",
    Reason.ALREADY_CACHED: "the image already points at the cache registry (a re-run never double-prefixes)",
    Reason.EKS_ADDON_REGISTRY: "an AWS-owned EKS add-on registry (e.g. 602401143452): AWS-managed, never cached",
    Reason.ECR_REGISTRY: "another private ECR registry: already on AWS",
    Reason.PUBLIC_ECR: "public.ecr.aws: already on AWS infrastructure, no cache benefit",
    Reason.UPSTREAM_UNSUPPORTED: "gcr.io, *.gcr.io, *.pkg.dev: ECR pull-through cache cannot front them",
    Reason.NO_RULE: "no tier exists for this registry",
    Reason.DIGEST_PINNED: "pinned by digest and `digests: skip` is set",
    Reason.NAME_TOO_LONG: "the cache repository name (prefix/path) would exceed ECR's or the reference grammar's limit",
    Reason.INVALID_REFERENCE: "not a reference the container runtime accepts (empty, malformed): left untouched",
    Reason.POD_OPTED_OUT: "the pod carries the opt-out annotation",
    Reason.RULE_MISSING: "`rules: discover` found no pull-through cache rule for the tier with the expected upstream",
    Reason.TARGET_MISSING: "`verify: true` and the cache answered that the rewritten image cannot be pulled",
    Reason.VERIFY_FAILED: "`verify: true` and the cache gave no usable answer within the budget: original kept",
    Reason.EXCLUDED: "the image's repository matches a pattern in `exclude`",
    Reason.NOT_INCLUDED: "`include` is set and no pattern in it matches the image's repository",
    Reason.PULL_SECRET: (
        "the pod has `imagePullSecrets` and the tier's upstream can hold private images: the shared cache could "
        "break the pull or let every cache reader see the image"
    ),
    Reason.MOVING_TAG: (
        "no tag, or `latest`, and no digest: the cache re-checks a tag about once a day, so the pod could run "
        "yesterday's image"
    ),
}

DECISION_ORDER: Final[tuple[Reason, ...]] = (
    Reason.POD_OPTED_OUT,
    Reason.INVALID_REFERENCE,
    Reason.ALREADY_CACHED,
    Reason.PUBLIC_ECR,
    Reason.EKS_ADDON_REGISTRY,
    Reason.ECR_REGISTRY,
    Reason.UPSTREAM_UNSUPPORTED,
    Reason.NO_RULE,
    Reason.TIER_DISABLED,
    Reason.RULE_MISSING,
    Reason.EXCLUDED,
    Reason.NOT_INCLUDED,
    Reason.PULL_SECRET,
    Reason.MOVING_TAG,
    Reason.DIGEST_PINNED,
    Reason.NAME_TOO_LONG,
    Reason.TARGET_MISSING,
    Reason.VERIFY_FAILED,
    Reason.REWRITTEN,
)
"""Every reason in the order it is checked: the first that applies is the decision (``rewritten`` when none does).
The pod first, then what the host alone decides, then the tier, then the policies, then the digest, then the name,
then verification."""

CHANGED_BY: Final[dict[Reason, str]] = {
    Reason.POD_OPTED_OUT: "the pod annotation `ecr-ptc-webhook/rewrite: disabled`",
    Reason.INVALID_REFERENCE: "",
    Reason.ALREADY_CACHED: "",
    Reason.PUBLIC_ECR: "",
    Reason.EKS_ADDON_REGISTRY: "",
    Reason.ECR_REGISTRY: "`upstreams` (an `ecr` upstream caches that one registry)",
    Reason.UPSTREAM_UNSUPPORTED: "",
    Reason.NO_RULE: "`upstreams` (for an Azure Container Registry)",
    Reason.TIER_DISABLED: "`tiers`",
    Reason.RULE_MISSING: "`rules` (and the ECR side: `provision apply`)",
    Reason.EXCLUDED: "`exclude`",
    Reason.NOT_INCLUDED: "`include`",
    Reason.PULL_SECRET: "`pullSecrets: rewrite`",
    Reason.MOVING_TAG: "`movingTags: rewrite` (or pin a digest)",
    Reason.DIGEST_PINNED: "`digests: rewrite`",
    Reason.NAME_TOO_LONG: "`prefixes` (a shorter prefix)",
    Reason.TARGET_MISSING: "`verify` (or warm the cache: `ecr-ptc-webhook warm`)",
    Reason.VERIFY_FAILED: "`verify`, `verifyBudgetSeconds`",
    Reason.REWRITTEN: "",
}
"""Reason -> the config key (or annotation) that changes the decision; empty where nothing does."""

POLICY_KEYS: Final[dict[Reason, str]] = {
    Reason.EXCLUDED: "exclude",
    Reason.NOT_INCLUDED: "include",
    Reason.PULL_SECRET: "pullSecrets: keep",
    Reason.MOVING_TAG: "movingTags: keep",
    Reason.DIGEST_PINNED: "digests: skip",
}
"""The policies that keep images of an enabled tier on their upstream, and the setting that does it (for audit
reports and dry-run warnings: "41 images in 12 pod specs kept by `pullSecrets: keep`")."""
