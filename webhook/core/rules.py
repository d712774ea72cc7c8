"""The one decision function: what happens to an image, and why.

``/mutate``, ``/audit``, ``explain``, ``audit`` and ``rewrite`` all call :meth:`Rules.decide`; nothing else decides.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from webhook.core.patterns import RepositoryPatterns, repository_of
from webhook.core.reasons import Reason
from webhook.core.reference import ImageReference, parse
from webhook.core.registries import (
    ECR_HOST_PATTERN,
    ECR_REPOSITORY_NAME_MAX,
    EKS_ADDON_ACCOUNTS,
    PUBLIC_ECR_HOST,
    UNSUPPORTED_UPSTREAM_HOSTS,
    UNSUPPORTED_UPSTREAM_SUFFIXES,
)
from webhook.exceptions import InvalidReferenceError

if TYPE_CHECKING:
    from webhook.core.config import Config
    from webhook.core.registries import Tier

Action = Literal["rewrite", "skip"]

DECISION_CACHE_SIZE: Final = 8192
"""Decisions kept per image string: pods of one cluster use a few hundred distinct images."""
MOVING_TAGS: Final[frozenset[str | None]] = frozenset({None, "latest"})
"""Tags that name whatever was pushed last: none (which means ``latest``) and ``latest`` itself."""
CACHED_IMAGE_LENGTH_MAX: Final = 1024
"""Longer image strings (no valid reference is: name 255, tag 128, digest 135) are decided but not kept, so pods made
with huge image strings cannot fill the cache's memory."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to one image: ``rewrite`` to ``result``, or ``skip`` (``result`` is the image unchanged)."""

    image: str
    action: Action
    result: str
    reason: Reason
    tier: str | None = None

    @property
    def rewrites(self) -> bool:
        """Whether the image changes."""
        return self.action == "rewrite"

    def as_dict(self) -> dict[str, str | None]:
        """The stable wire form used by `explain --output json`, audit and logs."""
        return {
            "image": self.image,
            "action": self.action,
            "result": self.result,
            "reason": self.reason.value,
            "tier": self.tier,
        }


def skip(image: str, reason: Reason, tier: str | None = None) -> Decision:
    """A decision that leaves ``image`` as it is."""
    return Decision(image=image, action="skip", result=image, reason=reason, tier=tier)


class Rules:
    """The rewrite rules compiled from a :class:`~webhook.core.config.Config`; decisions are cached per image string."""

    def __init__(self, config: Config, available_tiers: frozenset[str] | None = None) -> None:
        """Compile the enabled tiers, their prefixes and the ``exclude``/``include`` patterns from ``config``.

        ``available_tiers``, when known (``rules: discover``), are the tiers whose pull-through cache rule exists
        with the expected upstream and prefix; an enabled tier outside it is skipped with ``rule-missing``.
        """
        self.config = config
        self.available_tiers = available_tiers
        self.registry = config.registry.lower()
        self._prefix_by_tier = {name: config.prefix_for(name) for name in config.tiers}
        self._exclude = RepositoryPatterns(config.exclude, config.tier_by_host)
        self._include = RepositoryPatterns(config.include, config.tier_by_host)
        self._keep_private = config.pull_secrets == "keep"
        self._keep_moving = config.moving_tags == "keep"
        self._cached = functools.lru_cache(maxsize=DECISION_CACHE_SIZE)(self._decide)
        self._tier_by_host = config.tier_by_host

    @property
    def reads_pull_secrets(self) -> bool:
        """Whether a pod's ``imagePullSecrets`` can change a decision (``pullSecrets: keep``)."""
        return self._keep_private

    def decide(self, image: str, pull_secrets: bool = False) -> Decision:  # noqa: FBT001, FBT002 - the hot path
        """Decide for one image string of a pod that has (``pull_secrets``) or has not ``imagePullSecrets``.

        Cached per (string, pull secrets), but for strings longer than :data:`CACHED_IMAGE_LENGTH_MAX`.
        """
        pull_secrets = pull_secrets and self._keep_private
        if len(image) <= CACHED_IMAGE_LENGTH_MAX:
            return self._cached(image, pull_secrets)
        return self._decide(image, pull_secrets)

    def _decide(self, image: str, pull_secrets: bool) -> Decision:  # noqa: FBT001 - positional for lru_cache
        """Decide for one image string (uncached; use :meth:`decide`)."""
        try:
            reference = parse(image)
        except InvalidReferenceError:
            return skip(image, Reason.INVALID_REFERENCE)
        return self.decide_reference(image, reference, pull_secrets=pull_secrets)

    def decide_reference(self, image: str, reference: ImageReference, *, pull_secrets: bool = False) -> Decision:
        """Decide for an already parsed reference (``image`` is the string as written).

        The checks run in the order of :data:`~webhook.core.reasons.DECISION_ORDER`: the host alone, the tier, the
        policies (``exclude``/``include``, ``pullSecrets``, ``movingTags``), ``digests``, then the name's length.
        """
        host = reference.host
        tier = self._tier_by_host.get(host)
        # A tier's host skips none of the checks below: the config refuses the cache registry, public.ecr.aws and EKS
        # add-on registries as upstreams, so an ECR host with a tier is one the user asked to cache (`upstreams`).
        skipped = _skip_reason_for_host(host, self.registry) if tier is None else None
        if skipped is not None or tier is None:
            return skip(image, skipped or Reason.NO_RULE)
        prefix = self._prefix_by_tier.get(tier.name)
        skipped = self._skip_reason_for_tier(tier, prefix, reference, pull_secrets=pull_secrets)
        if skipped is not None or prefix is None:
            return skip(image, skipped or Reason.TIER_DISABLED, tier.name)
        # `registry-1.docker.io/nginx` is not normalised by the grammar; Docker Hub means `library/nginx`.
        repository = f"{prefix}/{tier.repository_path(reference.path)}"
        result = f"{self.config.registry}/{repository}{reference.suffix}"
        if len(repository) > ECR_REPOSITORY_NAME_MAX or not _points_at(result, self.config.registry):
            return skip(image, Reason.NAME_TOO_LONG, tier.name)
        return Decision(image=image, action="rewrite", result=result, reason=Reason.REWRITTEN, tier=tier.name)

    def _skip_reason_for_tier(
        self, tier: Tier, prefix: str | None, reference: ImageReference, *, pull_secrets: bool
    ) -> Reason | None:
        """Why an image of a known tier stays put: the tier, then the policies, then a digest we leave alone."""
        if prefix is None:
            return Reason.TIER_DISABLED
        if self.available_tiers is not None and tier.name not in self.available_tiers:
            return Reason.RULE_MISSING
        policy = self._skip_reason_for_policy(tier, reference, pull_secrets=pull_secrets)
        if policy is None and reference.digest is not None and self.config.digests == "skip":
            return Reason.DIGEST_PINNED
        return policy

    def _skip_reason_for_policy(self, tier: Tier, reference: ImageReference, *, pull_secrets: bool) -> Reason | None:
        """The platform team's choices: ``exclude``/``include``, then ``pullSecrets``, then ``movingTags``."""
        if self._exclude or self._include:
            repository = repository_of(reference, self._tier_by_host)
            if self._exclude.matches(repository):
                return Reason.EXCLUDED
            if self._include and not self._include.matches(repository):
                return Reason.NOT_INCLUDED
        if pull_secrets and self._keep_private and tier.private_images:
            return Reason.PULL_SECRET
        if self._keep_moving and reference.digest is None and reference.tag in MOVING_TAGS:
            return Reason.MOVING_TAG
        return None


def _skip_reason_for_host(host: str, registry: str) -> Reason | None:
    """Registries that are never rewritten, whatever the tiers: AWS's own and those no cache can front."""
    if host == registry:
        return Reason.ALREADY_CACHED
    if host == PUBLIC_ECR_HOST:
        return Reason.PUBLIC_ECR
    ecr = ECR_HOST_PATTERN.fullmatch(host)
    if ecr is not None:
        return Reason.EKS_ADDON_REGISTRY if ecr.group("account") in EKS_ADDON_ACCOUNTS else Reason.ECR_REGISTRY
    if host in UNSUPPORTED_UPSTREAM_HOSTS or host.endswith(UNSUPPORTED_UPSTREAM_SUFFIXES):
        return Reason.UPSTREAM_UNSUPPORTED
    return None


def _points_at(reference: str, registry: str) -> bool:
    """Whether a rewritten reference parses, and to the cache registry (the guard on every rewrite)."""
    try:
        return parse(reference).domain == registry
    except InvalidReferenceError:
        return False
