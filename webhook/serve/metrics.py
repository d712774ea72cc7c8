"""Prometheus collectors, one registry per app so tests (and two apps in one process) never share counts."""

from __future__ import annotations

import bisect
import collections
import itertools
from typing import TYPE_CHECKING, Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from webhook import __version__

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Admission latency is sub-millisecond when healthy; the API server's webhook timeout here is 3 s."""


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
        self.errors = Counter(
            "ecr_ptc_webhook_errors",
            "Requests answered without a full decision: bad_request (4xx), internal (failed open), "
            "verify (originals kept).",
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

    def observe_request(self, path: str, code: str, seconds: float) -> None:
        """Count one admission request and its latency."""
        self.requests.counts[path, code] += 1
        self.latency.observe(path, seconds)


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
        registry.register(self)

    def collect(self) -> Iterator[CounterMetricFamily]:
        """The counts so far, one sample per label set."""
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
