"""The real server over TLS: API-server-shaped reviews, certificate rotation under load, draining, overload."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any

import jsonpatch
import kubernetes_validate
import pytest
from cryptography import x509
from integration.server import WebhookProcess
from reviews import make_pod, make_review

from webhook.certs import certificate_pem, generate_ca, generate_serving, key_pem

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"registry: {REGISTRY}\ntiers: [quay, k8s, docker-hub]\n")
    return path


@pytest.fixture
def server(tmp_path: Path, config_file: Path) -> Iterator[WebhookProcess]:
    with WebhookProcess(tmp_path, config_file) as process:
        yield process


def patched_object(review: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    patch = json.loads(base64.b64decode(answer["response"]["patch"]))
    result: dict[str, Any] = jsonpatch.apply_patch(review["request"]["object"], patch)
    return result


def test_api_server_shaped_review_is_patched_into_a_valid_pod(server: WebhookProcess) -> None:
    pod = make_pod("quay.io/prometheus/node-exporter:v1.8.2", "nginx:1.27", init=("registry.k8s.io/pause:3.10",))
    review = make_review(pod, dry_run=True)
    status, answer = server.request("POST", "/mutate?timeout=3s", review)
    assert status == 200
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["response"]["uid"] == review["request"]["uid"]
    patched = patched_object(review, answer)
    assert [c["image"] for c in patched["spec"]["containers"]] == [
        f"{REGISTRY}/quay/prometheus/node-exporter:v1.8.2",
        f"{REGISTRY}/docker-hub/library/nginx:1.27",
    ]
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(patched, version, strict=True)
    # Sending the webhook its own output changes nothing (reinvocation).
    again = make_review(patched)
    status, answer = server.request("POST", "/mutate", again)
    assert answer["response"] == {"uid": again["request"]["uid"], "allowed": True}


def test_audit_endpoint_and_health_over_tls(server: WebhookProcess) -> None:
    status, answer = server.request("POST", "/audit", make_review(make_pod("velero/velero:v1.15.1")))
    assert status == 200
    assert answer["response"]["warnings"] == [f"velero/velero:v1.15.1 -> {REGISTRY}/docker-hub/velero/velero:v1.15.1"]
    assert server.request("GET", "/healthz")[0] == 200
    status, body = server.request("GET", "/metrics")
    assert b'ecr_ptc_webhook_decisions_total{action="rewrite",mode="audit"' in body
    assert b"ecr_ptc_webhook_certificate_expiry_timestamp_seconds" in body


def served_serial(server: WebhookProcess) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", server.port)) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_certificate_rotation_under_load_fails_no_request(server: WebhookProcess, tmp_path: Path) -> None:
    # The new pair comes from a new CA; the client trusts both, as the API server does with a caBundle during rotation.
    new_ca, new_ca_key = generate_ca()
    new_cert, new_key = generate_serving(new_ca, new_ca_key, ["localhost"], ["127.0.0.1"])
    bundle = tmp_path / "bundle.crt"
    bundle.write_bytes((server.cert_dir / "ca.crt").read_bytes() + certificate_pem(new_ca))
    old_serial = served_serial(server)
    review = make_review(make_pod("quay.io/a/b:1"))
    failures: list[str] = []
    successes = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal successes
        while not stop.is_set():
            connection = server.connection(bundle)  # a new connection and handshake each time
            try:
                status, answer = server.request("POST", "/mutate", review, connection=connection)
            except (OSError, ssl.SSLError) as error:
                failures.append(repr(error))
                continue
            finally:
                connection.close()
            if status != 200 or "patch" not in answer["response"]:
                failures.append(f"{status} {answer}")
            successes += 1

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.5)
        # Non-atomic rotation: the key lands first, so for a while the files do not match.
        (server.cert_dir / "tls.key").write_bytes(key_pem(new_key))
        time.sleep(1.0)
        (server.cert_dir / "tls.crt").write_bytes(certificate_pem(new_cert))
        deadline = time.monotonic() + 10
        while served_serial(server) != new_cert.serial_number and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert old_serial != new_cert.serial_number
    assert served_serial(server) == new_cert.serial_number
    assert failures == []
    assert successes > 20
    assert "certificate reload failed; keeping the current certificate" in server.logs()


def test_a_mismatched_pair_at_start_is_a_clear_error(tmp_path: Path, config_file: Path) -> None:
    process = WebhookProcess(tmp_path, config_file)
    other = tmp_path / "other"
    with process:
        shutil.copytree(process.cert_dir, other)
    ca, ca_key = generate_ca()
    _, wrong_key = generate_serving(ca, ca_key, ["localhost"])
    (other / "tls.key").write_bytes(key_pem(wrong_key))
    import subprocess  # noqa: PLC0415

    from integration.server import EXECUTABLE  # noqa: PLC0415

    result = subprocess.run(
        [
            str(EXECUTABLE),
            "serve",
            "--config",
            str(config_file),
            "--tls-cert",
            str(other / "tls.crt"),
            "--tls-key",
            str(other / "tls.key"),
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert f"cannot serve {other / 'tls.crt'} with {other / 'tls.key'}" in result.stderr


def test_sigterm_lets_an_in_flight_request_finish(server: WebhookProcess) -> None:
    review = json.dumps(make_review(make_pod("quay.io/a/b:1"))).encode()
    connection = server.connection()
    connection.putrequest("POST", "/mutate")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(len(review)))
    connection.endheaders()
    connection.send(review[:100])
    time.sleep(0.3)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    connection.send(review[100:])
    response = connection.getresponse()
    assert response.status == 200
    assert "patch" in json.loads(response.read())["response"]
    connection.close()
    # uvicorn re-raises the signal once drained, so the exit status is the conventional one for SIGTERM.
    assert server.process.wait(timeout=30) == -signal.SIGTERM
    # The decisions of the last request were still batched when the signal came: they are written before the exit.
    uid = json.loads(review)["request"]["uid"]
    assert [line["original"] for line in decision_lines(server) if line["uid"] == uid] == ["quay.io/a/b:1"]


def decision_lines(server: WebhookProcess) -> list[dict[str, Any]]:
    lines = (json.loads(line) for line in server.logs().splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("msg") == "decision"]


def test_decision_lines_are_written_while_serving(server: WebhookProcess) -> None:
    review = make_review(make_pod("quay.io/a/b:1", "gcr.io/x/y:2"))
    assert server.request("POST", "/mutate", review)[0] == 200
    deadline = time.monotonic() + 5
    while not decision_lines(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(line["uid"], line["container"], line["action"]) for line in decision_lines(server)] == [
        (review["request"]["uid"], "c0", "rewrite"),
        (review["request"]["uid"], "c1", "skip"),
    ]


def test_overload_is_answered_at_once_with_503(tmp_path: Path, config_file: Path) -> None:
    """Connections holding part of a request fill the limit: one more is answered 503 at once, not queued."""
    with WebhookProcess(tmp_path, config_file, extra_args=("--max-concurrency", "2")) as server:
        held = [server.connection(), server.connection()]
        for connection in held:
            connection.putrequest("POST", "/mutate")
            connection.putheader("Content-Type", "application/json")
            connection.putheader("Content-Length", "100")
            connection.endheaders(b"{")  # a head and one byte of the body: a request in progress
        try:
            started = time.monotonic()
            status, _ = server.request("POST", "/mutate", make_review(make_pod("quay.io/a/b:1")))
            assert status == 503
            assert time.monotonic() - started < 2
        finally:
            for connection in held:
                connection.close()
        deadline = time.monotonic() + 10
        while server.request("POST", "/mutate", make_review(make_pod("quay.io/a/b:1")))[0] != 200:
            assert time.monotonic() < deadline  # the slots free as soon as the server sees the closes
            time.sleep(0.05)
