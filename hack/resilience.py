"""Failure behaviour under load, with figures: certificate rotation, SIGTERM, malformed traffic, slow bodies.

Each scenario starts a real ``ecr-ptc-webhook serve`` over TLS on loopback (tests/integration/server.py), drives it
from client threads, and prints what the clients saw. Not a test: tests/integration has the pass/fail versions.

    .venv/bin/python hack/resilience.py               # all four scenarios, about 40 s
    .venv/bin/python hack/resilience.py --seconds 20  # longer load per scenario
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from integration.server import WebhookProcess  # noqa: E402
from reviews import make_pod, make_review  # noqa: E402

from webhook.certs import certificate_pem, generate_ca, generate_serving, key_pem  # noqa: E402
from webhook.serve.app import BODY_LIMIT  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
REVIEW = json.dumps(make_review(make_pod(*(f"quay.io/org/app{i}:1.0" for i in range(10))))).encode()
CLIENT_ERRORS = (OSError, ssl.SSLError, http.client.HTTPException)


@dataclass
class Tally:
    """What the clients saw: latencies of answered requests, and failures by kind."""

    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, seconds: float) -> None:
        with self.lock:
            self.latencies.append(seconds)

    def fail(self, kind: str) -> None:
        with self.lock:
            self.failures[kind] += 1

    def line(self) -> str:
        if not self.latencies:
            return f"0 answered, failures {dict(self.failures) or 0}"
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        return (
            f"{len(ordered)} answered 200, p50 {statistics.median(ordered) * 1000:.2f} ms, p99 {p99:.2f} ms, "
            f"failures {dict(self.failures) or 0}"
        )


def post(connection: http.client.HTTPSConnection, body: bytes, content_type: str = "application/json") -> int:
    connection.request("POST", "/mutate?timeout=3s", body=body, headers={"Content-Type": content_type})
    response = connection.getresponse()
    response.read()
    return response.status


def keep_alive_load(server: WebhookProcess, tally: Tally, stop: threading.Event, ca: Path | None = None) -> None:
    """Valid reviews over one kept-open connection, reconnecting when it closes (as the API server does).

    Failures are told apart by whether the request went out on a connection that had already answered (what the
    API server cannot retry) or on a new one (refused or closed before answering: the pod is gone or going).
    """
    connection = server.connection(ca)
    while not stop.is_set():
        reused = connection.sock is not None  # http.client opens a new socket when the last answer closed it
        started = time.perf_counter()
        try:
            status = post(connection, REVIEW)
        except CLIENT_ERRORS as error:
            kind = "refused" if isinstance(error, ConnectionRefusedError) else type(error).__name__
            tally.fail(f"{'reused' if reused else 'new'} connection: {kind}")
            connection.close()
            connection = server.connection(ca)
            time.sleep(0.01)
            continue
        if status == 200:
            tally.ok(time.perf_counter() - started)
        else:
            tally.fail(f"status {status}")
    connection.close()


def run_threads(targets: list[Callable[[], None]]) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    return threads


def rotation(work: Path, seconds: float) -> str:
    """Two certificate rotations (from a new CA each, key written before the certificate) under keep-alive load."""
    with WebhookProcess(work, config(work)) as server:
        bundle = work / "bundle.crt"
        bundle.write_bytes((server.cert_dir / "ca.crt").read_bytes())
        pairs = []
        for _ in range(2):
            ca, ca_key = generate_ca()
            pairs.append(generate_serving(ca, ca_key, ["localhost"], ["127.0.0.1"]))
            bundle.write_bytes(bundle.read_bytes() + certificate_pem(ca))
        tally, stop = Tally(), threading.Event()
        threads = run_threads([lambda: keep_alive_load(server, tally, stop, bundle)] * 4)
        for cert, key in pairs:
            time.sleep(seconds / 3)
            (server.cert_dir / "tls.key").write_bytes(key_pem(key))
            time.sleep(0.5)
            (server.cert_dir / "tls.crt").write_bytes(certificate_pem(cert))
        time.sleep(seconds / 3)
        stop.set()
        for thread in threads:
            thread.join()
        return tally.line()


def sigterm(work: Path, seconds: float) -> str:
    """SIGTERM while 4 keep-alive clients send: in-flight requests must complete; then connections close."""
    with WebhookProcess(work, config(work)) as server:
        tally, stop = Tally(), threading.Event()
        threads = run_threads([lambda: keep_alive_load(server, tally, stop)] * 4)
        time.sleep(seconds / 2)
        process = server.process
        if process is None:
            return "server did not start"
        process.send_signal(signal.SIGTERM)
        signalled = len(tally.latencies)
        code = process.wait(timeout=30)
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join()
        return f"{tally.line()}; {signalled} answered before the signal, exit {code}"


def malformed(work: Path, seconds: float) -> str:
    """Valid keep-alive load alone, then with a client sending malformed and oversize requests beside it."""
    bad = (
        (b"{not json", "application/json"),
        (b"", "application/json"),
        (b"{}", "text/plain"),
        (b"[" * 100_000, "application/json"),
        (b" " * (BODY_LIMIT + 1), "application/json"),
    )
    with WebhookProcess(work, config(work)) as server:
        lines = []
        for hostile in (False, True):
            tally, stop, rejected = Tally(), threading.Event(), Counter[int]()

            def attacker(stop: threading.Event = stop, rejected: Counter[int] = rejected) -> None:
                while not stop.is_set():
                    for body, content_type in bad:
                        connection = server.connection()
                        try:
                            rejected[post(connection, body, content_type)] += 1
                        except CLIENT_ERRORS:
                            rejected[0] += 1
                        finally:
                            connection.close()

            targets = [lambda tally=tally, stop=stop: keep_alive_load(server, tally, stop)] * 3
            threads = run_threads(targets + ([attacker] if hostile else []))
            time.sleep(seconds / 2)
            stop.set()
            for thread in threads:
                thread.join()
            extra = f"; bad requests answered by status {dict(rejected)}" if hostile else ""
            lines.append(f"{'with' if hostile else 'without'} bad traffic: {tally.line()}{extra}")
        return "\n    ".join(lines)


def slow_bodies(work: Path, seconds: float) -> str:
    """100 connections that send half a body and stall, beside valid load: how long until each is cut off."""
    with WebhookProcess(work, config(work)) as server:
        tally, stop = Tally(), threading.Event()
        cut_off: list[float] = []
        statuses: Counter[int] = Counter()
        lock = threading.Lock()

        def stall() -> None:
            connection = server.connection()
            connection.putrequest("POST", "/mutate?timeout=2s")
            connection.putheader("Content-Type", "application/json")
            connection.putheader("Content-Length", str(len(REVIEW)))
            connection.endheaders()
            connection.send(REVIEW[: len(REVIEW) // 2])
            started = time.monotonic()
            try:
                status = connection.getresponse().status
            except CLIENT_ERRORS:
                status = 0
            with lock:
                cut_off.append(time.monotonic() - started)
                statuses[status] += 1
            connection.close()

        threads = run_threads([lambda: keep_alive_load(server, tally, stop)] * 2 + [stall] * 100)
        time.sleep(max(seconds / 2, 3))
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        worst = max(cut_off) if cut_off else float("nan")
        return (
            f"valid: {tally.line()}; stalled bodies (?timeout=2s): answered by status {dict(statuses)}, "
            f"longest held {worst:.2f} s"
        )


def config(work: Path) -> Path:
    path = work / "config.yaml"
    path.write_text(f"registry: {REGISTRY}\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6, help="load per scenario")
    args = parser.parse_args()
    scenarios = {
        "certificate rotated twice mid-load": rotation,
        "SIGTERM mid-load": sigterm,
        "malformed and oversize requests mixed in": malformed,
        "slow bodies (slowloris-style)": slow_bodies,
    }
    for name, scenario in scenarios.items():
        with tempfile.TemporaryDirectory(prefix="resilience-") as work:
            print(f"{name}:\n    {scenario(Path(work), args.seconds)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
