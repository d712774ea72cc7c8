"""Python memory held across many admissions: what a leak would look like, without the allocator's noise.

``hack/bench --soak`` watches the process's RSS, which also moves with the allocator (arenas, fragmentation). This
runs the app in-process on uvloop, with a distinct uid per review as the API server sends, and compares the Python
objects held (tracemalloc) after a warm-up and after many more reviews. Prints the growth and its largest sources.

Reviews go through the admission port's own connection layer (``webhook.serve.connection``, with a transport that
only counts what is written): the path the API server's requests take, cache hits included. ``--through asgi``
sends them through the FastAPI app instead, as the webhook was served before issue 13.

    .venv/bin/python hack/memory.py                  # 200,000 reviews after 50,000 of warm-up
    .venv/bin/python hack/memory.py --reviews 20000  # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tracemalloc
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import uvloop

if TYPE_CHECKING:
    from collections.abc import MutableMapping

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from bench import CONFIG, pod_images  # noqa: E402
from reviews import make_pod, make_review  # noqa: E402

from webhook import logs  # noqa: E402
from webhook.config import load_config  # noqa: E402
from webhook.core.rules import Rules  # noqa: E402
from webhook.serve.app import WebhookApp, create_app  # noqa: E402
from webhook.serve.connection import Connection, Limits, Registry  # noqa: E402


def review_bodies(count: int) -> list[bytes]:
    """``count`` reviews of one 10-container pod template, each with its own uid."""
    review = make_review(make_pod(*pod_images(10)))
    bodies = []
    for _ in range(count):
        review["request"]["uid"] = str(uuid.uuid4())
        bodies.append(orjson.dumps(review))
    return bodies


async def admit(app: WebhookApp, bodies: list[bytes], count: int) -> None:
    """``count`` admissions through the ASGI app, yielding to the loop now and then so timers (log flushes) run."""
    for index in range(count):
        body = bodies[index % len(bodies)]
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        scope = {"type": "http", "path": "/mutate", "method": "POST", "headers": headers, "query_string": b""}

        async def receive(body: bytes = body) -> MutableMapping[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(_message: MutableMapping[str, Any]) -> None:
            return None

        await app(scope, receive, send)
        if index % 5000 == 0:
            await asyncio.sleep(0.3)


class CountingTransport(asyncio.Transport):
    """What a connection writes to, counted and dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.answers = 0
        self.statuses: set[bytes] = set()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.answers += 1
        self.statuses.add(bytes(data[9:12]))

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        return None


async def admit_through_connection(connection: Connection, bodies: list[bytes], count: int) -> None:
    """``count`` admissions fed to one kept-open connection, as the API server sends them; yields now and then."""
    requests = [
        b"POST /mutate?timeout=10s HTTP/1.1\r\nHost: webhook\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        for body in bodies
    ]
    for index in range(count):
        connection.data_received(requests[index % len(requests)])
        if index % 5000 == 0:
            await asyncio.sleep(0.3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warm-up", type=int, default=50_000)
    parser.add_argument("--reviews", type=int, default=200_000)
    parser.add_argument("--through", choices=["connection", "asgi"], default="connection")
    args = parser.parse_args()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # the decision lines, as in hack/bench
    logs.configure("info")
    app = create_app(Rules(load_config(CONFIG)))
    bodies = review_bodies(1000)
    loop = uvloop.new_event_loop()
    transport = CountingTransport()

    def run(count: int) -> None:
        if args.through == "asgi":
            loop.run_until_complete(admit(app, bodies, count))
        else:
            loop.run_until_complete(admit_through_connection(connection, bodies, count))

    async def connected() -> Connection:
        made = Connection(app, Registry(16), Limits())
        made.connection_made(transport)
        return made

    connection = loop.run_until_complete(connected())
    run(args.warm_up)
    gc.collect()
    tracemalloc.start(10)
    before = tracemalloc.take_snapshot()
    run(args.reviews)
    app.decision_log.flush()
    gc.collect()
    after = tracemalloc.take_snapshot()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    statuses = ", ".join(sorted(status.decode() for status in transport.statuses))
    answers = f"; {transport.answers:,} answers written, status {statuses}" if args.through == "connection" else ""
    print(f"Python memory held after {args.reviews:,} more reviews ({args.through}): {growth:+,} bytes{answers}")
    for stat in after.compare_to(before, "lineno")[:5]:
        print(f"  {stat}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
