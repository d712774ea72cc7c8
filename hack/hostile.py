"""The webhook against hostile and broken clients, with figures: issue 13's table, row by row, on loopback.

Starts ``ecr-ptc-webhook serve`` (default flags unless a case says otherwise) and, for each case, prints what a
client could hold or break and whether valid requests were still served. Every loop is bounded; nothing here is a
test (tests/integration/test_hostile.py has the pass/fail versions).

    .venv/bin/python hack/hostile.py            # every case (about 2 minutes)
    .venv/bin/python hack/hostile.py --case idle --case bursts
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from reviews import make_pod, make_review  # noqa: E402

from webhook.certs import certificate_pem, generate_ca, key_pem, write_certificates  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from webhook.certs import CertificateFiles

CONFIG = ROOT / "examples" / "config.yaml"
EXECUTABLE = Path(sys.executable).parent / "ecr-ptc-webhook"


class Server:
    """One server process on a free port."""

    def __init__(self, files: CertificateFiles, *args: str, stderr: int = subprocess.DEVNULL) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.files = files
        argv = [str(EXECUTABLE), "serve", "--config", str(CONFIG), "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--tls-cert", str(files.cert), "--tls-key", str(files.key), "--cert-watch-interval", "0.2", *args]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
        self.context = ssl.create_default_context(cafile=str(files.ca))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if self.request("GET", "/readyz")[0] == 200:
                    return
            time.sleep(0.05)
        raise SystemExit("server did not come up")

    def connect(self, timeout: float = 10) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the API server's Go client: no Nagle delay
        return self.context.wrap_socket(raw, server_hostname="localhost")

    def request(self, method: str, path: str, body: bytes = b"", timeout: float = 10) -> tuple[int, bytes, float]:
        """Status, body and seconds of one request on a new connection; status 0 when the connection failed."""
        started = time.monotonic()
        try:
            with self.connect(timeout) as sock:
                head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                sock.sendall(head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                status, _, answer = read_answer(sock)
        except (OSError, ConnectionError):
            return 0, b"", time.monotonic() - started
        return status, answer, time.monotonic() - started

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()


@contextlib.contextmanager
def server(files: CertificateFiles, *args: str, stderr: int = subprocess.DEVNULL) -> Iterator[Server]:
    running = Server(files, *args, stderr=stderr)
    try:
        yield running
    finally:
        running.stop()


def read_answer(sock: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before an answer")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def review(*images: str, annotations: dict[str, str] | None = None) -> bytes:
    return json.dumps(make_review(make_pod(*images, annotations=annotations))).encode()


VALID = review("quay.io/prometheus/node-exporter:v1.8.2", "nginx:1.27")


def post(body: bytes, path: str = "/mutate", version: str = "1.1") -> bytes:
    head = f"POST {path} HTTP/{version}\r\nHost: x\r\nContent-Type: application/json\r\n"
    return head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock``, or None if it was still open after ``seconds``."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return None
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    return time.monotonic() - started


async def open_idle(port: int, context: ssl.SSLContext, count: int) -> list[asyncio.StreamWriter]:
    """``count`` TLS connections that finish the handshake and send nothing."""

    async def one() -> asyncio.StreamWriter | None:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
        except OSError:
            return None
        return writer

    writers = await asyncio.gather(*(one() for _ in range(count)))
    return [writer for writer in writers if writer is not None]


def case_idle(files: CertificateFiles) -> None:
    with server(files) as running:

        async def run() -> None:
            writers = await open_idle(running.port, running.context, 511)
            statuses = [running.request("POST", "/mutate", VALID)[0] for _ in range(20)]
            health = running.request("GET", "/healthz")[0]
            print(
                f"idle: {len(writers)} silent TLS connections held; then 20 valid requests: "
                f"{statuses.count(200)} x 200, {statuses.count(503)} x 503; /healthz {health}"
            )
            started = time.monotonic()
            while any(not writer.transport.is_closing() for writer in writers) and time.monotonic() - started < 30:
                await asyncio.sleep(0.2)
                for writer in writers:
                    with contextlib.suppress(Exception):
                        if writer.transport.get_extra_info("socket") is None:
                            writer.close()
                await asyncio.gather(*(drain_eof(writer) for writer in writers))
            still = sum(not writer.transport.is_closing() for writer in writers)
            print(f"idle: silent connections still open after {time.monotonic() - started:.1f} s: {still}")
            for writer in writers:
                writer.close()

        asyncio.run(run())


async def drain_eof(writer: asyncio.StreamWriter) -> None:
    reader = writer._protocol._stream_reader  # type: ignore[attr-defined]  # noqa: SLF001 - a probe, not an API
    if reader is not None and reader.at_eof():
        writer.close()


def case_trickle(files: CertificateFiles) -> None:
    with server(files) as running, running.connect() as sock:
        started = time.monotonic()
        head = post(VALID)
        closed = None
        for index in range(60):  # one byte every 0.5 s: 30 s at most
            try:
                sock.sendall(head[index : index + 1])
            except (OSError, ssl.SSLError):
                closed = time.monotonic() - started
                break
            if closed_within(sock, 0.5) is not None:
                closed = time.monotonic() - started
                break
        print(f"trickle: a head sent one byte every 0.5 s was cut after {closed or float('nan'):.1f} s")


def case_big_headers(files: CertificateFiles) -> None:
    with server(files) as running:
        before = running.rss_mib()

        def send(size: int) -> int:
            with running.connect() as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
                block = b"a" * (1 << 20)
                with contextlib.suppress(OSError, ssl.SSLError):
                    for _ in range(size):
                        sock.sendall(block)
                try:
                    return read_answer(sock)[0]
                except (OSError, ConnectionError, ssl.SSLError):
                    return 0

        one = send(64)
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(send(48))) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(
            f"headers: one 64 MiB header -> {one}; 4 x 48 MiB in parallel -> {sorted(results)}; "
            f"RSS {before:.0f} -> {running.rss_mib():.0f} MiB; then a valid request: "
            f"{running.request('POST', '/mutate', VALID)[0]}"
        )


def case_overload(files: CertificateFiles) -> None:
    with server(files) as running:
        held = []
        for _ in range(600):  # the limit is 512: each holds a head and part of its body
            sock = running.connect()
            sock.sendall(post(VALID)[: -len(VALID) + 10])
            held.append(sock)
        health = running.request("GET", "/healthz")[0]
        statuses = []
        for sock in held:
            try:
                sock.sendall(VALID[10:])
                statuses.append(read_answer(sock)[0])
            except (OSError, ConnectionError, ssl.SSLError):
                statuses.append(0)
            sock.close()
        print(
            f"overload: 600 connections holding a request (limit 512): {statuses.count(200)} served 200, "
            f"{statuses.count(503)} answered 503, {statuses.count(0)} failed; /healthz meanwhile {health}"
        )


def case_stalled_log(files: CertificateFiles) -> None:
    with server(files, stderr=subprocess.PIPE) as running:  # stderr never read
        body = review(*[f"quay.io/org/image-{index}:v1" for index in range(100)])
        times = []
        statuses = []
        with running.connect() as sock:
            for _ in range(1000):
                started = time.monotonic()
                sock.sendall(post(body))
                statuses.append(read_answer(sock)[0])
                times.append(time.monotonic() - started)
        metrics = running.request("GET", "/metrics")[1].decode()
        dropped = next(
            (
                line.split()[-1]
                for line in metrics.splitlines()
                if line.startswith("ecr_ptc_webhook_decision_log_lines")
            ),
            "?",
        )
        times.sort()
        print(
            f"stalled stderr: 1,000 reviews of 100 images: {statuses.count(200)} x 200, p99 "
            f"{times[int(len(times) * 0.99)] * 1000:.1f} ms; decision lines dropped (metric): {dropped}"
        )


def case_timeout(files: CertificateFiles) -> None:
    with server(files) as running, running.connect(timeout=60) as sock:
        started = time.monotonic()
        sock.sendall(post(VALID, path="/mutate?timeout=1h")[:-10])
        status, headers, _ = read_answer(sock)
        elapsed = time.monotonic() - started
        closed = closed_within(sock, 5)
        print(
            f"timeout: ?timeout=1h with a body that never ends: {status} after {elapsed:.1f} s "
            f"(connection: {headers.get('connection')}), closed {'yes' if closed is not None else 'no'}"
        )


def case_annotations(files: CertificateFiles) -> None:
    import base64  # noqa: PLC0415

    import jsonpatch  # noqa: PLC0415

    with server(files) as running:
        crowded = make_pod("quay.io/a/b:1", annotations={"example.com/pad": "x" * (262_134 - 15)})
        many = make_pod(*[f"quay.io/{'org-name-long/' * 14}image-{index}:v1.0.0" for index in range(1_200)])
        for label, pod in (("262,134 bytes of annotations", crowded), ("1,200 containers, long images", many)):
            status, answer, _ = running.request("POST", "/mutate", json.dumps(make_review(pod)).encode())
            patch = json.loads(base64.b64decode(json.loads(answer)["response"]["patch"]))
            patched = jsonpatch.apply_patch(pod, patch)
            annotations = patched["metadata"].get("annotations") or {}
            total = sum(len(key.encode()) + len(value.encode()) for key, value in annotations.items())
            rewritten = sum(c["image"].startswith("123456789012") for c in patched["spec"]["containers"])
            print(
                f"annotations: {label}: {status}, {rewritten} images rewritten, annotations after the patch "
                f"{total:,} bytes (limit 262,144)"
            )


def case_large_review(files: CertificateFiles) -> None:
    pod = make_pod()
    pod["spec"]["containers"] = [{"name": f"c{index}", "image": "quay.io/o/i:1"} for index in range(60_000)]
    body = json.dumps(make_review(pod)).encode()
    with server(files) as running:
        alone = running.request("POST", "/mutate", body, timeout=30)
        results: list[float] = []

        def big() -> None:
            running.request("POST", "/mutate", body, timeout=30)

        threads = [threading.Thread(target=big) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.05)
        valid = running.request("POST", "/mutate", VALID)
        results.append(valid[2])
        for thread in threads:
            thread.join()
        print(
            f"large review: 60,000 containers ({len(body) / 1e6:.1f} MB) answered {alone[0]} in {alone[2]:.2f} s; "
            f"with 4 in parallel a valid review took {results[0]:.2f} s ({valid[0]})"
        )


def case_sigterm(files: CertificateFiles) -> None:
    running = Server(files)
    body = review(*[f"quay.io/a/b-{index}:1" for index in range(300)])
    not_reading = running.connect()
    not_reading.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for _ in range(20):
        not_reading.sendall(post(body))
    slow = running.connect()
    slow.sendall(post(VALID, path="/mutate?timeout=1h")[:-10])
    time.sleep(0.5)
    started = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    running.process.wait(timeout=60)
    print(
        f"sigterm: with a client that never reads and a body that never ends: exit after "
        f"{time.monotonic() - started:.1f} s (status {running.process.returncode}); the chart's preStop 5 s + this "
        f"must stay under terminationGracePeriodSeconds 30"
    )
    not_reading.close()
    slow.close()


def case_sighup(files: CertificateFiles) -> None:
    with server(files) as running:
        failures = 0
        served = 0
        stop = threading.Event()

        def load() -> None:
            nonlocal failures, served
            with running.connect() as sock:
                while not stop.is_set():
                    try:
                        sock.sendall(post(VALID))
                        read_answer(sock)
                        served += 1
                    except (OSError, ConnectionError, ssl.SSLError):
                        failures += 1
                        return

        threads = [threading.Thread(target=load) for _ in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        for _ in range(5):
            running.process.send_signal(signal.SIGHUP)
            time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join()
        alive = running.process.poll() is None
        print(f"sighup: 5 x SIGHUP under 8 connections of load: {served} served, {failures} failed, alive: {alive}")


def case_expired_rotation(files: CertificateFiles) -> None:
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    with server(files) as running:
        ca, ca_key = generate_ca()
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        expired = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=30))
            .not_valid_after(now - dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        files.key.write_bytes(key_pem(key))
        files.cert.write_bytes(certificate_pem(expired))
        time.sleep(1.5)  # several watch intervals
        status = running.request("POST", "/mutate", VALID)[0]
        print(f"rotation: to an expired pair: requests with the old CA still {status} (the old certificate serves)")


def case_http10(files: CertificateFiles) -> None:
    with server(files) as running, running.connect() as sock:
        sock.sendall(post(VALID, version="1.0"))
        status, headers, body = read_answer(sock)
        print(
            f"http/1.0: {status}, content-length {headers.get('content-length')} ({len(body)} read), "
            f"transfer-encoding {headers.get('transfer-encoding')}, connection {headers.get('connection')}"
        )


def case_bursts(files: CertificateFiles) -> None:
    with server(files) as running:
        samples = [running.rss_mib()]

        async def burst() -> None:
            writers = await open_idle(running.port, running.context, 500)
            await asyncio.sleep(0.5)
            for writer in writers:
                writer.close()
            await asyncio.sleep(0.5)

        for _ in range(12):
            asyncio.run(burst())
            samples.append(running.rss_mib())
        print(
            f"bursts: 12 x 500 idle TLS connections: RSS {samples[0]:.0f} -> max {max(samples):.0f} -> "
            f"{samples[-1]:.0f} MiB (after each: {', '.join(f'{s:.0f}' for s in samples[1:])})"
        )


CASES: dict[str, Callable[[CertificateFiles], None]] = {
    "idle": case_idle,
    "trickle": case_trickle,
    "headers": case_big_headers,
    "overload": case_overload,
    "stalled-log": case_stalled_log,
    "timeout": case_timeout,
    "annotations": case_annotations,
    "large-review": case_large_review,
    "sigterm": case_sigterm,
    "sighup": case_sighup,
    "rotation": case_expired_rotation,
    "http10": case_http10,
    "bursts": case_bursts,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="run only these cases")
    args = parser.parse_args()
    for name in args.case or list(CASES):
        with tempfile.TemporaryDirectory(prefix="hostile-") as work:
            files = write_certificates(Path(work), ["localhost"], ["127.0.0.1"])
            CASES[name](files)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
