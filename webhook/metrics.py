"""Prometheus collectors, one registry per app so tests (and two apps in one process) never share counts."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from webhook import __version__

LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Admission latency is sub-millisecond when healthy; the API server's webhook timeout here is 3 s."""


class Metrics:
    """The webhook's collectors."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Create every collector in ``registry`` (a fresh one by default)."""
        self.registry = registry if registry is not None else CollectorRegistry()
        self.decisions = Counter(
            "ecr_ptc_webhook_decisions",
            "Image decisions, by tier, reason, action and mode (mutate or audit).",
            ["tier", "reason", "action", "mode"],
            registry=self.registry,
        )
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
