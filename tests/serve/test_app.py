from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import sys
import time
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient
from reviews import make_pod, make_review

from webhook.core.admission import Mode
from webhook.serve.app import BODY_LIMIT, DEFAULT_DEADLINE, MAX_IMAGE_SLOTS, create_app, parse_timeout
from webhook.serve.decision_log import DecisionLog
from webhook.serve.metrics import Metrics

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from webhook.core.config import Config
from webhook.core.reasons import Reason
from webhook.core.rules import Decision, Rules

QUAY = "quay.io/prometheus/node-exporter:v1.8.2"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def client(rules: Rules, metrics: Metrics) -> Iterator[TestClient]:
    with TestClient(create_app(rules, metrics=metrics)) as test_client:
        yield test_client


def test_mutate_answers_with_a_patch(client: TestClient) -> None:
    body = make_review(make_pod(QUAY))
    response = client.post("/mutate?timeout=10s", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    review = response.json()
    assert review["response"]["uid"] == body["request"]["uid"]
    assert review["response"]["patchType"] == "JSONPatch"


def test_audit_answers_with_warnings(client: TestClient) -> None:
    review = client.post("/audit", json=make_review(make_pod(QUAY))).json()
    assert "patch" not in review["response"]
    assert review["response"]["warnings"][0].startswith(f"{QUAY} -> ")


@pytest.mark.parametrize(
    ("content", "headers", "status", "message"),
    [
        (b"{}", {"Content-Type": "text/plain"}, 400, "is not application/json"),
        (b"{}", {}, 400, "is not application/json"),
        (b"", JSON, 400, "body is empty"),
        (b"{not json", JSON, 400, "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, JSON, 400, "not valid JSON"),
        (b'{"apiVersion": "v1", "kind": "Pod"}', JSON, 400, "expected apiVersion admission.k8s.io/v1"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', JSON, 400, "has no request"),
    ],
)
def test_bad_requests_are_4xx_with_a_clear_message(
    client: TestClient, content: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    response = client.post("/mutate", content=content, headers=headers)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_charset_parameter_is_accepted(client: TestClient) -> None:
    content = json.dumps(make_review(make_pod(QUAY))).encode()
    response = client.post("/mutate", content=content, headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 200


def test_declared_oversize_body_is_refused_before_reading(client: TestClient) -> None:
    response = client.post("/mutate", content=b"{}", headers={**JSON, "Content-Length": str(BODY_LIMIT + 1)})
    assert response.status_code == 413


def test_streamed_oversize_body_is_refused_while_reading(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b" " * (1024 * 1024)

    response = client.post("/mutate", content=chunks(), headers=JSON)
    assert response.status_code == 413
    assert "over the" in response.json()["error"]


def test_health_readiness_and_metrics(rules: Rules, metrics: Metrics) -> None:
    ready = [False]
    app = create_app(rules, metrics=metrics, readiness=lambda: (ready[0], "no certificate loaded"))
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["detail"] == "no certificate loaded"
        ready[0] = True
        assert client.get("/readyz").status_code == 200
        client.post("/mutate", json=make_review(make_pod(QUAY, "gcr.io/x/y")))
        client.post("/mutate", content=b"", headers=JSON)
        text = client.get("/metrics").text
    assert 'ecr_ptc_webhook_decisions_total{action="rewrite",mode="mutate",reason="rewritten",tier="quay"} 1.0' in text
    assert 'reason="upstream-unsupported"' in text
    assert 'ecr_ptc_webhook_errors_total{kind="bad_request"} 1.0' in text
    assert 'ecr_ptc_webhook_requests_total{code="400",path="/mutate"} 1.0' in text
    assert "ecr_ptc_webhook_request_duration_seconds_bucket" in text


def test_each_decision_is_one_structured_log_line(
    rules: Rules, capsysbinary: pytest.CaptureFixture[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="webhook.decisions")
    app = create_app(rules)
    body = make_review(make_pod(QUAY, "gcr.io/x/y"))
    with TestClient(app) as client:
        client.post("/mutate", json=body)
    app.decision_log.flush()  # the client's event loop has stopped: what it had not flushed yet is written now
    lines = [json.loads(line) for line in capsysbinary.readouterr().err.splitlines()]
    assert [(line["container"], line["original"], line["reason"], line["mode"]) for line in lines] == [
        ("c0", QUAY, "rewritten", "mutate"),
        ("c1", "gcr.io/x/y", "upstream-unsupported", "mutate"),
    ]
    assert lines[0]["result"].endswith("/quay/prometheus/node-exporter:v1.8.2")
    assert [line["action"] for line in lines] == ["rewrite", "skip"]
    assert [line["tier"] for line in lines] == ["quay", None]
    for line in lines:
        assert line["namespace"] == "apps"
        assert line["pod"] == "web-7d4b9c8f6-"
        assert line["uid"] == body["request"]["uid"]
        assert line["level"] == "info"
        assert line["logger"] == "webhook.decisions"
        assert line["msg"] == "decision"


def test_decision_lines_follow_the_log_level(
    rules: Rules, capsysbinary: pytest.CaptureFixture[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="webhook.decisions")
    app = create_app(rules)
    with TestClient(app) as client:
        assert "patch" in client.post("/mutate", json=make_review(make_pod(QUAY))).json()["response"]
    app.decision_log.flush()
    assert capsysbinary.readouterr().err == b""


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("10s", 10.0),
        ("3s", 3.0),
        ("1m0s", 30.0),  # the API server's maximum: a longer timeout is cut to it
        ("20s", 20.0),
        ("1h", 30.0),
        ("999999999s", 30.0),
        ("1.5s", 1.5),
        ("500ms", 0.5),
        (None, DEFAULT_DEADLINE),
        ("", DEFAULT_DEADLINE),
        ("ten", DEFAULT_DEADLINE),
        ("0s", DEFAULT_DEADLINE),
        ("10", DEFAULT_DEADLINE),
    ],
)
def test_timeout_parameter(raw: str | None, seconds: float) -> None:
    assert parse_timeout(raw) == pytest.approx(seconds)


class FakeVerifier:
    """Stands in for the cache check: vetoes every rewrite of one image."""

    def __init__(self, missing: str) -> None:
        self.missing = missing
        self.seen: list[list[str]] = []

    async def vetoes(self, decisions: Sequence[Decision]) -> Mapping[str, Reason]:
        self.seen.append([decision.image for decision in decisions])
        return {self.missing: Reason.TARGET_MISSING}


def test_verifier_vetoes_keep_the_original_image(rules: Rules, metrics: Metrics) -> None:
    verifier = FakeVerifier(missing="nginx:1.27")
    with TestClient(create_app(rules, metrics=metrics, verifier=verifier)) as client:
        body = make_review(make_pod(QUAY, "nginx:1.27", "gcr.io/x/y"))
        answer = client.post("/mutate", json=body).json()
        text = client.get("/metrics").text
    assert verifier.seen == [[QUAY, "nginx:1.27"]]  # only rewrites are checked
    patch = json.loads(base64.b64decode(answer["response"]["patch"]))
    assert [op["path"] for op in patch] == ["/spec/containers/0/image", "/metadata/annotations"]
    assert 'reason="target-missing",tier="docker-hub"' in text


class BrokenVerifier:
    def __init__(self, *, hang: bool) -> None:
        self.hang = hang

    async def vetoes(self, decisions: Sequence[Decision]) -> Mapping[str, Reason]:  # noqa: ARG002
        if self.hang:
            await asyncio.sleep(30)
        raise RuntimeError("lookup task cancelled at shutdown")


@pytest.mark.parametrize("hang", [False, True], ids=["raises", "outlives-the-request-deadline"])
def test_a_failing_verifier_keeps_every_original_and_still_answers(rules: Rules, metrics: Metrics, hang: bool) -> None:
    with TestClient(create_app(rules, metrics=metrics, verifier=BrokenVerifier(hang=hang))) as client:
        started = time.monotonic()
        # The API server's deadline (here 0.5 s) bounds the verifier even when its own budget would not.
        response = client.post("/mutate?timeout=500ms", json=make_review(make_pod(QUAY, "nginx:1.27")))
        waited = time.monotonic() - started
        text = client.get("/metrics").text
    assert response.status_code == 200
    assert response.json()["response"] == {"uid": response.json()["response"]["uid"], "allowed": True}
    assert 'reason="verify-failed",tier="quay"' in text
    assert 'ecr_ptc_webhook_errors_total{kind="verify"} 1.0' in text
    cause = "verify_deadline" if hang else "verify_failed"
    assert metrics.registry.get_sample_value("ecr_ptc_webhook_failed_open_total", {"cause": cause}) == 1
    assert waited < 5  # bounded by the request's deadline, not by the hanging lookup's 30 s


def test_rules_provider_is_read_per_request(config: Config) -> None:
    current = [Rules(config, available_tiers=frozenset())]
    with TestClient(create_app(lambda: current[0])) as client:
        first = client.post("/mutate", json=make_review(make_pod(QUAY))).json()
        current[0] = Rules(config)
        second = client.post("/mutate", json=make_review(make_pod(QUAY))).json()
    assert "patch" not in first["response"]
    assert "patch" in second["response"]


def test_vetoes_apply_to_a_cached_template_and_do_not_stick(rules: Rules, metrics: Metrics) -> None:
    verifier = FakeVerifier(missing="nginx:1.27")
    app = create_app(rules, metrics=metrics, verifier=verifier)
    with TestClient(app) as client:
        first = client.post("/mutate", json=make_review(make_pod(QUAY, "nginx:1.27"))).json()
        verifier.missing = "none"  # the target has been filled since
        second = client.post("/mutate", json=make_review(make_pod(QUAY, "nginx:1.27"))).json()
    patches = [json.loads(base64.b64decode(answer["response"]["patch"])) for answer in (first, second)]
    assert [[op["path"] for op in patch] for patch in patches] == [
        ["/spec/containers/0/image", "/metadata/annotations"],
        ["/spec/containers/0/image", "/spec/containers/1/image", "/metadata/annotations"],
    ]
    assert (app.reviews.hits, app.reviews.misses) == (1, 1)
    assert verifier.seen == [[QUAY, "nginx:1.27"], [QUAY, "nginx:1.27"]]  # a cached answer is verified every time


def test_a_failure_past_parsing_admits_the_pod_unchanged(
    rules: Rules, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(rules, metrics=metrics)

    def broken(*_: object) -> None:
        raise KeyError("spec")

    monkeypatch.setattr(app.reviews, "review", broken)
    body = make_review(make_pod(QUAY))
    with TestClient(app) as client:
        response = client.post("/mutate", json=body)
        text = client.get("/metrics").text
    assert response.status_code == 200
    assert response.json()["response"]["uid"] == body["request"]["uid"]
    assert response.json()["response"]["allowed"] is True
    assert "patch" not in response.json()["response"]
    assert response.json()["response"]["warnings"] == ["ecr-ptc-webhook: internal error; pod admitted unchanged"]
    assert 'ecr_ptc_webhook_errors_total{kind="internal"} 1.0' in text
    assert 'ecr_ptc_webhook_failed_open_total{cause="internal"} 1.0' in text


def test_a_failure_inside_the_decision_core_is_counted_as_failing_open(
    rules: Rules, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise ValueError("unexpected pod shape")

    monkeypatch.setattr("webhook.core.admission._plan", broken)
    with TestClient(create_app(rules, metrics=metrics)) as client:
        response = client.post("/mutate", json=make_review(make_pod(QUAY)))
    assert response.json()["response"]["warnings"] == ["ecr-ptc-webhook: internal error; pod admitted unchanged"]
    assert metrics.registry.get_sample_value("ecr_ptc_webhook_failed_open_total", {"cause": "internal"}) == 1


@pytest.mark.parametrize("stderr", [None, io.StringIO()], ids=["no-stderr", "stderr-without-buffer"])
def test_a_decision_log_that_cannot_write_does_not_fail_the_review(
    rules: Rules, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, stderr: object
) -> None:
    caplog.set_level(logging.INFO, logger="webhook.decisions")
    app = create_app(rules)
    app.decision_log = DecisionLog(batch_bytes=1)  # every review is written at once, inside the request
    monkeypatch.setattr(sys, "stderr", stderr)
    with TestClient(app) as client:
        response = client.post("/mutate", json=make_review(make_pod(QUAY)))
    assert response.status_code == 200
    assert "patch" in response.json()["response"]
    assert "decision log lines lost" in caplog.text


def test_a_pod_with_too_many_images_is_admitted_unchanged_at_once(client: TestClient, metrics: Metrics) -> None:
    images = [f"quay.io/org/image-{index}:v1" for index in range(MAX_IMAGE_SLOTS + 1)]
    review = make_review(make_pod(*images))
    response = client.post("/mutate", json=review)
    assert response.status_code == 200
    answer = response.json()["response"]
    assert answer["uid"] == review["request"]["uid"]
    assert "patch" not in answer
    assert f"over {MAX_IMAGE_SLOTS}" in answer["warnings"][0]
    at_limit = make_review(make_pod(*images[:MAX_IMAGE_SLOTS]))
    assert "patch" in client.post("/mutate", json=at_limit).json()["response"]
    assert metrics.registry.get_sample_value("ecr_ptc_webhook_failed_open_total", {"cause": "too_large"}) == 1


def test_decision_lines_say_when_the_record_was_left_out(
    rules: Rules, capsysbinary: pytest.CaptureFixture[bytes], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="webhook.decisions")
    app = create_app(rules)
    crowded = make_review(make_pod(QUAY, annotations={"example.com/big": "x" * (262_144 - 40)}))
    roomy = make_review(make_pod(QUAY, annotations={"example.com/small": "x"}))
    with TestClient(app) as client:
        for body in (crowded, roomy):
            assert "patch" in client.post("/mutate", json=body).json()["response"]  # rewritten either way
    app.decision_log.flush()
    lines = {line["uid"]: line for line in map(json.loads, capsysbinary.readouterr().err.splitlines())}
    assert lines[crowded["request"]["uid"]]["annotation"].startswith("left out")
    assert "annotation" not in lines[roomy["request"]["uid"]]


def test_a_body_that_does_not_arrive_in_time_is_408_and_counted_as_failing_open(rules: Rules, metrics: Metrics) -> None:
    app = create_app(rules, metrics=metrics)
    headers = [(b"content-type", b"application/json")]
    scope = {"type": "http", "method": "POST", "path": "/mutate", "query_string": b"timeout=100ms", "headers": headers}

    async def receive() -> dict[str, object]:
        await asyncio.sleep(30)  # the API server stopped sending
        return {"type": "http.request", "body": b"", "more_body": False}

    status, body = asyncio.run(app.admit(scope, receive, Mode.MUTATE))
    assert (status, json.loads(body)) == (408, {"error": "request body not received within the API server's timeout"})
    assert metrics.registry.get_sample_value("ecr_ptc_webhook_failed_open_total", {"cause": "body_deadline"}) == 1
