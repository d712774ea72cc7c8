"""The server against hostile and broken clients, over real TLS on loopback (issue 13's table, one test per row).

Each test bounds what a client can hold (time, bytes, connections) and checks that valid requests are still served.
No timing is asserted beyond "within a bound several times the configured one"; hack/hostile.py prints the figures.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import signal
import socket
import ssl
import subprocess
import time
from typing import TYPE_CHECKING, Any

import pytest
from integration.server import EXECUTABLE, WebhookProcess, free_port
from reviews import make_pod, make_review

from webhook.certs import write_certificates

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"registry: {REGISTRY}\ntiers: [quay, k8s, docker-hub]\n")
    return path


def tls_socket(server: WebhookProcess, timeout: float = 10) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    wrapped: ssl.SSLSocket = server.context().wrap_socket(raw, server_hostname="localhost")
    return wrapped


def review_bytes(*images: str) -> bytes:
    return json.dumps(make_review(make_pod(*images))).encode()


def post_head(body: bytes, path: str = "/mutate", version: str = "1.1") -> bytes:
    return (
        f"POST {path} HTTP/{version}\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()


def read_answer(sock: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer, framed by its Content-Length (which every answer must have)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    return status, headers, body


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``within`` seconds, reading whatever comes."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except (ConnectionError, ssl.SSLError):
        return True
    return True


def mutate(server: WebhookProcess, connection: http.client.HTTPSConnection | None = None) -> int:
    status: int = server.request("POST", "/mutate", make_review(make_pod("quay.io/a/b:1")), connection)[0]
    return status


@pytest.fixture
def server(tmp_path: Path, config_file: Path) -> Iterator[WebhookProcess]:
    args = ("--header-timeout", "1", "--keepalive-timeout", "1", "--handshake-timeout", "1", "--max-concurrency", "8")
    with WebhookProcess(tmp_path, config_file, extra_args=args) as process:
        yield process


def test_a_silent_tcp_connection_is_closed_at_the_handshake_timeout(server: WebhookProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        assert closed_by_server(raw, within=10)


def test_a_head_trickled_byte_by_byte_is_cut_at_the_header_timeout(server: WebhookProcess) -> None:
    head = post_head(review_bytes("quay.io/a/b:1"))
    with tls_socket(server) as sock:
        closed = False
        for index in range(40):  # 40 bytes over 8 s: far past the 1 s bound
            try:
                sock.sendall(head[index : index + 1])
            except (ConnectionError, ssl.SSLError):
                closed = True
                break
            if closed_by_server(sock, within=0.2):
                closed = True
                break
        assert closed
    assert mutate(server) == 200


def test_a_kept_open_connection_is_closed_after_the_idle_timeout(server: WebhookProcess) -> None:
    with tls_socket(server) as sock:
        body = review_bytes("quay.io/a/b:1")
        sock.sendall(post_head(body) + body)
        status, headers, _ = read_answer(sock)
        assert status == 200
        assert "connection" not in headers  # kept open...
        assert closed_by_server(sock, within=10)  # ...until idle for the keep-alive timeout


@pytest.mark.parametrize(
    "head",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (64 * 1024) + b"\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(100)) + b"\r\n",
        b"GET /healthz?" + b"q" * (20 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["one-large-header", "too-many-headers", "long-target"],
)
def test_an_oversize_head_is_431_and_closed(server: WebhookProcess, head: bytes) -> None:
    with tls_socket(server) as sock:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            sock.sendall(head)
        status, headers, _ = read_answer(sock)
        assert status == 431
        assert headers.get("connection") == "close"
        assert closed_by_server(sock, within=5)


def test_a_huge_header_stream_is_refused_before_it_is_buffered(server: WebhookProcess) -> None:
    """64 MiB of one header: answered 431 past the limit; what follows is read and thrown away, never held."""
    assert server.process is not None
    before = rss_mib(server.process.pid)
    with tls_socket(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        block = b"a" * 65536
        with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
            for _ in range(1024):
                sock.sendall(block)
        assert read_answer(sock)[0] == 431
    assert rss_mib(server.process.pid) - before < 32
    assert mutate(server) == 200


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:  # noqa: PTH123 - a /proc read
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_silent_connections_at_the_limit_make_room_for_real_requests(server: WebhookProcess) -> None:
    held = [tls_socket(server) for _ in range(20)]  # the limit is 8: all of them are over it or evictable
    try:
        for _ in range(3):
            assert mutate(server) == 200
        assert server.request("GET", "/healthz")[0] == 200
    finally:
        for sock in held:
            sock.close()


def test_overload_sheds_only_the_excess_and_health_always_answers(server: WebhookProcess) -> None:
    """8 connections each holding half a request fill the limit: a 9th is refused, /healthz still answers."""
    body = review_bytes("quay.io/a/b:1")
    partial = post_head(body) + body[:10]  # a head, and part of a body: under the body's own deadline (10 s)
    held = [tls_socket(server) for _ in range(8)]
    try:
        for sock in held:
            sock.sendall(partial)
        assert mutate(server) == 503
        assert server.request("GET", "/healthz")[0] == 200
        first = held.pop(0)
        first.sendall(body[10:])  # a held request completes: it was within the limit, and is served
        assert read_answer(first)[0] == 200
        first.close()
        deadline = time.monotonic() + 10
        while mutate(server) != 200:  # its slot is free once the server saw the close
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        for sock in held:
            sock.close()


def test_a_request_timeout_is_408_and_closes_the_connection(server: WebhookProcess) -> None:
    body = review_bytes("quay.io/a/b:1")
    head = post_head(body, path="/mutate?timeout=1s")
    with tls_socket(server) as sock:
        sock.sendall(head + body[:10])
        status, headers, _ = read_answer(sock)
        assert status == 408
        assert headers.get("connection") == "close"
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            sock.sendall(body[10:20])
        assert closed_by_server(sock, within=5)


def test_http_1_0_gets_a_framed_answer_and_a_close(server: WebhookProcess) -> None:
    body = review_bytes("quay.io/a/b:1")
    with tls_socket(server) as sock:
        sock.sendall(post_head(body, version="1.0") + body)
        status, headers, answer = read_answer(sock)
        assert status == 200
        assert "transfer-encoding" not in headers
        assert int(headers["content-length"]) == len(answer)
        assert headers.get("connection") == "close"
        assert json.loads(answer)["response"]["allowed"] is True
        assert closed_by_server(sock, within=5)


def test_sighup_reloads_and_never_stops_the_server(server: WebhookProcess) -> None:
    assert server.process is not None
    connection = server.connection()
    for _ in range(3):
        server.process.send_signal(signal.SIGHUP)
        assert mutate(server, connection) == 200
    connection.close()
    assert server.process.poll() is None
    deadline = time.monotonic() + 10
    while "SIGHUP" not in server.logs():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_sigterm_with_clients_that_hold_on_exits_within_the_drain_bound(tmp_path: Path, config_file: Path) -> None:
    args = ("--shutdown-linger", "0.5", "--drain-timeout", "2")
    with WebhookProcess(tmp_path, config_file, extra_args=args) as server:
        assert server.process is not None
        body = review_bytes(*[f"quay.io/a/b-{index}:1" for index in range(300)])
        not_reading = tls_socket(server)
        not_reading.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for _ in range(20):  # answers pile up unread
            not_reading.sendall(post_head(body) + body)
        slow = tls_socket(server)
        slow.sendall(post_head(body, path="/mutate?timeout=1h") + body[:10])
        time.sleep(0.5)  # let the server take both in
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=20)
        elapsed = time.monotonic() - started
        assert elapsed < 0.5 + 2 + 3  # linger + drain + a margin for the exit itself
        assert server.process.returncode == -signal.SIGTERM
        not_reading.close()
        slow.close()


def test_a_stalled_stderr_reader_costs_log_lines_never_admissions(tmp_path: Path, config_file: Path) -> None:
    certs = write_certificates(tmp_path / "certs", ["localhost"], ["127.0.0.1"])
    port = free_port()
    process = subprocess.Popen(
        [
            str(EXECUTABLE),
            "serve",
            "--config",
            str(config_file),
            "--tls-cert",
            str(certs.cert),
            "--tls-key",
            str(certs.key),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,  # never read: the pipe fills after 64 KiB
    )
    try:
        context = ssl.create_default_context(cafile=str(certs.ca))
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        wait_ready(connection)
        pod = make_pod(*[f"quay.io/org/image-{index}:v1" for index in range(200)])
        for _ in range(400):  # about 25 MB of decision lines: far past what waits to be written
            status, _ = post_json(connection, make_review(pod))
            assert status == 200
        connection.request("GET", "/metrics")
        metrics = connection.getresponse().read().decode()
        match = re.search(r"^ecr_ptc_webhook_decision_log_lines_dropped_total (\S+)$", metrics, re.MULTILINE)
        assert match is not None
        assert float(match.group(1)) > 0
        connection.close()
    finally:
        process.kill()
        process.wait()
        assert process.stderr is not None
        process.stderr.close()


def wait_ready(connection: http.client.HTTPSConnection) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            connection.request("GET", "/readyz")
            if connection.getresponse().read() and True:
                return
        except OSError:
            connection.close()
            assert time.monotonic() < deadline
            time.sleep(0.05)


def post_json(connection: http.client.HTTPSConnection, body: Any) -> tuple[int, bytes]:
    connection.request("POST", "/mutate", body=json.dumps(body), headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, response.read()
