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
}
