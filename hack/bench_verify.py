"""Admission latency added by `verify: true`: on a cache hit (goal: < 1 ms at p99), on a miss, and the worst case.

Runs the real app (create_app) in-process through its ASGI entry point, with the real registry client against
Debian's docker-registry on loopback (TLS, basic auth), and against a server that never answers within the budget.
Prints figures; asserts nothing. Needs `bash hack/install-registry-tools.sh`.

    .venv/bin/python hack/bench_verify.py [--requests 5000] [--budget 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from cache.cache_support import PASSWORD, USERNAME, Certificates, FaultyRegistry, Registry, build_image
from reviews import make_pod, make_review

from webhook.cache.registry_client import BasicAuth, RegistryClient
from webhook.cache.verify import TargetVerifier, VerifySettings
from webhook.core.config import parse_config
from webhook.core.rules import Rules
from webhook.serve.app import create_app

if TYPE_CHECKING:
    from collections.abc import MutableMapping

    from webhook.serve.app import WebhookApp


async def admit(app: WebhookApp, body: bytes) -> float:
    """One /mutate through the app's ASGI entry point; seconds taken."""
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/mutate",
        "query_string": b"timeout=3s",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    started = time.perf_counter()
    await app(scope, receive, send)
    elapsed = time.perf_counter() - started
    if sent[0]["status"] != 200:
        raise SystemExit(f"unexpected status {sent[0]['status']}")
    return elapsed


def pod_body(*images: str) -> bytes:
    return orjson.dumps(make_review(make_pod(*images)))


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99) - 1], ordered[-1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.3f} ms"


def verifier_for(certificates: Certificates, budget: float) -> TargetVerifier:
    client = RegistryClient(BasicAuth(USERNAME, PASSWORD), ca_file=certificates.ca, timeout=10.0)
    return TargetVerifier(client, VerifySettings(budget=budget))


async def bench_hit(registry: Registry, certificates: Certificates, requests: int, budget: float) -> None:
    rules = Rules(parse_config({"registry": registry.host, "tiers": ["quay", "k8s"]}))
    verifier = verifier_for(certificates, budget)
    off, on = create_app(rules), create_app(rules, verifier=verifier)
    images = ("quay.io/org/app:1.0", "quay.io/org/app:1.1", "registry.k8s.io/pause:3.10")
    body = pod_body(*images)
    await admit(on, body)  # fills the cache: every later lookup is a hit
    if await verifier.vetoes([rules.decide(image) for image in images]):
        raise SystemExit("the images did not resolve in the registry")
    times_off, times_on = [], []
    for _ in range(requests):  # interleaved, so drift in the machine's speed hits both alike
        times_off.append(await admit(off, body))
        times_on.append(await admit(on, body))
    await verifier.aclose()
    p50_off, p99_off, _ = percentiles(times_off)
    p50_on, p99_on, max_on = percentiles(times_on)
    print(f"cache hit, pod with 3 rewritten images, {requests} admissions each:")
    print(f"  verify off       p50 {ms(p50_off)}  p99 {ms(p99_off)}")
    print(f"  verify on (hit)  p50 {ms(p50_on)}  p99 {ms(p99_on)}  max {ms(max_on)}")
    print(f"  added by verify  p50 {ms(p50_on - p50_off)}  p99 {ms(p99_on - p99_off)}  (goal: < 1 ms at p99)")


async def bench_miss(registry: Registry, certificates: Certificates, digest: str, requests: int, budget: float) -> None:
    rules = Rules(parse_config({"registry": registry.host, "tiers": ["quay"]}))
    verifier = verifier_for(certificates, budget)
    app = create_app(rules, verifier=verifier)
    await admit(app, pod_body("quay.io/org/app:1.0"))  # connection opened, as in a running webhook
    resolved = await admit(app, pod_body(f"quay.io/org/app@{digest}"))
    missing = [await admit(app, pod_body(f"quay.io/org/app:missing-{n}")) for n in range(requests)]
    await verifier.aclose()
    p50, p99, worst = percentiles(missing)
    print(f"cache miss, real registry lookup (HEAD over TLS, keep-alive), {requests} admissions:")
    print(f"  404 lookups      p50 {ms(p50)}  p99 {ms(p99)}  max {ms(worst)}")
    print(f"  200 lookup       {ms(resolved)} (one digest)")


async def bench_worst(certificates: Certificates, requests: int, budget: float) -> None:
    with FaultyRegistry(certificates, delay=budget * 10) as slow:
        rules = Rules(parse_config({"registry": slow.host, "tiers": ["quay"]}))
        verifier = verifier_for(certificates, budget)
        app = create_app(rules, verifier=verifier)
        times = [await admit(app, pod_body(f"quay.io/org/app:slow-{n}")) for n in range(requests)]
        await verifier.aclose()
    print(f"worst case, a registry slower than the budget ({budget:.3f} s), {requests} admissions:")
    print(f"  admission        mean {ms(statistics.fmean(times))}  max {ms(max(times))}  (budget {ms(budget)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000, help="admissions per arm on a cache hit")
    parser.add_argument("--misses", type=int, default=200, help="admissions with a registry lookup")
    parser.add_argument("--slow", type=int, default=10, help="admissions against a registry slower than the budget")
    parser.add_argument("--budget", type=float, default=0.5, help="verifyBudgetSeconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        certificates = Certificates(directory / "certs")
        with Registry(directory / "registry", certificates) as registry:
            image = build_image("bench")
            for tag in ("1.0", "1.1"):
                registry.push(image, "quay/org/app", tag, directory)
            registry.push(build_image("pause"), "k8s/pause", "3.10", directory)
            print(f"python {sys.version.split()[0]}, docker-registry on {registry.host}, budget {args.budget} s")
            asyncio.run(bench_hit(registry, certificates, args.requests, args.budget))
            asyncio.run(bench_miss(registry, certificates, image.digest, args.misses, args.budget))
        asyncio.run(bench_worst(certificates, args.slow, args.budget))


if __name__ == "__main__":
    main()
