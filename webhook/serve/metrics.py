"""Prometheus collectors, one registry per app so tests (and two apps in one process) never share counts."""

from __future__ import annotations

import bisect
import collections
import itertools
from typing import TYPE_CHECKING, Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from webhook import __version__

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Mapping

LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Admission latency is sub-millisecond when healthy; the API server's webhook timeout here is 3 s."""

FAIL_OPEN_CAUSES: Final = ("internal", "too_large", "verify_failed", "verify_deadline", "body_deadline")
"""Why an admission request left its pod's images as they were (``ecr_ptc_webhook_failed_open_total{cause}``):
``internal`` an unexpected error while deciding (pod admitted unchanged); ``too_large`` over the review's image
limit (admitted unchanged); ``verify_failed`` the verifier raised and ``verify_deadline`` it had not answered when the
request's ``?timeout=`` budget ran out (the review's rewrites dropped); ``body_deadline`` the body did not arrive
within that budget (answered 408: the API server's call fails, and ``failurePolicy: Ignore`` admits the pod as it
is). Stable strings: alerts and runbooks name them."""
NOT_READY_REASONS: Final = ("no_certificate", "certificate_expired", "rules_not_read", "shutting_down")
"""Why a replica reports not ready (``ecr_ptc_webhook_not_ready{reason}``): no certificate loaded, the one loaded
has expired, ``rules: discover`` has not read the cache's rules yet, the server is stopping. Stable strings."""


class Metrics:
    """The webhook's collectors."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Create every collector in ``registry`` (a fresh one by default)."""
        self.registry = registry if registry is not None else CollectorRegistry()
        # The admission path's own collectors are plain dicts read at scrape time (see CounterTally).
        self.decisions = CounterTally(
            "ecr_ptc_webhook_decisions",
            "Image decisions, by tier, reason, action and mode (mutate or audit).",
            ("tier", "reason", "action", "mode"),
            self.registry,
        )
        self._served: collections.Counter[DecisionCounts] = collections.Counter()
        """Reviews answered from the cache, by their decisions: :meth:`count_served`, folded in before a scrape."""
        self.decisions.before_collect = self._fold_served
        self.requests = CounterTally(
            "ecr_ptc_webhook_requests",
            "HTTP requests to the admission endpoints, by path and status code.",
            ("path", "code"),
            self.registry,
        )
        self.latency = LatencyTally(
            "ecr_ptc_webhook_request_duration_seconds",
            "Time to answer an admission request, body read included.",
            LATENCY_BUCKETS,
            self.registry,
        )
        self.failed_open = CounterTally(
            "ecr_ptc_webhook_failed_open",
            "Admission requests whose pod kept its images because of a failure, by cause (internal, too_large, "
            "verify_failed, verify_deadline, body_deadline).",
            ("cause",),
            self.registry,
        )
        for cause in FAIL_OPEN_CAUSES:  # every cause from the start: rate() and alerts see 0, not a missing series
            self.failed_open.counts[cause,] = 0
        self.errors = Counter(
            "ecr_ptc_webhook_errors",
            "Requests answered without a full decision: bad_request (4xx), internal (failed open), "
            "too_large (admitted unchanged), verify (originals kept).",
            ["kind"],
            registry=self.registry,
        )
        self.certificate_expiry = Gauge(
            "ecr_ptc_webhook_certificate_expiry_timestamp_seconds",
            "When the serving certificate expires (Unix time).",
            registry=self.registry,
        )
        self.certificate_reloads = Counter(
            "ecr_ptc_webhook_certificate_reloads",
            "Serving certificate reloads, by result (success or failure).",
            ["result"],
            registry=self.registry,
        )
        self.info = Info("ecr_ptc_webhook", "Version and configuration.", registry=self.registry)
        self.info.info({"version": __version__})

    def count_decisions(self, counts: Mapping[tuple[str, str, str], int], mode: str) -> None:
        """Count the image decisions of one review: (tier, reason, action) -> how many, in ``mode``."""
        tally = self.decisions.counts
        for (tier, reason, action), count in counts.items():
            tally[tier, reason, action, mode] += count

    def count_served(self, counts: DecisionCounts) -> None:
        """Count the decisions of one review answered from the cache: one increment, folded in at scrape time."""
        served = self._served
        served[counts] += 1
        if len(served) > FOLD_AFTER:
            self._fold_served()

    def _fold_served(self) -> None:
        tally = self.decisions.counts
        for counts, times in self._served.items():
            for key, count in counts.items:
                tally[key] += count * times
        self._served.clear()

    def count_review_cache(self, cache: ReviewCacheStats) -> None:
        """Expose ``cache``'s hits and misses (read at scrape time; see ``webhook.core.review_cache``)."""
        family = "ecr_ptc_webhook_review_cache"
        documentation = "Pod reviews answered from the per-template cache (hit) or that filled it (miss)."
        self.registry.register(ReadAtScrape(family, documentation, lambda: {"hit": cache.hits, "miss": cache.misses}))

    def count_shed_connections(self, read: Callable[[], int]) -> None:
        """Expose connections refused over the connection limit (``read`` at scrape time)."""
        documentation = "Connections over the connection limit: their requests were answered 503 and they were closed."
        self.registry.register(ReadCounter("ecr_ptc_webhook_connections_shed", documentation, read))

    def count_dropped_log_lines(self, read: Callable[[], int]) -> None:
        """Expose decision and log lines dropped because stderr was not read fast enough."""
        documentation = "Log lines (decisions included) dropped because stderr's reader fell behind: never admissions."
        self.registry.register(ReadCounter("ecr_ptc_webhook_decision_log_lines_dropped", documentation, read))

    def fail_open(self, cause: str) -> None:
        """Count an admission request that failed open for ``cause`` (one of :data:`FAIL_OPEN_CAUSES`)."""
        self.failed_open.counts[cause,] += 1

    def expose_readiness(self, not_ready: Callable[[], Collection[str]]) -> None:
        """Expose whether the replica is ready and why not: ``not_ready`` returns the reasons now (empty: ready)."""
        self.registry.register(ReadinessCollector(not_ready))

    def expose_certificate_reload_failing(self, failing: Callable[[], bool]) -> None:
        """Expose whether the certificate files on disk cannot be loaded (an older certificate keeps serving)."""
        documentation = (
            "1 while the serving certificate files cannot be loaded (an older certificate, if any, keeps serving)."
        )
        self.registry.register(ReadGauge("ecr_ptc_webhook_certificate_reload_failing", documentation, failing))

    def observe_request(self, path: str, code: str, seconds: float) -> None:
        """Count one admission request and its latency."""
        self.requests.counts[path, code] += 1
        self.latency.observe(path, seconds)


FOLD_AFTER: Final = 4096
"""Distinct cached answers counted between scrapes before their counts are folded in anyway (bounds the memory)."""


class DecisionCounts:
    """What one answer adds to ``ecr_ptc_webhook_decisions`` each time it is served from the cache.

    Hashed by identity: :meth:`Metrics.count_served` counts it with one increment, however many decisions it holds.
    """

    __slots__ = ("items",)

    def __init__(self, counts: Mapping[tuple[str, str, str], int], mode: str) -> None:
        """The (tier, reason, action) -> how many of one review, in ``mode``."""
        self.items = tuple(((tier, reason, action, mode), count) for (tier, reason, action), count in counts.items())


class ReviewCacheStats(Protocol):
    """What the metrics read of a :class:`webhook.review_cache.ReviewCache`."""

    hits: int
    misses: int


class ReadAtScrape(Collector):
    """A counter labelled by ``result``, read from its owner (a callable) at scrape time: nothing per request."""

    def __init__(self, name: str, documentation: str, read: Callable[[], Mapping[str, int]]) -> None:
        """``read`` returns result -> count so far."""
        self.name = name
        self.documentation = documentation
        self.read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        """The owner's counts now."""
        family = CounterMetricFamily(self.name, self.documentation, labels=("result",))
        for result, value in self.read().items():
            family.add_metric([result], value)
        yield family

    def describe(self) -> list[CounterMetricFamily]:
        """The metric's name and type, for registration."""
        return [CounterMetricFamily(self.name, self.documentation, labels=("result",))]


class ReadCounter(Collector):
    """An unlabelled counter whose value is read from its owner at scrape time."""

    def __init__(self, name: str, documentation: str, read: Callable[[], int]) -> None:
        """``read`` returns the count so far."""
        self.name = name
        self.documentation = documentation
        self.read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        """The count now."""
        yield CounterMetricFamily(self.name, self.documentation, value=self.read())

    def describe(self) -> list[CounterMetricFamily]:
        """The metric's name and type, for registration."""
        return [CounterMetricFamily(self.name, self.documentation, value=0)]


class ReadGauge(Collector):
    """An unlabelled 0/1 gauge read from its owner at scrape time."""

    def __init__(self, name: str, documentation: str, read: Callable[[], bool]) -> None:
        """``read`` says whether the condition holds now."""
        self.name = name
        self.documentation = documentation
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """1 if the condition holds, else 0."""
        yield GaugeMetricFamily(self.name, self.documentation, value=1 if self.read() else 0)

    def describe(self) -> list[GaugeMetricFamily]:
        """The metric's name and type, for registration."""
        return [GaugeMetricFamily(self.name, self.documentation, value=0)]


class ReadinessCollector(Collector):
    """``ecr_ptc_webhook_ready`` and ``ecr_ptc_webhook_not_ready{reason}``, computed at scrape time.

    Every reason of :data:`NOT_READY_REASONS` is exposed, 1 while it holds, so a query tells "not this reason" (0)
    from "not scraped" (no series).
    """

    READY: Final = "ecr_ptc_webhook_ready"
    NOT_READY: Final = "ecr_ptc_webhook_not_ready"

    def __init__(self, not_ready: Callable[[], Collection[str]]) -> None:
        """``not_ready`` returns the reasons that keep the replica out of the Service now (empty: ready)."""
        self.not_ready = not_ready

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Readiness and its reasons now."""
        reasons = self.not_ready()
        ready, why = self._families()
        ready.add_metric([], 0 if reasons else 1)
        for reason in NOT_READY_REASONS:
            why.add_metric([reason], 1 if reason in reasons else 0)
        yield ready
        yield why

    def describe(self) -> list[GaugeMetricFamily]:
        """The metrics' names and types, for registration."""
        return list(self._families())

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        ready = GaugeMetricFamily(self.READY, "1 if the replica reports ready (/readyz 200), else 0.")
        why = GaugeMetricFamily(
            self.NOT_READY,
            "1 for each reason the replica reports not ready (no_certificate, certificate_expired, rules_not_read, "
            "shutting_down), else 0.",
            labels=("reason",),
        )
        return ready, why


class CounterTally(Collector):
    """A labelled counter kept as a plain :class:`collections.Counter` and turned into samples at scrape time.

    Every admission counts a request and several decisions; a prometheus ``Counter`` takes a lock and validates the
    labels on each ``labels()`` call, which cost a tenth of the admission path (hack/bench, py-spy). The event loop
    is the only writer; a scrape reads a copy.
    """

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...], registry: CollectorRegistry) -> None:
        """Register ``name`` (without ``_total``) with ``registry``."""
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.counts: collections.Counter[tuple[str, ...]] = collections.Counter()
        self.before_collect: Callable[[], None] | None = None
        """Called before each scrape: an owner that counts elsewhere folds its counts in."""
        registry.register(self)

    def collect(self) -> Iterator[CounterMetricFamily]:
        """The counts so far, one sample per label set."""
        if self.before_collect is not None:
            self.before_collect()
        family = self._family()
        for key, value in list(self.counts.items()):
            family.add_metric(key, value)
        yield family

    def describe(self) -> list[CounterMetricFamily]:
        """The metric's name and type, for registration."""
        return [self._family()]

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labels)


class LatencyTally(Collector):
    """A histogram by ``path``, kept as bucket counts in plain lists (the reason is :class:`CounterTally`'s)."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...], registry: CollectorRegistry) -> None:
        """Register ``name`` with ``registry``; ``buckets`` are the upper bounds, ascending (``+Inf`` is added)."""
        self.name = name
        self.documentation = documentation
        self.buckets = buckets
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        registry.register(self)

    def observe(self, path: str, seconds: float) -> None:
        """Count one observation: the first bucket whose bound is at least ``seconds`` (Prometheus's ``le``)."""
        counts = self._counts.get(path)
        if counts is None:
            counts = self._counts[path] = [0] * (len(self.buckets) + 1)
            self._sums[path] = 0.0
        counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self._sums[path] += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """Cumulative buckets, count and sum per path."""
        family = self._family()
        for path, counts in list(self._counts.items()):
            cumulative = list(itertools.accumulate(counts))
            bounds = [*(repr(float(bound)) for bound in self.buckets), "+Inf"]  # as prometheus_client writes them
            family.add_metric([path], list(zip(bounds, cumulative, strict=True)), self._sums[path])
        yield family

    def describe(self) -> list[HistogramMetricFamily]:
        """The metric's name and type, for registration."""
        return [self._family()]

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=("path",))
