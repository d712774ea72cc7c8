"""Open-loop load at a fixed mean rate with Poisson arrivals over kept-open TLS connections; prints latency figures.

The API server sends an admission review when a pod is created, whenever that is: arrivals are independent of each
other and of how fast the webhook answered the last one. This client models that, where ``hey`` does not:

- each of ``--connections`` worker processes owns one kept-open connection and draws its own Poisson arrivals at
  ``rate / connections`` (their sum is a Poisson process at ``rate``), so requests neither come in aligned bursts
  (hey's workers share a tick) nor wait politely for the previous answer. Processes, not threads: threads of one
  interpreter hand the GIL to each other, and on idle virtual CPUs each hand-over waited for a wake-up (a client
  late by 6 ms at p99 where one thread alone was late by 2.7 ms);
- latency runs from the moment a request was *due*, not from when it was sent, so a slow answer that delays the
  next request on its connection is counted in that request too (no coordinated omission);
- the client's own lateness (sent after it was due: timer wake-ups, the scheduler) is printed apart, so a figure the
  client inflated is visible as such. Workers ask for 1 us timer slack (Linux's default is 50 us).

    .venv/bin/python hack/openload.py --port 8443 --ca ca.crt --body review.json --rate 1000 --duration 10
    .venv/bin/python hack/openload.py --sleep-only    # the machine's own wake-up lateness, no server needed

Prints one line: ``OPENLOAD requests=N errors=N p50=MS p90=MS p99=MS p999=MS max=MS late_p99=MS`` (with
``--sleep-only``, latency is the wake-ups' lateness). Run by ``hack/bench``, on the client CPUs with ``--pin``;
nothing here is a test.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import multiprocessing
import random
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

PR_SET_TIMERSLACK = 29


def _fine_timer_slack() -> None:
    """Ask Linux to wake this thread within 1 us of its sleep's end (the default slack is 50 us)."""
    name = ctypes.util.find_library("c")
    if name is not None:
        with contextlib.suppress(OSError, AttributeError):  # not Linux: coarser wake-ups, measured as lateness
            ctypes.CDLL(name, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)


@dataclass
class Tally:
    """What one connection's thread measured, in seconds."""

    latencies: list[float] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)
    errors: int = 0


class Connection:
    """One kept-open TLS connection that sends a request and reads its answer (Content-Length framing only)."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        self.port = port
        self.context = context
        self.tls: ssl.SSLSocket | None = None
        self.buffer = b""

    def exchange(self, request: bytes) -> int:
        """Send ``request``, read the whole answer; its status. Reconnects first if the last exchange failed."""
        if self.tls is None:
            raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.tls = self.context.wrap_socket(raw, server_hostname="localhost")
            self.buffer = b""
        try:
            self.tls.sendall(request)
            while (end := self.buffer.find(b"\r\n\r\n")) < 0:
                self._fill()
            head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4 :]
            fields = {}
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
            if fields.get("transfer-encoding", "").lower() == "chunked":  # uvicorn's answer without a length
                while size := self._chunk_size():
                    self._skip(size + 2)  # the chunk, then its CRLF
                self._skip(2)  # the CRLF after the last, empty chunk (no trailers)
            else:
                self._skip(int(fields.get("content-length", "0")))
            return int(head.split(" ", 2)[1])
        except (OSError, ValueError, IndexError):
            self.close()
            raise

    def _chunk_size(self) -> int:
        while (end := self.buffer.find(b"\r\n")) < 0:
            self._fill()
        size, self.buffer = int(self.buffer[:end].split(b";")[0], 16), self.buffer[end + 2 :]
        return size

    def _skip(self, size: int) -> None:
        """Drop the next ``size`` bytes, once they arrived."""
        while len(self.buffer) < size:
            self._fill()
        self.buffer = self.buffer[size:]

    def _fill(self) -> None:
        assert self.tls is not None  # noqa: S101 - set by exchange()
        chunk = self.tls.recv(65536)
        if not chunk:
            raise ConnectionResetError("closed by the server")
        self.buffer += chunk

    def close(self) -> None:
        if self.tls is not None:
            self.tls.close()
            self.tls = None


@dataclass(frozen=True)
class Plan:
    """One worker's connection and arrivals (``perf_counter`` times: one clock for every process)."""

    port: int
    ca: Path | None
    request: bytes
    """Empty: wake at each arrival, send nothing."""
    rate: float
    start: float
    stop: float
    measure_from: float
    seed: int


def drive(plan: Plan) -> Tally:
    """In a worker process: send ``plan.request`` on one kept-open connection at Poisson arrivals of ``plan.rate``."""
    context = ssl.create_default_context(cafile=str(plan.ca)) if plan.request else ssl.create_default_context()
    connection = Connection(plan.port, context)
    request, rate, stop, measure_from = plan.request, plan.rate, plan.stop, plan.measure_from
    if request:  # the handshake before the clock starts: the API server's pool is warm
        connection.exchange(request)
    _fine_timer_slack()
    tally = Tally()
    arrivals = random.Random(plan.seed)  # noqa: S311 - a load pattern, not a secret
    due = plan.start + arrivals.expovariate(rate)
    while due < stop:
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        sent = time.perf_counter()
        try:
            status = connection.exchange(request) if request else 200
        except (OSError, ValueError, IndexError):
            status = 0
        done = time.perf_counter()
        if due >= measure_from:
            tally.latencies.append(done - due)
            tally.lateness.append(max(0.0, sent - due))
            tally.errors += status != 200
        due += arrivals.expovariate(rate)
    connection.close()
    return tally


def quantile(ordered: list[float], share: float) -> float:
    """The ``share`` quantile of sorted values (nearest rank), or NaN for none."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="the server's port on 127.0.0.1")
    parser.add_argument("--ca", type=Path, help="the CA that signed the server's certificate")
    parser.add_argument("--body", type=Path, help="the AdmissionReview to POST")
    parser.add_argument("--path", default="/mutate?timeout=10s")
    parser.add_argument("--rate", type=float, default=1000, help="mean requests/s, all connections together")
    parser.add_argument("--duration", type=float, default=10, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of load before measuring")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--sleep-only",
        action="store_true",
        help="send nothing: the same threads only wake at each arrival (what the machine's wake-ups alone cost)",
    )
    args = parser.parse_args()
    if not args.sleep_only and (not args.port or args.ca is None or args.body is None):
        parser.error("--port, --ca and --body are needed unless --sleep-only")
    body = b"" if args.sleep_only else args.body.read_bytes()
    request = (
        b""
        if args.sleep_only
        else (
            f"POST {args.path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    start = time.perf_counter() + 1 + 0.02 * args.connections  # every process forked and its handshake done
    measure_from = start + args.warmup
    stop = measure_from + args.duration
    plans = [
        Plan(args.port, args.ca, request, args.rate / args.connections, start, stop, measure_from, args.seed * 1000 + n)
        for n in range(args.connections)
    ]
    with multiprocessing.get_context("fork").Pool(args.connections) as workers:
        tallies = workers.map(drive, plans, chunksize=1)
    latencies = sorted(value for tally in tallies for value in tally.latencies)
    lateness = sorted(value for tally in tallies for value in tally.lateness)
    errors = sum(tally.errors for tally in tallies)
    figures = " ".join(
        f"{name}={quantile(latencies, share) * 1000:.3f}"
        for name, share in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999))
    )
    print(
        f"OPENLOAD requests={len(latencies)} errors={errors} {figures} max={latencies[-1] * 1000:.3f} "
        f"late_p99={quantile(lateness, 0.99) * 1000:.3f}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
