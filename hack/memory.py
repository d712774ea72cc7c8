"""Python memory held across many admissions: what a leak would look like, without the allocator's noise.

``hack/bench --soak`` watches the process's RSS, which also moves with the allocator (arenas, fragmentation). This
runs the app in-process on uvloop, with a distinct uid per review as the API server sends, and compares the Python
objects held (tracemalloc) after a warm-up and after many more reviews. Prints the growth and its largest sources.

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warm-up", type=int, default=50_000)
    parser.add_argument("--reviews", type=int, default=200_000)
    args = parser.parse_args()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # the decision lines, as in hack/bench
    logs.configure("info")
    app = create_app(Rules(load_config(CONFIG)))
    bodies = review_bodies(1000)
    loop = uvloop.new_event_loop()
    loop.run_until_complete(admit(app, bodies, args.warm_up))
    gc.collect()
    tracemalloc.start(10)
    before = tracemalloc.take_snapshot()
    loop.run_until_complete(admit(app, bodies, args.reviews))
    gc.collect()
    after = tracemalloc.take_snapshot()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    print(f"Python memory held after {args.reviews:,} more reviews: {growth:+,} bytes")
    for stat in after.compare_to(before, "lineno")[:5]:
        print(f"  {stat}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
