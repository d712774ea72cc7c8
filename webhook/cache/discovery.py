"""Live rules (``rules: discover``): which tiers the cache really has a pull-through rule for.

:func:`survey` is pure: ECR's ``DescribePullThroughCacheRules`` items and the config in, the tiers that may be
rewritten and the drift out. :class:`RuleDiscovery` is the edge around it: it reads the rules (paginated, boto3 in a
thread, IRSA / Pod Identity credentials through the SDK's default chain) at start-up and every
``rulesRefreshSeconds``, publishes ``Rules(config, available_tiers)`` for the app to read, and exposes the rules and
the drift as metrics and as the ``/readyz`` detail.

Until the first successful read it rewrites nothing (``available_tiers`` empty: every tier is ``rule-missing``) and
says it is not ready: a replica that cannot reach ECR stays out of the Service, so a rolling update stalls visibly and
the replicas that know the rules keep serving; if none does, the API server admits pods unchanged
(``failurePolicy: Ignore``), which is what rewriting nothing would do anyway. After that, a failed read keeps the
last known rules (the detail says since when) and never makes the replica unready: a cache whose rules were just
read is far more likely right than wrong, and a blip of the ECR API must not empty the Service.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge

from webhook.core.rules import Rules
from webhook.exceptions import WebhookError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from mypy_boto3_ecr import ECRClient

    from webhook.core.config import Config

log = logging.getLogger("webhook.discovery")  # a stable name: users filter logs on it

RETRY_FIRST: Final = 2.0
"""Seconds before the first retry of a failed read; doubled on each failure up to ``rulesRefreshSeconds`` (up to
:data:`RETRY_MAX_UNREAD` while the rules have never been read)."""
RETRY_MAX_UNREAD: Final = 30.0
"""Longest wait between reads before the first success: the replica rewrites nothing and is not ready meanwhile."""
READ_TIMEOUT: Final = 30.0
"""Seconds one read of the rules (all pages) may take; the SDK's own limits end a call sooner, this bounds a hang."""
ROOT_PREFIX: Final = "ROOT"
"""ECR's prefix for a rule that caches at the registry's root: never one a tier uses."""


class RulesUnavailableError(WebhookError):
    """The cache's rules could not be read, and a command cannot go on without them (``warm``)."""


class DriftKind(StrEnum):
    """How the cache's rules differ from what the config expects."""

    MISSING = "missing"
    """No rule with the tier's prefix: the tier is not rewritten."""
    UPSTREAM_MISMATCH = "upstream-mismatch"
    """A rule with the tier's prefix fronts another upstream (or only part of it): not rewritten."""
    PREFIX_MISMATCH = "prefix-mismatch"
    """The tier's upstream is cached under another prefix than the config's: not rewritten (fix `prefixes`)."""
    EXTRA = "extra"
    """A rule no enabled tier uses: harmless, reported."""


@dataclass(frozen=True, slots=True)
class CacheRule:
    """One pull-through cache rule as ECR describes it."""

    prefix: str
    upstream_url: str
    upstream_registry: str = ""
    upstream_repository_prefix: str = ""
    tier: str | None = None
    """The tier whose upstream this rule fronts (whatever its prefix), if any."""


@dataclass(frozen=True, slots=True)
class Drift:
    """One difference between the config and the cache's rules."""

    kind: DriftKind
    tier: str
    """The tier concerned (for an extra rule: the tier of its upstream, or ``""``)."""
    detail: str
    prefix: str = ""
    """The prefix concerned: the one the config expects for the tier, or an extra rule's own."""


@dataclass(frozen=True, slots=True)
class Survey:
    """The cache's rules compared with the config."""

    rules: tuple[CacheRule, ...]
    available_tiers: frozenset[str]
    drift: tuple[Drift, ...]


def survey(config: Config, items: Iterable[Mapping[str, Any]]) -> Survey:
    """Compare ECR's rule items with the enabled tiers: a tier is available if its prefix's rule fronts its upstream."""
    rules = tuple(_rule(config, item) for item in items)
    by_prefix = {rule.prefix: rule for rule in rules}
    available: set[str] = set()
    drift: list[Drift] = []
    used: set[str] = set()
    for name in config.tiers:
        tier = config.tier(name)
        prefix = config.prefix_for(name)
        rule = by_prefix.get(prefix)
        if rule is None:
            elsewhere = sorted(r.prefix for r in rules if r.tier == name)
            if elsewhere:
                drift.append(
                    Drift(
                        DriftKind.PREFIX_MISMATCH,
                        name,
                        f"{tier.upstream_registry_url} is cached under prefix {', '.join(elsewhere)}, "
                        f"the config expects {prefix!r}",
                        prefix,
                    )
                )
            else:
                drift.append(
                    Drift(DriftKind.MISSING, name, f"no pull-through cache rule with prefix {prefix!r}", prefix)
                )
            continue
        used.add(prefix)
        mismatch = _upstream_mismatch(rule, name, tier.upstream_registry_url)
        if mismatch is not None:
            drift.append(Drift(DriftKind.UPSTREAM_MISMATCH, name, mismatch, prefix))
            continue
        available.add(name)
    drift.extend(
        Drift(
            DriftKind.EXTRA,
            rule.tier or "",
            f"rule {rule.prefix!r} -> {rule.upstream_url} is used by no tier",
            rule.prefix,
        )
        for rule in rules
        if rule.prefix not in used
    )
    return Survey(rules, frozenset(available), tuple(drift))


def _rule(config: Config, item: Mapping[str, Any]) -> CacheRule:
    url = _host(str(item.get("upstreamRegistryUrl", "")))
    upstream = str(item.get("upstreamRegistry", ""))
    # By URL, the config's own upstreams included; a rule without one (older answers) by the built-in tiers' enum
    # value, which names one upstream only for them (`ecr` or `azure-container-registry` name many).
    tier = next(
        (
            t.name
            for t in config.known_tiers.values()
            if url == _host(t.upstream_registry_url)
            or (not url and not t.user_defined and upstream == t.upstream_registry)
        ),
        None,
    )
    return CacheRule(
        prefix=str(item.get("ecrRepositoryPrefix", "")),
        upstream_url=url,
        upstream_registry=upstream,
        upstream_repository_prefix=str(item.get("upstreamRepositoryPrefix", "")),
        tier=tier,
    )


def _upstream_mismatch(rule: CacheRule, tier: str, expected: str) -> str | None:
    if rule.tier != tier:
        return f"rule {rule.prefix!r} fronts {rule.upstream_url or rule.upstream_registry}, expected {expected}"
    if rule.upstream_repository_prefix not in {"", ROOT_PREFIX}:
        # `<prefix>/org/app` would pull `<upstream prefix>/org/app` upstream: not the image the pod names.
        return (
            f"rule {rule.prefix!r} fronts only {expected}/{rule.upstream_repository_prefix}; "
            "the webhook needs the whole registry"
        )
    return None


def _host(url: str) -> str:
    """``https://Quay.io/`` -> ``quay.io``: ECR stores the URL as it was given."""
    return url.lower().removeprefix("https://").removeprefix("http://").rstrip("/")


class DiscoveryMetrics:
    """Discovered rules, drift and failures, in the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Create the collectors in ``registry``."""
        self.rules = Gauge(
            "ecr_ptc_webhook_discovered_rules",
            "Pull-through cache rules read from ECR (1 per rule), by tier, upstream and prefix.",
            ["tier", "upstream", "prefix"],
            registry=registry,
        )
        self.drift = Gauge(
            "ecr_ptc_webhook_rules_drift",
            "Differences between the config and the cache's rules (1 each), by tier, kind and prefix.",
            ["tier", "kind", "prefix"],
            registry=registry,
        )
        self.available = Gauge(
            "ecr_ptc_webhook_tier_available",
            "1 if the enabled tier is rewritten (its rule exists as expected), 0 if not.",
            ["tier"],
            registry=registry,
        )
        self.failures = Counter(
            "ecr_ptc_webhook_discovery_failures",
            "Reads of the cache's rules that failed (the last known rules stay in force).",
            registry=registry,
        )
        self.last_success = Gauge(
            "ecr_ptc_webhook_discovery_last_success_timestamp_seconds",
            "When the cache's rules were last read (Unix time); 0 until the first read.",
            registry=registry,
        )

    def publish(self, config: Config, result: Survey, now: float) -> None:
        """Replace the rule and drift series with ``result``'s."""
        self.rules.clear()
        for rule in result.rules:
            self.rules.labels(rule.tier or "", rule.upstream_url or rule.upstream_registry, rule.prefix).set(1)
        self.drift.clear()
        for item in result.drift:
            self.drift.labels(item.tier, item.kind.value, item.prefix).set(1)
        for tier in config.tiers:
            self.available.labels(tier).set(1 if tier in result.available_tiers else 0)
        self.last_success.set(now)


class RuleDiscovery:
    """Reads the cache's rules now and then; :attr:`rules` is the rule set to decide with."""

    def __init__(
        self,
        config: Config,
        ecr: ECRClient,
        *,
        registry_id: str | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Read with ``ecr`` (boto3, the cache's region); ``registry_id`` is the cache's account when known."""
        self.config = config
        self.metrics = DiscoveryMetrics(registry if registry is not None else CollectorRegistry())
        self._ecr = ecr
        self._registry_id = registry_id
        self._clock = clock
        self.read_timeout = READ_TIMEOUT
        """Seconds one read may take (see :data:`READ_TIMEOUT`)."""
        self.rules = Rules(config, available_tiers=frozenset())
        """Nothing is rewritten until the first read (see the module docstring)."""
        self.survey: Survey | None = None
        self._last_success = 0.0
        self._failure: str | None = None
        for tier in config.tiers:
            self.metrics.available.labels(tier).set(0)

    @classmethod
    def for_config(cls, config: Config, *, registry: CollectorRegistry | None = None) -> RuleDiscovery:
        """The discovery ``serve`` uses: an ECR client in the registry's region, the SDK's default credentials."""
        from webhook.cache.registry_client import ecr_client_for, registry_id_of  # noqa: PLC0415 - boto3 only when used

        return cls(
            config, ecr_client_for(config.registry), registry_id=registry_id_of(config.registry), registry=registry
        )

    @property
    def failure(self) -> str | None:
        """Why the last read failed (``None`` after a successful one, or before any)."""
        return self._failure

    def current(self) -> Rules:
        """The rule set in force (what ``create_app(rules=discovery.current)`` reads for each review)."""
        return self.rules

    async def refresh(self) -> bool:
        """Read the rules once; on failure keep the last known ones. Whether the read succeeded."""
        try:
            # The thread cannot be stopped, but the SDK's own timeouts end it; this keeps a hang from stalling reads.
            async with asyncio.timeout(self.read_timeout):
                items = await asyncio.to_thread(self._describe)
        except Exception as error:  # noqa: BLE001 - any SDK failure means "keep the last rules", never a crash
            # One line, no traceback: it repeats every retry while ECR's API is unreachable or refuses.
            if isinstance(error, TimeoutError):
                self._failure = f"DescribePullThroughCacheRules did not answer within {self.read_timeout:g}s"
            else:
                self._failure = f"{type(error).__name__}: {error}"
            self.metrics.failures.inc()
            log.warning(
                "reading the pull-through cache rules failed; keeping the last known rules",
                extra={"error": self._failure},
            )
            return False
        result = survey(self.config, items)
        now = self._clock()
        if self.survey is None or result != self.survey:
            self.rules = Rules(self.config, available_tiers=result.available_tiers)
            _log_survey(result)
        self.survey = result
        self._last_success = now
        self._failure = None
        self.metrics.publish(self.config, result, now)
        return True

    async def run(self, interval: float | None = None) -> None:
        """Refresh forever (cancel the task to stop): every ``interval``, sooner with backoff after a failure.

        The backoff doubles up to ``interval``, but only up to :data:`RETRY_MAX_UNREAD` until the first read
        succeeds: a replica that rewrites nothing and is not ready should not wait minutes to try again.
        """
        period = interval if interval is not None else self.config.rules_refresh_seconds
        retry = min(RETRY_FIRST, period)
        while True:
            if await self.refresh():
                retry = min(RETRY_FIRST, period)
                await self._pause(period)
            else:
                await self._pause(retry)
                limit = period if self.survey is not None else min(RETRY_MAX_UNREAD, period)
                retry = min(retry * 2, limit)

    async def _pause(self, seconds: float) -> None:
        """Wait between reads (a seam for tests: the schedule is checked without sleeping)."""
        await asyncio.sleep(seconds)

    def status(self) -> tuple[bool, str]:
        """Ready and a ``/readyz`` detail: not ready only until the first successful read."""
        if self.survey is None:
            why = f": {self._failure}" if self._failure else ""
            return False, f"rules: not read from ECR yet, rewriting nothing{why}"
        tiers = ",".join(sorted(self.survey.available_tiers)) or "none"
        drift = "; ".join(f"{item.tier or '-'} {item.kind}" for item in self.survey.drift)
        detail = f"rules: rewriting {tiers}" + (f" (drift: {drift})" if drift else "")
        if self._failure is not None:
            since = dt.datetime.fromtimestamp(self._last_success, dt.UTC).isoformat(timespec="seconds")
            detail += f"; reading rules failing, last known from {since}: {self._failure}"
        return True, detail

    def _describe(self) -> list[Mapping[str, Any]]:
        kwargs: dict[str, Any] = {"registryId": self._registry_id} if self._registry_id else {}
        paginator = self._ecr.get_paginator("describe_pull_through_cache_rules")
        return [item for page in paginator.paginate(**kwargs) for item in page.get("pullThroughCacheRules", [])]


def _log_survey(result: Survey) -> None:
    log.info(
        "pull-through cache rules read",
        extra={
            "available_tiers": sorted(result.available_tiers),
            "drift": [f"{item.tier} {item.kind}: {item.detail}" for item in result.drift],
        },
    )
