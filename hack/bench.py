"""Admission throughput, latency and CPU: the webhook against reference servers on the same TLS stack.

The webhook runs as deployed (log level info: one JSON line per decision, here to /dev/null), on its own connection
layer (uvloop + httptools, webhook.serve.connection). Three references, each one process:

- floor: uvicorn over the same TLS setup answering a constant AdmissionReview without parsing: HTTP + TLS as the
  webhook was served before issue 13. The throughput ratios are to this floor, so they compare across machines.
- parse: the floor that also decodes the body with orjson (what reading a review costs under uvicorn).
- bare: a bare uvloop + httptools protocol answering the constant in one write: the stack's physical floor. CPU per
  admission is printed against it, so the distance left is visible.

Pod cases: 1, 10 and 100 containers (image and name only, as before), and a realistic 10-container Deployment pod
(about 17 KB: env, ports, probes, mounts, resources, securityContext, the projected service-account volume).

Throughput: every server is started once and stays up (idle while another is measured); Debian's ``wrk`` saturates
each in turn over 16 kept-open connections, for every case, and the whole sequence runs ``--rounds`` times (A B A B:
a slow minute of a shared machine lands on every server, not on one). Within a round the webhook is measured right
after the floor and the order is reversed every other round (:func:`round_order`): a ratio's two figures are taken
seconds apart, and a drift of the machine's speed across a round does not favour either. Each figure is the median
of its rounds, and each ratio the median of the rounds' own ratios; every round's ratios are printed as it ends, so
the spread shows.

Latency at a fixed rate: ``hack/openload.py``, an open-loop client with Poisson arrivals over 8 kept-open
connections, measured from when each request was due (see its docstring; ``hey``'s workers fire in aligned bursts
and wait for each answer, which measured the client more than the server). On a virtual machine a CPU that idles
between requests wakes late, so each figure is taken twice: with every CPU kept out of idle by a ``SCHED_IDLE``
spinner (see :func:`kept_awake`) and with idle CPUs; the machine's own wake-up lateness is printed for both.

The last two lines read ``throughput ratio webhook/floor (10 containers): 0.NN`` and ``throughput ratio
webhook/floor (10 containers, realistic pod): 0.NN``. Nothing here is a test: it only prints figures.

    hack/bench                         # the full run (about 8 minutes)
    hack/bench --quick                 # the two 10-container cases (about 4 minutes)
    hack/bench --quick --before DIR    # also an earlier tree: before and after in one run
    hack/bench --soak 10               # 10 minutes at 1,000 req/s (hey), RSS every 30 s (memory must stay flat)
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
import statistics
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
    rounds: int = 1


@dataclass(frozen=True)
class Latency:
    """How the fixed-rate latency is measured (``hack/openload.py``)."""

    rate: int
    duration: int
    connections: int
    awake: bool
    """Also measure with every CPU kept out of idle (:func:`kept_awake`), and print the machine's wake-up lateness."""


@dataclass(frozen=True)
class Fixed:
    """What ``hack/openload.py`` measured, in ms."""

    p50: float
    p99: float
    p999: float
    errors: int
    late_p99: float
    """How late the client itself sent, at p99: its share of the latency."""


def run_openload(  # noqa: PLR0913 - one measurement's settings
    port: int, ca: Path, body: Path, latency: Latency, client: Sequence[str] = (), *, sleep_only: bool = False
) -> Fixed:
    """Open-loop Poisson load at ``latency.rate`` (hack/openload.py); ``sleep_only``: the client's wake-ups alone."""
    out = subprocess.run(
        [
            *client,
            sys.executable,
            str(Path(__file__).with_name("openload.py")),
            "--port",
            str(port),
            "--ca",
            str(ca),
            "--body",
            str(body),
            "--rate",
            str(latency.rate),
            "--duration",
            str(latency.duration),
            "--connections",
            str(latency.connections),
            *(("--sleep-only",) if sleep_only else ()),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"errors=(\d+) p50=(\S+) p90=\S+ p99=(\S+) p999=(\S+) max=\S+ late_p99=(\S+)", out)
    if match is None:
        raise SystemExit(f"openload printed no figures:\n{out}")
    p50, p99, p999, late = (float(value) for value in match.group(2, 3, 4, 5))
    return Fixed(p50, p99, p999, int(match.group(1)), late)


@contextlib.contextmanager
def kept_awake(*, enabled: bool) -> Iterator[None]:
    """While inside, a ``SCHED_IDLE`` spinner on every CPU keeps it out of idle, if ``enabled`` (and ``chrt`` exists).

    On a virtual machine, a CPU that went idle between requests wakes late: on the 2-vCPU machine these figures were
    first taken on, a thread sleeping at 1,000 wake-ups/s woke 1.2 ms late at p99 with idle CPUs, and 0.06 ms late
    with the spinners. A ``SCHED_IDLE`` task runs only when nothing else wants the CPU and yields at once to any
    task that wakes, so it takes nothing from the servers or the client: it removes the machine's idle exits from
    the figures (a node busy with other pods rarely idles), which are printed both ways.
    """
    if not enabled or shutil.which("chrt") is None or shutil.which("taskset") is None:
        yield
        return
    spinners = [
        subprocess.Popen(["taskset", "-c", str(cpu), "chrt", "--idle", "0", sys.executable, "-c", "while True: pass"])
        for cpu in _cpus()
    ]
    try:
        time.sleep(0.5)
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


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
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk measurement (of each round)")
    parser.add_argument("--rounds", type=int, default=3, help="wrk rounds, each server in turn in each (A B A B)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (kept open, like the API server)")
    parser.add_argument("--rate", type=int, default=1000, help="requests/s for the fixed-rate latency check")
    parser.add_argument("--latency-duration", type=int, default=10, help="seconds per fixed-rate latency measurement")
    parser.add_argument(
        "--latency-connections", type=int, default=8, help="kept-open connections of the fixed-rate load"
    )
    parser.add_argument(
        "--idle-only", action="store_true", help="fixed-rate latency with idle CPUs only (not also kept awake)"
    )
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
        load = Load(script, args.duration, args.connections, max(1, args.rounds))
        latency = Latency(args.rate, args.latency_duration, args.latency_connections, awake=not args.idle_only)
        compare(files, stack, bodies, load, latency)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compare(files: CertificateFiles, stack: Stack, bodies: dict[str, Path], load: Load, latency: Latency) -> None:
    """Every server up at once (idle but for the one measured); wrk rounds A B A B; then fixed-rate latency."""
    names = ("floor", "parse", "bare", *(("before",) if stack.before else ()), "webhook")
    with contextlib.ExitStack() as servers_up:
        servers = {name: servers_up.enter_context(running(name, files, stack)) for name in names}
        rounds, cpu = measure_throughput(servers, bodies, load, stack.client_cpus())
        print_table(rounds, cpu, names, tuple(bodies))
        fixed, served = measure_latency(servers, files.ca, bodies, latency, stack.client_cpus())
        peaks = {name: peak_rss_mib(pid) for name, (_port, pid) in servers.items()}
    for case, counts in served.items():
        shares = " / ".join(f"{100 * counts[index] / max(counts[-1], 1):.2f}%" for index in (0, 1))
        print(
            f"webhook: {latency.rate} req/s open loop, {case}, CPUs kept awake: answered within 0.5 / 1 ms of the "
            f"request's first byte (its own latency histogram): {shares}"
        )
    summarise(rounds, cpu, fixed, peaks, tuple(bodies), stack, latency)


Servers = dict[str, tuple[int, int]]
"""Each running server's port and pid, by name."""
Rounds = list[dict[tuple[str, str], Result]]
"""Each round's wrk figures, by server and case."""


def measure_throughput(
    servers: Servers, bodies: dict[str, Path], load: Load, client: Sequence[str]
) -> tuple[Rounds, dict[tuple[str, str], list[float]]]:
    """wrk against every server and case, ``load.rounds`` times in the same order; the figures and CPU us/request."""
    for port, _pid in servers.values():
        for body in bodies.values():
            run_wrk(port, "/mutate", body, Load(load.script, 2, load.connections), client)  # warm-up
    rounds: Rounds = []
    cpu: dict[tuple[str, str], list[float]] = {}
    for number in range(1, load.rounds + 1):
        results: dict[tuple[str, str], Result] = {}
        for case, body in bodies.items():
            for name in round_order(tuple(servers), number):
                port, pid = servers[name]
                before = cpu_seconds(pid)
                result = results[name, case] = run_wrk(port, "/mutate", body, load, client)
                cpu.setdefault((name, case), []).append((cpu_seconds(pid) - before) / max(result.requests, 1) * 1e6)
        rounds.append(results)
        ratios = ", ".join(f"{case} {to_floor(results, 'webhook', case):.2f}" for case in bodies)
        print(f"round {number}/{load.rounds}: throughput ratio webhook/floor: {ratios}", flush=True)
    return rounds, cpu


def round_order(names: Sequence[str], number: int) -> list[str]:
    """The order servers are measured in round ``number`` (from 1): floor, webhook, before, then the other references;
    reversed in even rounds. The ratios' figures are taken next to each other, and alternately first and last."""
    first = [name for name in ("floor", "webhook", "before") if name in names]
    order = first + [name for name in names if name not in first]
    return order if number % 2 else order[::-1]


def to_floor(results: dict[tuple[str, str], Result], name: str, case: str) -> float:
    """One round's throughput ratio of server ``name`` to the floor, for ``case``."""
    return results[name, case].rps / results["floor", case].rps


def measure_latency(
    servers: Servers, ca: Path, bodies: dict[str, Path], latency: Latency, client: Sequence[str]
) -> tuple[dict[tuple[str, str, bool], Fixed], dict[str, list[int]]]:
    """Open-loop fixed-rate latency of every server but ``parse``, with CPUs kept awake, then idle; and the share
    the webhook answered within 0.5 and 1 ms by its own histogram (CPUs kept awake)."""
    ten = case_name(10)
    fixed: dict[tuple[str, str, bool], Fixed] = {}
    served: dict[str, list[int]] = {}
    for awake in (True, False) if latency.awake else (False,):
        with kept_awake(enabled=awake):
            wakeups = run_openload(0, ca, bodies[ten], latency, client, sleep_only=True)
            cpus = "CPUs kept awake" if awake else "idle CPUs"
            print(
                f"machine: a thread's wake-up lateness at {latency.rate}/s, {cpus}: p50 {wakeups.p50:.3f} ms, "
                f"p99 {wakeups.p99:.3f} ms, p99.9 {wakeups.p999:.3f} ms",
                flush=True,
            )
            for case in (ten, REALISTIC):
                for name, (port, _pid) in servers.items():
                    if name == "parse":
                        continue
                    buckets = mutate_buckets(port, ca) if name == "webhook" and awake else []
                    fixed[name, case, awake] = run_openload(port, ca, bodies[case], latency, client)
                    if buckets:
                        after = mutate_buckets(port, ca)
                        served[case] = [new - old for new, old in zip(after, buckets, strict=True)]
    return fixed, served


def print_table(
    rounds: Rounds,
    cpu: dict[tuple[str, str], list[float]],
    names: Sequence[str],
    cases: tuple[str, ...],
) -> None:
    """Per server and case: the median round's wrk figures, errors over all rounds, median CPU per request."""
    print(
        f"{'server':8} {'case':28} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'errors':>7} "
        f"{'CPU us/req':>10}   (medians of {len(rounds)} rounds)"
    )
    for case in cases:
        for name in names:
            results = sorted((results[name, case] for results in rounds), key=lambda result: result.rps)
            middle = results[len(results) // 2]
            errors = sum(result.errors for result in results)
            print(
                f"{name:8} {case:28} {statistics.median([result.rps for result in results]):>9.0f} {middle.p50:>8.2f} "
                f"{middle.p99:>8.2f} {middle.p999:>9.2f} {errors:>7} {statistics.median(cpu[name, case]):>10.1f}",
                flush=True,
            )


def mutate_buckets(port: int, ca: Path) -> list[int]:
    """The webhook's cumulative ``/mutate`` latency bucket counts (``le`` 0.0005, 0.001, ..., ``+Inf``), scraped."""
    text = https_get(port, ca, "/metrics").decode()
    pattern = r'^ecr_ptc_webhook_request_duration_seconds_bucket\{le="[^"]+",path="/mutate"\} (\S+)$'
    return [int(float(value)) for value in re.findall(pattern, text, re.MULTILINE)]


def summarise(  # noqa: PLR0913, PLR0917 - one run's figures
    rounds: Rounds,
    cpu: dict[tuple[str, str], list[float]],
    fixed: dict[tuple[str, str, bool], Fixed],
    peaks: dict[str, float],
    cases: tuple[str, ...],
    stack: Stack,
    latency: Latency,
) -> None:
    """The fixed-rate lines, CPU per admission, then the ratios (medians of the rounds'): the two 10-container last."""
    ten = case_name(10)

    def ratio(name: str, case: str) -> float:
        return statistics.median([to_floor(results, name, case) for results in rounds])

    for (name, case, awake), figures in fixed.items():
        cpus = "CPUs kept awake" if awake else "idle CPUs"
        print(
            f"{name}: {latency.rate} req/s open loop, {case}, {cpus}: p50 {figures.p50:.2f} ms, "
            f"p99 {figures.p99:.2f} ms, p99.9 {figures.p999:.2f} ms, errors {figures.errors}; "
            f"client late p99 {figures.late_p99:.2f} ms"
        )
    print("peak RSS: " + ", ".join(f"{name} {peak:.0f} MiB" for name, peak in peaks.items()))
    for case in cases:
        print(f"throughput ratio parse-only/floor ({case}): {ratio('parse', case):.2f}")
    for case in cases:
        ours, bare = statistics.median(cpu["webhook", case]), statistics.median(cpu["bare", case])
        print(
            f"CPU per admission ({case}): webhook {ours:.1f} us, bare protocol {bare:.1f} us (the stack's floor), "
            f"{ours - bare:.1f} us ours"
        )
    if stack.before:
        for case in cases:
            print(f"throughput ratio before/floor ({case}): {ratio('before', case):.2f}")
    for case in (*(case for case in cases if case not in {ten, REALISTIC}), ten, REALISTIC):
        print(f"throughput ratio webhook/floor ({case}): {ratio('webhook', case):.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
