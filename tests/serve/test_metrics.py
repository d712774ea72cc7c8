from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from webhook.core.reasons import Reason
from webhook.core.review_cache import ReviewCache
from webhook.serve.metrics import FAIL_OPEN_CAUSES, LATENCY_BUCKETS, NOT_READY_REASONS, Metrics

PATHS = st.sampled_from(["/mutate", "/audit"])
SECONDS = st.one_of(
    st.sampled_from(LATENCY_BUCKETS),  # a value on a bound belongs to that bucket (le = less or equal)
    st.floats(min_value=0, max_value=10, allow_nan=False),
)


def samples(registry: CollectorRegistry, prefix: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name.startswith(prefix) and not sample.name.endswith("_created"):
                found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


@given(st.lists(st.tuples(PATHS, st.sampled_from(["200", "400"]), SECONDS), max_size=50))
def test_request_tallies_expose_what_prometheus_client_collectors_would(
    observations: list[tuple[str, str, float]],
) -> None:
    ours = Metrics()
    reference = CollectorRegistry()
    requests = Counter("ecr_ptc_webhook_requests", "x", ["path", "code"], registry=reference)
    latency = Histogram(
        "ecr_ptc_webhook_request_duration_seconds", "x", ["path"], buckets=LATENCY_BUCKETS, registry=reference
    )
    for path, code, seconds in observations:
        ours.observe_request(path, code, seconds)
        requests.labels(path, code).inc()
        latency.labels(path).observe(seconds)
    for prefix in ("ecr_ptc_webhook_requests", "ecr_ptc_webhook_request_duration_seconds"):
        expected = samples(reference, prefix)
        actual = samples(ours.registry, prefix)
        assert actual.keys() == expected.keys()
        for key, value in expected.items():
            assert actual[key] == value if not key[0].endswith("_sum") else abs(actual[key] - value) < 1e-9


def test_decision_counts_add_up_across_reviews_and_render_reason_values() -> None:
    metrics = Metrics()
    metrics.count_decisions({("quay", Reason.REWRITTEN, "rewrite"): 2, ("", Reason.NO_RULE, "skip"): 1}, "mutate")
    metrics.count_decisions({("quay", Reason.REWRITTEN, "rewrite"): 3}, "mutate")
    metrics.count_decisions({("quay", Reason.REWRITTEN, "rewrite"): 1}, "audit")
    text = generate_latest(metrics.registry).decode()
    assert 'ecr_ptc_webhook_decisions_total{action="rewrite",mode="mutate",reason="rewritten",tier="quay"} 5.0' in text
    assert 'ecr_ptc_webhook_decisions_total{action="skip",mode="mutate",reason="no-rule",tier=""} 1.0' in text
    assert 'ecr_ptc_webhook_decisions_total{action="rewrite",mode="audit",reason="rewritten",tier="quay"} 1.0' in text


def test_review_cache_counts_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    cache = ReviewCache()
    metrics.count_review_cache(cache)
    assert 'ecr_ptc_webhook_review_cache_total{result="hit"} 0.0' in generate_latest(metrics.registry).decode()
    cache.hits, cache.misses = 41, 2
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE ecr_ptc_webhook_review_cache_total counter" in text
    assert 'ecr_ptc_webhook_review_cache_total{result="hit"} 41.0' in text
    assert 'ecr_ptc_webhook_review_cache_total{result="miss"} 2.0' in text


def test_every_fail_open_cause_is_exposed_from_the_start_and_counted() -> None:
    metrics = Metrics()
    for cause in FAIL_OPEN_CAUSES:
        assert metrics.registry.get_sample_value("ecr_ptc_webhook_failed_open_total", {"cause": cause}) == 0
    metrics.fail_open("verify_deadline")
    metrics.fail_open("verify_deadline")
    metrics.fail_open("internal")
    assert metrics.registry.get_sample_value("ecr_ptc_webhook_failed_open_total", {"cause": "verify_deadline"}) == 2
    assert metrics.registry.get_sample_value("ecr_ptc_webhook_failed_open_total", {"cause": "internal"}) == 1
    assert metrics.registry.get_sample_value("ecr_ptc_webhook_failed_open_total", {"cause": "too_large"}) == 0


def test_readiness_and_its_reasons_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    reasons: list[str] = []
    metrics.expose_readiness(lambda: reasons)

    def scrape() -> tuple[float | None, dict[str, float | None]]:
        registry = metrics.registry
        why = {r: registry.get_sample_value("ecr_ptc_webhook_not_ready", {"reason": r}) for r in NOT_READY_REASONS}
        return registry.get_sample_value("ecr_ptc_webhook_ready"), why

    assert scrape() == (1, dict.fromkeys(NOT_READY_REASONS, 0))
    reasons.extend(["no_certificate", "rules_not_read"])
    assert scrape() == (0, {"no_certificate": 1, "certificate_expired": 0, "rules_not_read": 1, "shutting_down": 0})
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE ecr_ptc_webhook_ready gauge" in text
    assert "# TYPE ecr_ptc_webhook_not_ready gauge" in text


def test_certificate_reload_failing_is_read_at_scrape_time() -> None:
    metrics = Metrics()
    failing = [False]
    metrics.expose_certificate_reload_failing(lambda: failing[0])
    assert metrics.registry.get_sample_value("ecr_ptc_webhook_certificate_reload_failing") == 0
    failing[0] = True
    assert metrics.registry.get_sample_value("ecr_ptc_webhook_certificate_reload_failing") == 1
