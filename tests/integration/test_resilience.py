"""The real server under hostile traffic: malformed and oversize requests mixed into valid load, slow bodies.

Certificate rotation under load, draining on SIGTERM and overload are in test_server.py; hack/resilience.py runs the
same scenarios longer and prints figures.
"""

from __future__ import annotations

import http.client
import json
import signal
import ssl
import threading
import time
from typing import TYPE_CHECKING

import pytest
from integration.server import WebhookProcess
from reviews import make_pod, make_review

from webhook.serve.app import BODY_LIMIT

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"

# Each bad request: what is sent (content type, body) and the status the webhook must answer with.
BAD_REQUESTS: tuple[tuple[str, bytes, int], ...] = (
    ("application/json", b"{not json", 400),
    ("application/json", b"", 400),
    ("text/plain", b"{}", 400),
    ("application/json", b'{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}', 400),
    ("application/json", b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": 7}', 400),
    ("application/json", b"[" * 100_000, 400),
    ("application/json", b" " * (BODY_LIMIT + 1), 413),
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WebhookProcess]:
    config = tmp_path / "config.yaml"
    config.write_text(f"registry: {REGISTRY}\n")
    with WebhookProcess(tmp_path, config) as process:
        yield process


def post(connection: http.client.HTTPSConnection, content_type: str, body: bytes) -> tuple[int, bytes]:
    connection.request("POST", "/mutate?timeout=3s", body=body, headers={"Content-Type": content_type})
    response = connection.getresponse()
    return response.status, response.read()


def send_valid(server: WebhookProcess, stop: threading.Event, failures: list[str]) -> int:
    """Valid reviews over one kept-open connection (as the API server sends them) until ``stop``; how many."""
    review = json.dumps(make_review(make_pod("quay.io/a/b:1", "nginx:1.27"))).encode()
    sent = 0
    connection = server.connection()
    try:
        while not stop.is_set():
            status, body = post(connection, "application/json", review)
            if status != 200 or json.loads(body)["response"].get("patch") is None:
                failures.append(f"valid request: {status} {body[:200]!r}")
            sent += 1
    except (OSError, ssl.SSLError, http.client.HTTPException) as error:
        failures.append(f"valid connection broke: {error!r}")
    finally:
        connection.close()
    return sent


def send_bad(server: WebhookProcess, stop: threading.Event, failures: list[str]) -> int:
    """Every bad request in turn, each on a new connection, until ``stop``; how many."""
    sent = 0
    while not stop.is_set():
        for content_type, body, expected in BAD_REQUESTS:
            connection = server.connection()
            try:
                status, answer = post(connection, content_type, body)
            except (OSError, http.client.HTTPException) as error:
                failures.append(f"bad request {body[:30]!r} broke the connection: {error!r}")
                continue
            finally:
                connection.close()
            if status != expected:
                failures.append(f"bad request {body[:30]!r}: {status} {answer[:200]!r}, expected {expected}")
            sent += 1
    return sent


def test_malformed_and_oversize_requests_leave_valid_load_unaffected(server: WebhookProcess) -> None:
    failures: list[str] = []
    counts: dict[str, int] = {}
    stop = threading.Event()
    senders = {f"valid{i}": send_valid for i in range(3)} | {"bad": send_bad}
    workers = [
        threading.Thread(target=lambda name=name, send=send: counts.__setitem__(name, send(server, stop, failures)))
        for name, send in senders.items()
    ]
    for worker in workers:
        worker.start()
    time.sleep(3)
    stop.set()
    for worker in workers:
        worker.join(timeout=30)
    assert failures == []
    assert sum(counts[f"valid{i}"] for i in range(3)) > 50
    assert counts["bad"] >= len(BAD_REQUESTS)
    assert server.request("GET", "/readyz")[0] == 200


def test_a_slow_body_is_cut_off_at_the_api_servers_deadline(server: WebhookProcess) -> None:
    review = json.dumps(make_review(make_pod("quay.io/a/b:1"))).encode()
    connection = server.connection()
    connection.putrequest("POST", "/mutate?timeout=1s")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(len(review)))
    connection.endheaders()
    connection.send(review[:50])  # and then nothing: a slowloris-style body
    started = time.monotonic()
    response = connection.getresponse()
    waited = time.monotonic() - started
    assert response.status == 408
    assert "timeout" in json.loads(response.read())["error"]
    # Bounded by the request's own deadline (1 s, answered a little before it), not by the client's patience.
    assert waited < 5
    connection.close()
    # Other requests were served meanwhile and afterwards.
    assert server.request("POST", "/mutate", make_review(make_pod("quay.io/a/b:1")))[0] == 200


def test_after_sigterm_answers_close_their_connection_until_the_server_stops(server: WebhookProcess) -> None:
    review = json.dumps(make_review(make_pod("quay.io/a/b:1"))).encode()
    connection = server.connection()
    connection.request("POST", "/mutate", body=review, headers={"Content-Type": "application/json"})
    before = connection.getresponse()
    before.read()
    assert before.status == 200
    assert before.getheader("connection") is None  # kept open, as the API server wants
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # The kept-open connection still answers: within the linger nothing is closed under a client.
    connection.request("POST", "/mutate", body=review, headers={"Content-Type": "application/json"})
    during = connection.getresponse()
    assert during.status == 200
    assert "patch" in json.loads(during.read())["response"]
    assert during.getheader("connection") == "close"
    assert server.request("GET", "/readyz")[0] == 503
    connection.close()
    assert server.process.wait(timeout=30) == -signal.SIGTERM
