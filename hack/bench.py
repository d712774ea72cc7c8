"""Admission throughput, latency and CPU: the webhook against reference servers on the same TLS stack, wrk and hey.

The webhook runs as deployed (log level info: one JSON line per decision, here to /dev/null), on its own connection
layer (uvloop + httptools, webhook.serve.connection). Three references, each one process, one after the other:

- floor: uvicorn over the same TLS setup answering a constant AdmissionReview without parsing: HTTP + TLS as the
  webhook was served before issue 13. The throughput ratios are to this floor, so they compare across machines.
- parse: the floor that also decodes the body with orjson (what reading a review costs under uvicorn).
- bare: a bare uvloop + httptools protocol answering the constant in one write: the stack's physical floor. CPU per
  admission is printed against it, so the distance left is visible.

Pod cases: 1, 10 and 100 containers (image and name only, as before), and a realistic 10-container Deployment pod
(about 16.8 KB: env, ports, probes, mounts, resources, securityContext, the projected service-account volume). The
last two lines read ``throughput ratio webhook/floor (10 containers): 0.NN`` and ``throughput ratio webhook/floor
(10 containers, realistic pod): 0.NN``. Nothing here is a test: it only prints figures.

    hack/bench                         # the full run (about 5 minutes)
    hack/bench --duration 5 --quick    # a smoke run: the two 10-container cases
    hack/bench --soak 10               # 10 minutes at 1,000 req/s, RSS every 30 s (memory must stay flat)
    hack/bench --event-loop asyncio    # every server on asyncio's own loop
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import orjson

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Sequence

    from webhook.certs import CertificateFiles
    from webhook.serve.server import EventLoop

    Message = dict[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    Asgi = Callable[[Message, Receive, Send], Awaitable[None]]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from reviews import make_pod, make_review  # noqa: E402

from webhook.certs import write_certificates  # noqa: E402

CONFIG = ROOT / "examples" / "config.yaml"
IMAGES = (
    "quay.io/prometheus/node-exporter:v1.8.2",
    "nginx:1.27",
    "registry.k8s.io/ingress-nginx/controller:v1.11.2",
    "public.ecr.aws/karpenter/controller:1.1.0",
    "ghcr.io/fluxcd/source-controller:v1.4.1",
)

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  io.write(string.format("BENCH rps=%.1f p50=%.3f p99=%.3f p999=%.3f errors=%d requests=%d\\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status
      + summary.errors.timeout, summary.requests))
end
"""


def floor_app(*, parse: bool = False) -> Asgi:
    """An ASGI app that reads the body and answers a constant review: no decisions, and no JSON parsing unless
    ``parse`` (then the body is decoded with orjson, as the webhook does, and thrown away)."""
    answer = CONSTANT

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        more = True
        chunks = []
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        if parse:
            orjson.loads(b"".join(chunks))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer})

    return app


@dataclass(frozen=True)
class Stack:
    """The event loop, the same for every server (``serve --event-loop``); ``before``: an older source tree."""

    loop: EventLoop = "auto"
    before: Path | None = None
    """A checkout of an earlier version (``git archive REF | tar -x -C DIR``), run as server ``before`` with this
    venv: the before/after figures of one run."""
    pin: bool = False
    """Servers on the last CPU, load generators on the others (``taskset``): the client's CPU does not queue the
    server's requests, as the API server's does not in a cluster."""

    def server_cpus(self) -> list[str]:
        """The ``taskset`` prefix for a server, or nothing."""
        return ["taskset", "-c", str(_cpus()[-1])] if self.pin else []

    def client_cpus(self) -> list[str]:
        """The ``taskset`` prefix for a load generator, or nothing."""
        return ["taskset", "-c", ",".join(str(cpu) for cpu in _cpus()[:-1])] if self.pin else []


def _cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def can_pin() -> bool:
    """Whether there are two CPUs or more to split, and ``taskset`` to split them."""
    return len(_cpus()) >= 2 and shutil.which("taskset") is not None


CONSTANT = json.dumps(
    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": "x", "allowed": True}}
).encode()


class BareConstant(asyncio.Protocol):
    """An asyncio protocol that answers every request with :data:`CONSTANT` in one write: httptools and TLS alone."""

    def __init__(self) -> None:
        import httptools  # noqa: PLC0415

        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
            len(CONSTANT),
            CONSTANT,
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.transport is not None:
            self.transport.write(self.answer)

    def connection_lost(self, _exc: Exception | None) -> None:
        self.transport = None


def serve_bare(port: int, cert: Path, key: Path, stack: Stack) -> None:
    """Run the bare constant responder on the same TLS context."""
    from webhook.serve.server import run_event_loop  # noqa: PLC0415
    from webhook.serve.tls import CertificateSource  # noqa: PLC0415

    source = CertificateSource(cert, key)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(BareConstant, "127.0.0.1", port, ssl=source.server_context(), backlog=2048)
        async with server:
            await server.serve_forever()

    run_event_loop(main(), stack.loop)


def serve_floor(port: int, cert: Path, key: Path, stack: Stack, *, parse: bool = False) -> None:
    """Run the floor server (same uvicorn settings and TLS context as the webhook)."""
    import uvicorn  # noqa: PLC0415

    from webhook.serve.server import run_event_loop  # noqa: PLC0415
    from webhook.serve.tls import CertificateSource  # noqa: PLC0415

    source = CertificateSource(cert, key)
    config = uvicorn.Config(
        floor_app(parse=parse),
        host="127.0.0.1",
        port=port,
        ssl_context_factory=lambda _c, _d: source.server_context(),
        lifespan="off",
        access_log=False,
        log_level="warning",
        http="httptools",
        proxy_headers=False,
        server_header=False,
        date_header=False,
    )
    run_event_loop(uvicorn.Server(config).serve(), stack.loop)


@dataclass
class Result:
    rps: float
    p50: float
    p99: float
    p999: float
    errors: int
    requests: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def https_get(port: int, ca: Path, path: str, *, timeout: float = 5, whole: bool = True) -> bytes:
    """``GET path`` over TLS on loopback, ``Connection: close``: the whole answer, or its first bytes."""
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        if not whole:
            return tls.recv(64)
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def wait_ready(port: int, ca: Path, path: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if https_get(port, ca, path, timeout=1, whole=False).startswith(b"HTTP/1.1 "):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server on port {port} did not come up")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass(frozen=True)
class Load:
    """How wrk drives a server."""

    script: Path
    duration: int
    connections: int


def run_wrk(port: int, path: str, body: Path, load: Load, client: Sequence[str] = ()) -> Result:
    """Saturating load over ``load.connections`` kept-open connections; ``client``: a ``taskset`` prefix."""
    out = subprocess.run(
        [
            *client,
            "wrk",
            "-t2",
            f"-c{load.connections}",
            f"-d{load.duration}s",
            "--timeout",
            "5s",
            "-s",
            str(load.script),
            f"https://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "BENCH_BODY": str(body)},
    ).stdout
    match = re.search(r"BENCH rps=(\S+) p50=(\S+) p99=(\S+) p999=(\S+) errors=(\d+) requests=(\d+)", out)
    if match is None:
        raise SystemExit(f"wrk printed no figures:\n{out}")
    rps, p50, p99, p999 = (float(value) for value in match.group(1, 2, 3, 4))
    return Result(rps, p50, p99, p999, int(match.group(5)), int(match.group(6)))


def run_hey(  # noqa: PLR0913, PLR0917 - one measurement's settings
    port: int, path: str, body: Path, duration: int, rate: int, client: Sequence[str] = ()
) -> tuple[float, float, int]:
    """Fixed-rate load (hey: 5 workers x rate/5 req/s, keep-alive); returns p50 and p99 in ms, and errors.

    hey's workers fire on aligned ticks, so N workers send bursts of N requests that queue behind each other; 5 keeps
    that artefact small (the API server's arrivals are not synchronised) while leaving each worker 5 ms per request.
    """
    workers = 5
    out = subprocess.run(
        [
            *client,
            "hey",
            "-z",
            f"{duration}s",
            "-c",
            str(workers),
            "-q",
            str(rate // workers),
            "-m",
            "POST",
            "-T",
            "application/json",
            "-D",
            str(body),
            f"https://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    p50 = re.search(r"50%+ in (\S+) secs", out)
    p99 = re.search(r"99%+ in (\S+) secs", out)
    codes = re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)
    failed = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s+(?:Get|Post)\b", out, re.MULTILINE))
    errors = sum(int(n) for code, n in codes if code != "200") + failed
    if p50 is None or p99 is None:
        raise SystemExit(f"hey printed no figures:\n{out}")
    return float(p50.group(1)) * 1000, float(p99.group(1)) * 1000, errors


def pod_images(size: int) -> list[str]:
    """``size`` images for a benchmark pod: :data:`IMAGES`, then variants of them (distinct strings, same tiers)."""
    return [IMAGES[i] if i < len(IMAGES) else IMAGES[i % len(IMAGES)].replace(":", f"-{i}:", 1) for i in range(size)]


REALISTIC = "10 containers, realistic pod"


def realistic_pod() -> dict[str, Any]:
    """A 10-container Deployment pod as the API server sends it on CREATE: env, ports, probes, mounts, resources,
    securityContext on every container, the projected service-account token volume (about 16.8 KB as a review)."""
    pod = make_pod(*pod_images(10))
    pod["metadata"]["labels"].update({"app.kubernetes.io/name": "web", "app.kubernetes.io/part-of": "shop"})
    pod["metadata"]["annotations"] = {"kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}
    for index, container in enumerate(pod["spec"]["containers"]):
        container.update(
            {
                "env": [{"name": f"SETTING_{n}", "value": f"value-{index}-{n}"} for n in range(4)]
                + [{"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}],
                "ports": [{"name": "http", "containerPort": 8080 + index, "protocol": "TCP"}],
                "livenessProbe": {
                    "httpGet": {"path": "/healthz", "port": 8080 + index, "scheme": "HTTP"},
                    "initialDelaySeconds": 10,
                    "timeoutSeconds": 1,
                    "periodSeconds": 10,
                    "successThreshold": 1,
                    "failureThreshold": 3,
                },
                "readinessProbe": {
                    "httpGet": {"path": "/readyz", "port": 8080 + index, "scheme": "HTTP"},
                    "timeoutSeconds": 1,
                    "periodSeconds": 5,
                    "successThreshold": 1,
                    "failureThreshold": 3,
                },
                "resources": {
                    "limits": {"cpu": "500m", "memory": "256Mi"},
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                },
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/app", "readOnly": True},
                    {"name": "data", "mountPath": "/var/lib/app"},
                    {
                        "name": "kube-api-access-abcde",
                        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                        "readOnly": True,
                    },
                ],
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "runAsNonRoot": True,
                    "runAsUser": 10001,
                    "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
            }
        )
    pod["spec"]["volumes"] = [
        {"name": "config", "configMap": {"name": "web-config", "defaultMode": 420}},
        {"name": "data", "emptyDir": {}},
        {
            "name": "kube-api-access-abcde",
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                }
                            ]
                        }
                    },
                ],
            },
        },
    ]
    pod["spec"]["tolerations"] = [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        },
    ]
    return pod


def case_name(size: int) -> str:
    return f"{size} containers"


def write_bodies(work: Path, cases: tuple[str, ...]) -> dict[str, Path]:
    """One API-server-shaped AdmissionReview per case, written to ``work``."""
    bodies = {}
    for index, case in enumerate(cases):
        pod = realistic_pod() if case == REALISTIC else make_pod(*pod_images(int(case.split()[0])))
        bodies[case] = work / f"review-{index}.json"
        bodies[case].write_text(json.dumps(make_review(pod)))
    return bodies


def server_argv(name: str, port: int, files: CertificateFiles, stack: Stack) -> tuple[list[str], str]:
    """The command that starts ``name`` (floor or webhook) on ``port``, and its readiness path."""
    if name in {"floor", "parse", "bare"}:
        floor = [sys.executable, __file__, "--floor", str(port), str(files.cert), str(files.key)]
        kind = {"floor": [], "parse": ["--floor-parses"], "bare": ["--floor-bare"]}[name]
        return [*floor, *kind, "--event-loop", stack.loop], "/healthz"
    executable = [str(Path(sys.executable).parent / "ecr-ptc-webhook")]
    if name == "before":
        executable = [sys.executable, "-c", "import sys; from webhook.cli import main; sys.exit(main())"]
    # An older tree reads its own example config: a newer one may hold keys it does not know.
    config = stack.before / "examples" / "config.yaml" if name == "before" and stack.before else CONFIG
    return [
        *executable,
        "serve",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--tls-cert",
        str(files.cert),
        "--tls-key",
        str(files.key),
        "--event-loop",
        stack.loop,
    ], "/readyz"


@contextlib.contextmanager
def running(name: str, files: CertificateFiles, stack: Stack) -> Iterator[tuple[int, int]]:
    """Start ``name``, wait until it answers, yield (port, pid); SIGTERM it afterwards."""
    port = free_port()
    argv, ready_path = server_argv(name, port, files, stack)
    before = stack.before if name == "before" else None  # run from there: `-c` puts the working directory first
    process = subprocess.Popen(
        [*stack.server_cpus(), *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=before
    )
    try:
        wait_ready(port, files.ca, ready_path)
        yield port, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def rss_mib(pid: int) -> float:
    """Current resident memory of ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def soak(files: CertificateFiles, stack: Stack, body: Path, minutes: float, rate: int) -> None:
    """Fixed-rate load on the webhook for ``minutes``, printing its RSS every interval: memory must stay flat."""
    interval = 30
    with running("webhook", files, stack) as (port, pid):
        rounds = max(1, round(minutes * 60 / interval))
        samples = [rss_mib(pid)]
        print(f"soak: {rate} req/s, 10 containers, {rounds * interval} s; RSS MiB every {interval} s:")
        for _ in range(rounds):
            p50, p99, errors = run_hey(port, "/mutate", body, interval, rate, stack.client_cpus())
            samples.append(rss_mib(pid))
            print(f"  RSS {samples[-1]:6.1f} MiB  p50 {p50:.2f} ms  p99 {p99:.2f} ms  errors {errors}", flush=True)
    settled = samples[1]
    print(
        f"soak RSS: start {samples[0]:.1f} MiB, after first interval {settled:.1f} MiB, end {samples[-1]:.1f} MiB, "
        f"growth after warm-up {samples[-1] - settled:+.1f} MiB"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (kept open, like the API server)")
    parser.add_argument("--rate", type=int, default=1000, help="requests/s for the fixed-rate latency check")
    parser.add_argument("--quick", action="store_true", help="only the two 10-container cases")
    parser.add_argument("--soak", type=float, metavar="MINUTES", help="instead: fixed-rate soak, RSS over time")
    parser.add_argument(
        "--event-loop", choices=["auto", "uvloop", "asyncio"], default="auto", help="every server's loop"
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="servers on the last CPU, load generators on the others (taskset); default: every process on every CPU",
    )
    parser.add_argument("--floor", nargs=3, metavar=("PORT", "CERT", "KEY"), help=argparse.SUPPRESS)
    parser.add_argument("--floor-parses", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--before", type=Path, metavar="DIR", help="also run the webhook of this source tree (git archive REF | tar -x)"
    )
    args = parser.parse_args()
    stack = Stack(args.event_loop, args.before.resolve() if args.before else None, pin=args.pin and can_pin())
    if args.floor:
        port, cert, key = int(args.floor[0]), Path(args.floor[1]), Path(args.floor[2])
        if args.floor_bare:
            serve_bare(port, cert, key, stack)
        else:
            serve_floor(port, cert, key, stack, parse=args.floor_parses)
        return 0
    for tool in ("wrk", "hey"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: run hack/bench (it installs wrk and hey), or apt-get install {tool}")
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        files = write_certificates(work / "certs", ["localhost"], ["127.0.0.1"])
        sizes = (10,) if args.quick else (1, 10, 100)
        cases = (*(case_name(size) for size in sizes), REALISTIC)
        bodies = write_bodies(work, cases)
        if args.soak:
            soak(files, stack, bodies[case_name(10)], args.soak, args.rate)
            return 0
        script = work / "post.lua"
        script.write_text(WRK_SCRIPT)
        sizes_kb = ", ".join(f"{case}: {bodies[case].stat().st_size / 1000:.1f} KB" for case in cases)
        pinned = (
            f"servers on CPU {stack.server_cpus()[-1]}, clients on {stack.client_cpus()[-1]}"
            if stack.pin
            else "unpinned"
        )
        print(f"event loop {stack.loop}; {pinned}; bodies {sizes_kb}")
        compare(files, stack, bodies, Load(script, args.duration, args.connections), args.rate)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compare(files: CertificateFiles, stack: Stack, bodies: dict[str, Path], load: Load, rate: int) -> None:
    """Each server in turn: wrk per case (with CPU per request), hey at a fixed rate; the table, then the ratios."""
    results: dict[tuple[str, str], Result] = {}
    cpu: dict[tuple[str, str], float] = {}
    fixed: dict[str, tuple[float, float, int, float]] = {}
    served: dict[str, list[int]] = {}
    ten = case_name(10)
    print(
        f"{'server':8} {'case':28} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'errors':>7} "
        f"{'CPU us/req':>10}"
    )
    names = ("floor", "parse", "bare", *(("before",) if stack.before else ()), "webhook")
    for name in names:
        with running(name, files, stack) as (port, pid):
            for case, body in bodies.items():
                client = stack.client_cpus()
                run_wrk(port, "/mutate", body, Load(load.script, 2, load.connections), client)  # warm-up
                before = cpu_seconds(pid)
                result = results[name, case] = run_wrk(port, "/mutate", body, load, client)
                cpu[name, case] = (cpu_seconds(pid) - before) / max(result.requests, 1) * 1e6
                print(
                    f"{name:8} {case:28} {result.rps:>9.0f} {result.p50:>8.2f} {result.p99:>8.2f} "
                    f"{result.p999:>9.2f} {result.errors:>7} {cpu[name, case]:>10.1f}",
                    flush=True,
                )
            if name in {"floor", "before", "webhook"}:
                for case in (ten, REALISTIC):
                    buckets = mutate_buckets(port, files.ca) if name == "webhook" else []
                    hey = run_hey(port, "/mutate", bodies[case], load.duration, rate, stack.client_cpus())
                    fixed[f"{name}: {rate} req/s fixed rate, {case}"] = (*hey, peak_rss_mib(pid))
                    if buckets:
                        after = mutate_buckets(port, files.ca)
                        served[case] = [new - old for new, old in zip(after, buckets, strict=True)]
    for case, counts in served.items():  # before the summary: its ratio lines stay last
        shares = " / ".join(f"{100 * counts[index] / max(counts[-1], 1):.2f}%" for index in (0, 1))
        print(
            f"webhook: {rate} req/s fixed rate, {case}: answered within 0.5 / 1 ms of the request's first byte "
            f"(its own latency histogram): {shares}"
        )
    summarise(results, cpu, fixed, tuple(bodies), stack)


def mutate_buckets(port: int, ca: Path) -> list[int]:
    """The webhook's cumulative ``/mutate`` latency bucket counts (``le`` 0.0005, 0.001, ..., ``+Inf``), scraped."""
    text = https_get(port, ca, "/metrics").decode()
    pattern = r'^ecr_ptc_webhook_request_duration_seconds_bucket\{le="[^"]+",path="/mutate"\} (\S+)$'
    return [int(float(value)) for value in re.findall(pattern, text, re.MULTILINE)]


def summarise(
    results: dict[tuple[str, str], Result],
    cpu: dict[tuple[str, str], float],
    fixed: dict[str, tuple[float, float, int, float]],
    cases: tuple[str, ...],
    stack: Stack,
) -> None:
    """The fixed-rate lines, CPU per admission, then the ratios: the two 10-container ones last."""
    ten = case_name(10)
    bodies = cases
    for label, (p50, p99, errors, peak) in fixed.items():
        print(f"{label}: p50 {p50:.2f} ms, p99 {p99:.2f} ms, errors {errors}; peak RSS {peak:.0f} MiB")
    for case in bodies:
        ratio = results["parse", case].rps / results["floor", case].rps
        print(f"throughput ratio parse-only/floor ({case}): {ratio:.2f}")
    for case in bodies:
        extra = cpu["webhook", case] - cpu["bare", case]
        print(
            f"CPU per admission ({case}): webhook {cpu['webhook', case]:.1f} us, bare protocol "
            f"{cpu['bare', case]:.1f} us (the stack's floor), {extra:.1f} us ours"
        )
    if stack.before:
        for case in bodies:
            ratio = results["before", case].rps / results["floor", case].rps
            print(f"throughput ratio before/floor ({case}): {ratio:.2f}")
    for case in (*(case for case in bodies if case not in {ten, REALISTIC}), ten, REALISTIC):
        ratio = results["webhook", case].rps / results["floor", case].rps
        print(f"throughput ratio webhook/floor ({case}): {ratio:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
