"""Prometheus collectors, one registry per app so tests (and two apps in one process) never share counts."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from webhook import __version__

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Admission latency is sub-millisecond when healthy; the API server's webhook timeout here is 3 s."""


class Metrics:
    """The webhook's collectors."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Create every collector in ``registry`` (a fresh one by default)."""
        self.registry = registry if registry is not None else CollectorRegistry()
        self.decisions = DecisionTally(registry=self.registry)
        self.requests = Counter(
            "ecr_ptc_webhook_requests",
            "HTTP requests to the admission endpoints, by path and status code.",
            ["path", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ecr_ptc_webhook_request_duration_seconds",
            "Time to answer an admission request, body read included.",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "ecr_ptc_webhook_errors",
            "Requests that were not answered with a decision: bad_request (4xx) or internal (failed open).",
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
        # `labels()` takes a lock and validates on every call; admission counts a few label sets millions of times.
        self._request_children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def count_decisions(self, counts: Mapping[tuple[str, str, str, str], int]) -> None:
        """Count the image decisions of one review: (tier, reason, action, mode) -> how many."""
        self.decisions.counts.update(counts)

    def observe_request(self, path: str, code: str, seconds: float) -> None:
        """Count one admission request and its latency."""
        key = (path, code)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (self.requests.labels(*key), self.latency.labels(path))
        children[0].inc()
        children[1].observe(seconds)


class DecisionTally(Collector):
    """``ecr_ptc_webhook_decisions_total{tier,reason,action,mode}``, kept as a plain dict and read at scrape time.

    Every admission counts several decisions; a prometheus ``Counter`` takes a lock and validates labels on each
    ``labels()`` call, which cost a tenth of the admission path (hack/bench, py-spy). The event loop is the only
    writer; a scrape reads a copy.
    """

    NAME: Final = "ecr_ptc_webhook_decisions"
    DOCUMENTATION: Final = "Image decisions, by tier, reason, action and mode (mutate or audit)."
    LABELS: Final = ("tier", "reason", "action", "mode")

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register with ``registry``."""
        self.counts: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
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
        return CounterMetricFamily(self.NAME, self.DOCUMENTATION, labels=self.LABELS)
