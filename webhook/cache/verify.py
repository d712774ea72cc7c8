"""Verified targets (``verify: true``): a rewrite happens only if the cache resolves the rewritten reference.

:class:`TargetVerifier` is the app's ``TargetVerifier``: given a review's rewrite candidates it answers, within one
budget per admission (``verifyBudgetSeconds``), which rewrites must not happen and why:

- a tag: HEAD of the manifest by tag (through a pull-through cache this also fetches it from upstream: a warm-up);
- a digest: HEAD by digest; tag and digest: HEAD by tag first (warms), then by digest, which decides;
- 200 resolves (cached for ``positive_ttl``), 404 is ``target-missing`` (cached for ``negative_ttl``), anything
  else is ``verify-failed``;
- a failure that says the registry as a whole is failing (no answer or a timeout, 5xx, 429, 401 after a fresh token)
  is not cached and counts towards the circuit breaker; any other (a 403 or 400 for one repository) is the
  target's own, cached for ``failure_ttl``, and shows the registry answering;
- while the breaker is not closed, every rewrite is vetoed at once without touching the network, those whose
  target resolved before included: pods go through unmodified while the registry fails. Each lookup carries the
  breaker's generation; one started before the breaker last changed state no longer counts towards it.

Lookups of one reference share one task (single-flight). A lookup still running when the budget ends is not
cancelled: its answer fills the cache for the next pod; the number of lookups in flight is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from webhook.core.reasons import Reason
from webhook.core.reference import ImageReference, parse
from webhook.exceptions import InvalidReferenceError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from webhook.cache.registry_client import ManifestAnswer
    from webhook.core.config import Config
    from webhook.core.rules import Decision

log = logging.getLogger("webhook.verify")  # a stable name: users filter logs on it

POSITIVE_TTL: Final = 600.0
"""Seconds a resolved reference is trusted: a tag that moves upstream still resolves in the cache."""
NEGATIVE_TTL: Final = 30.0
"""Seconds a 404 is trusted: short, so an image pushed upstream a moment later is soon rewritten."""
FAILURE_TTL: Final = 10.0
"""Seconds a target's own failure (403, 400: not the registry failing) is remembered, so a hot image that the
registry refuses does not cost a lookup per admission."""
CACHE_SIZE: Final = 10_000
"""References remembered at most (least recently used go first); a cluster uses a few hundred."""
FAILURE_THRESHOLD: Final = 5
"""Consecutive failed lookups that open the circuit breaker."""
COOL_DOWN: Final = 30.0
"""Seconds the breaker stays open before one probe lookup is let through."""
MAX_IN_FLIGHT: Final = 256
"""Lookups running at once at most (those past an admission's budget included); beyond it, vetoed at once."""
LOOKUP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Outcome(StrEnum):
    """What the cache said about a rewritten reference."""

    RESOLVED = "resolved"
    MISSING = "missing"
    FAILED = "failed"


VETO_REASONS: Final[dict[Outcome, Reason]] = {
    Outcome.MISSING: Reason.TARGET_MISSING,
    Outcome.FAILED: Reason.VERIFY_FAILED,
}


@dataclass(frozen=True, slots=True)
class Lookup:
    """One lookup's outcome, and what the registry said (for logs and ``warm``)."""

    outcome: Outcome
    detail: str = ""
    status: int | None = 0
    """The HTTP status that decided: 0 when the registry did not answer, ``None`` when no request was made because
    the reference itself is unusable."""

    @property
    def registry_failing(self) -> bool:
        """Whether this failure says the registry as a whole is failing (see :func:`registry_failing`)."""
        return self.outcome is Outcome.FAILED and self.status is not None and registry_failing(self.status)


def classify(status: int) -> Outcome:
    """200 resolves, 404 is missing, any other status (or 0: no answer) is a failure."""
    if status == 200:
        return Outcome.RESOLVED
    if status == 404:
        return Outcome.MISSING
    return Outcome.FAILED


def registry_failing(status: int) -> bool:
    """No answer (0: connection refused, timeout, no token), 5xx, 429, or a 401 even with a fresh token.

    Anything else the registry answers (a 403 or 400 for one repository) concerns that target only: counting it would
    let one forbidden image open the breaker for every image.
    """
    return status == 0 or status >= 500 or status in {401, 429}


ManifestFetch = Callable[[ImageReference, str], Awaitable["ManifestAnswer"]]
"""A registry call for one manifest of a reference's repository, by tag or digest."""


class ManifestProbe(Protocol):
    """The registry call a lookup needs (``webhook.registry_client.RegistryClient``)."""

    async def head_manifest(self, reference: ImageReference, identifier: str) -> ManifestAnswer:
        """HEAD the manifest ``identifier`` (tag or digest) of ``reference``'s repository."""
        ...

    async def warm_up(self) -> None:
        """Fetch the registry credential ahead of the first lookup; never raises."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


async def resolve(fetch: ManifestFetch, reference: ImageReference) -> Lookup:
    """Look ``reference`` up: by tag, by digest, or by tag (to warm) and then by digest (which decides).

    ``fetch`` is a HEAD for admission and a GET for ``warm``; a reference with neither tag nor digest means ``latest``.
    """
    if reference.digest is None:
        tag = reference.tag or "latest"
        return _lookup(await fetch(reference, tag), tag)
    if reference.tag is not None:
        by_tag = _lookup(await fetch(reference, reference.tag), reference.tag)
        if by_tag.outcome is Outcome.FAILED:
            return by_tag
    return _lookup(await fetch(reference, reference.digest), reference.digest)


def _lookup(answer: ManifestAnswer, identifier: str) -> Lookup:
    outcome = classify(answer.status)
    if outcome is Outcome.RESOLVED:
        return Lookup(outcome, answer.digest or "", answer.status)
    return Lookup(outcome, f"{identifier}: {answer.error or answer.status}", answer.status)


@dataclass(frozen=True, slots=True)
class VerifySettings:
    """The verifier's limits."""

    budget: float = 0.5
    positive_ttl: float = POSITIVE_TTL
    negative_ttl: float = NEGATIVE_TTL
    failure_ttl: float = FAILURE_TTL
    cache_size: int = CACHE_SIZE
    failure_threshold: int = FAILURE_THRESHOLD
    cool_down: float = COOL_DOWN
    max_in_flight: int = MAX_IN_FLIGHT


class ResultCache:
    """Lookups by reference, each until its expiry, at most ``size`` of them (least recently used go first)."""

    def __init__(self, size: int) -> None:
        """An empty cache."""
        self._size = size
        self._entries: OrderedDict[str, tuple[float, Lookup]] = OrderedDict()

    def __len__(self) -> int:
        """Entries held (expired ones included until touched)."""
        return len(self._entries)

    def get(self, key: str, now: float) -> Lookup | None:
        """The lookup for ``key`` if it has not expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: str, lookup: Lookup, expires: float) -> None:
        """Remember ``lookup`` until ``expires``."""
        self._entries[key] = (expires, lookup)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


class BreakerState(StrEnum):
    """Closed: lookups run. Open: vetoed at once. Half-open: one probe runs, the rest are vetoed."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Stops lookups after ``threshold`` consecutive failures, for ``cool_down`` seconds, then probes once.

    :attr:`generation` changes with every change of state. A lookup is stamped with the generation it started in,
    and its result counts only in that same generation: a lookup that started before the breaker opened and ends
    late can neither restart the cool-down nor close the breaker without a probe.
    """

    def __init__(self, threshold: int, cool_down: float) -> None:
        """A closed breaker."""
        self._threshold = threshold
        self._cool_down = cool_down
        self._failures = 0
        self._opened_at = 0.0
        self.state = BreakerState.CLOSED
        self.generation = 0

    def allow(self, now: float) -> bool:
        """Whether a lookup may run now (in half-open state, only the one probe may)."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN and now >= self._opened_at + self._cool_down:
            self._enter(BreakerState.HALF_OPEN)
            return True
        return False

    def record(self, *, failed: bool, now: float, generation: int) -> None:
        """Count the result of a lookup started in ``generation`` (results of other generations do not count).

        A success closes a half-open breaker (the probe answered); enough consecutive failures, or a failed probe,
        open it. While it is open, nothing counts.
        """
        if generation != self.generation or self.state is BreakerState.OPEN:
            return
        if not failed:
            self._failures = 0
            if self.state is BreakerState.HALF_OPEN:
                self._enter(BreakerState.CLOSED)
            return
        self._failures += 1
        if self.state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
            self._enter(BreakerState.OPEN)
            self._opened_at = now

    def _enter(self, state: BreakerState) -> None:
        self.state = state
        self.generation += 1

    def open_for(self, now: float) -> float:
        """Seconds the breaker has been open (0 when closed)."""
        return 0.0 if self.state is BreakerState.CLOSED else now - self._opened_at


class VerifyMetrics:
    """The verifier's collectors, in the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Create the collectors in ``registry``."""
        self.lookups = Counter(
            "ecr_ptc_webhook_verify_lookups",
            "Registry lookups of rewritten references, by outcome (resolved, missing, failed).",
            ["outcome"],
            registry=registry,
        )
        self.cache_hits = Counter(
            "ecr_ptc_webhook_verify_cache_hits",
            "Verifications answered from the cache, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.vetoes = Counter(
            "ecr_ptc_webhook_verify_vetoes",
            "Rewrites cancelled by verification, by reason and cause (missing, failed, budget, breaker, overload).",
            ["reason", "cause"],
            registry=registry,
        )
        self.duration = Histogram(
            "ecr_ptc_webhook_verify_lookup_duration_seconds",
            "Time one registry lookup took (including those that finished after their admission's budget).",
            buckets=LOOKUP_BUCKETS,
            registry=registry,
        )
        self.breaker_open = Gauge(
            "ecr_ptc_webhook_verify_breaker_open",
            "1 while the circuit breaker stops lookups because the registry is failing.",
            registry=registry,
        )
        self.in_flight = Gauge(
            "ecr_ptc_webhook_verify_lookups_in_flight", "Registry lookups running now.", registry=registry
        )
        self._hit = {outcome: self.cache_hits.labels(outcome.value) for outcome in Outcome}

    def hit(self, outcome: Outcome) -> None:
        """Count a cache hit (bound children: this is the admission hot path)."""
        self._hit[outcome].inc()

    def veto(self, reason: Reason, cause: str, count: int) -> None:
        """Count ``count`` vetoed images."""
        self.vetoes.labels(reason.value, cause).inc(count)


class TargetVerifier:
    """Vetoes rewrites whose target the cache does not resolve within the budget; see the module docstring."""

    def __init__(
        self,
        probe: ManifestProbe,
        settings: VerifySettings | None = None,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Look references up with ``probe``; count in ``registry`` (a fresh one by default)."""
        self.settings = settings or VerifySettings()
        self.metrics = VerifyMetrics(registry if registry is not None else CollectorRegistry())
        self._probe = probe
        self._clock = clock
        self._cache = ResultCache(self.settings.cache_size)
        self._breaker = CircuitBreaker(self.settings.failure_threshold, self.settings.cool_down)
        self._in_flight: dict[str, asyncio.Task[Lookup]] = {}
        self._last_failure = ""

    @classmethod
    def for_config(
        cls,
        config: Config,
        *,
        registry: CollectorRegistry | None = None,
        env: Mapping[str, str] | None = None,
    ) -> TargetVerifier:
        """The verifier ``serve`` uses: the config's budget, ECR's token (or ``ECR_PTC_WEBHOOK_REGISTRY_*``)."""
        from webhook.cache.registry_client import (  # noqa: PLC0415 - keeps httpx out of imports that only need the core
            ENV_CA_FILE,
            RegistryClient,
            ecr_client_for,
            token_source_for,
        )

        environment = os.environ if env is None else env
        auth = token_source_for(config.registry, environment, lambda: ecr_client_for(config.registry))
        ca_file = environment.get(ENV_CA_FILE)
        client = RegistryClient(auth, ca_file=Path(ca_file) if ca_file else None)
        return cls(client, VerifySettings(budget=config.verify_budget_seconds), registry=registry)

    @property
    def breaker(self) -> BreakerState:
        """The circuit breaker's state."""
        return self._breaker.state

    async def warm_up(self) -> None:
        """Fetch the registry credential (ECR's token) now, so that the first admission does not wait for it.

        ``serve`` runs it as a background task at start; a failure is logged, never raised (a lookup tries again).
        """
        try:
            await self._probe.warm_up()
        except Exception:  # a start-up nicety must never take the server down
            log.warning("fetching the registry credential at start failed", exc_info=True)

    async def vetoes(self, decisions: Sequence[Decision]) -> Mapping[str, Reason]:
        """Image -> reason for each rewrite whose target did not resolve within the budget."""
        now = self._clock()
        deadline = now + self.settings.budget
        vetoes: dict[str, Reason] = {}
        waiting: dict[asyncio.Task[Lookup], list[str]] = {}
        closed = self._breaker.state is BreakerState.CLOSED
        for target, images in _by_target(decisions).items():
            cached = self._cache.get(target, now)
            # While the registry is failing, a target that resolved earlier is not trusted either: it goes to the
            # breaker like any other (vetoed at once, or it is the half-open probe).
            if cached is not None and (closed or cached.outcome is not Outcome.RESOLVED):
                self.metrics.hit(cached.outcome)
                self._veto(vetoes, images, cached.outcome, cached.outcome.value)
                continue
            task = self._in_flight.get(target)
            if task is None:
                cause = self._refusal(now)
                if cause is not None:
                    self._veto(vetoes, images, Outcome.FAILED, cause)
                    continue
                task = self._start(target)
            waiting.setdefault(task, []).extend(images)
        if waiting:
            done, late = await asyncio.wait(waiting, timeout=max(deadline - self._clock(), 0.0))
            for task in done:
                outcome = task.result().outcome
                self._veto(vetoes, waiting[task], outcome, outcome.value)
            for task in late:
                self._veto(vetoes, waiting[task], Outcome.FAILED, "budget")
        return vetoes

    async def lookup(self, target: str) -> Lookup:
        """Resolve one rewritten reference now, through the cache and single-flight (no budget)."""
        cached = self._cache.get(target, self._clock())
        if cached is not None:
            return cached
        task = self._in_flight.get(target) or self._start(target)
        return await asyncio.shield(task)

    def status(self) -> str:
        """One line for ``/readyz``: the breaker's state and what the registry last said when failing."""
        state = self._breaker.state
        if state is BreakerState.CLOSED:
            return f"verify: ok ({len(self._cache)} cached, {len(self._in_flight)} in flight)"
        seconds = self._breaker.open_for(self._clock())
        return f"verify: breaker {state} for {seconds:.0f}s, original images kept (last failure: {self._last_failure})"

    async def aclose(self) -> None:
        """Cancel lookups in flight and close the registry connections."""
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._probe.aclose()

    def _refusal(self, now: float) -> str | None:
        """Why no new lookup may start now: the breaker is open, or too many are in flight."""
        if len(self._in_flight) >= self.settings.max_in_flight:
            return "overload"
        if not self._breaker.allow(now):
            return "breaker"
        return None

    def _start(self, target: str) -> asyncio.Task[Lookup]:
        generation = self._breaker.generation
        task = asyncio.create_task(self._resolve(target, generation), name=f"verify {target}")
        self._in_flight[target] = task
        self.metrics.in_flight.set(len(self._in_flight))
        return task

    async def _resolve(self, target: str, generation: int) -> Lookup:
        started = self._clock()
        try:
            lookup = await resolve(self._probe.head_manifest, parse(target))
        except InvalidReferenceError as error:
            lookup = Lookup(Outcome.FAILED, str(error), status=None)
        except asyncio.CancelledError:
            self._forget(target)
            raise
        except Exception as error:  # noqa: BLE001 - a lookup must end in an outcome, whatever broke
            lookup = Lookup(Outcome.FAILED, f"{type(error).__name__}: {error}")
        now = self._clock()
        self._record(target, lookup, now, now - started, generation)
        return lookup

    def _record(self, target: str, lookup: Lookup, now: float, seconds: float, generation: int) -> None:
        self._forget(target)
        self.metrics.lookups.labels(lookup.outcome.value).inc()
        self.metrics.duration.observe(seconds)
        if lookup.outcome is Outcome.RESOLVED:
            self._cache.put(target, lookup, now + self.settings.positive_ttl)
        elif lookup.outcome is Outcome.MISSING:
            self._cache.put(target, lookup, now + self.settings.negative_ttl)
        else:
            self._last_failure = f"{target}: {lookup.detail}"
            log.warning("verify lookup failed", extra={"target": target, "detail": lookup.detail})
            if not lookup.registry_failing:
                self._cache.put(target, lookup, now + self.settings.failure_ttl)
        was_open = self._breaker.state is not BreakerState.CLOSED
        self._breaker.record(failed=lookup.registry_failing, now=now, generation=generation)
        is_open = self._breaker.state is not BreakerState.CLOSED
        if is_open != was_open:
            log.warning("verify circuit breaker %s", self._breaker.state, extra={"last_failure": self._last_failure})
        self.metrics.breaker_open.set(1 if is_open else 0)

    def _forget(self, target: str) -> None:
        self._in_flight.pop(target, None)
        self.metrics.in_flight.set(len(self._in_flight))

    def _veto(self, vetoes: dict[str, Reason], images: list[str], outcome: Outcome, cause: str) -> None:
        reason = VETO_REASONS.get(outcome)
        if reason is None:
            return
        for image in images:
            vetoes[image] = reason
        self.metrics.veto(reason, cause, len(images))


def _by_target(decisions: Sequence[Decision]) -> dict[str, list[str]]:
    """Rewritten reference -> the images rewritten to it (two spellings of one image share a lookup)."""
    targets: dict[str, list[str]] = {}
    for decision in decisions:
        if decision.rewrites:
            targets.setdefault(decision.result, []).append(decision.image)
    return targets
