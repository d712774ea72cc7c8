"""What one decision costs when it is not cached: ``Rules.decide`` for distinct images, by policy setting.

Decisions are cached per image string and answers per pod template, so a policy costs the admission path only on an
image's first appearance. This prints that first-appearance cost, in microseconds per decision, for the policies at
``rewrite`` with no patterns (what the webhook did before ``pullSecrets``/``movingTags``/``exclude``/``include``),
the defaults, and the defaults with 10 and 100 ``exclude`` patterns; rounds alternate A B A B on one process so the
ratios are comparable on a noisy machine. Nothing here is a test: it only prints figures.

    .venv/bin/python hack/bench_decide.py [--images 20000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webhook.core.config import parse_config  # noqa: E402
from webhook.core.rules import Rules  # noqa: E402

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
HOSTS = ("quay.io", "registry.k8s.io", "docker.io", "ghcr.io", "registry.gitlab.com", "public.ecr.aws")


def images(count: int) -> list[str]:
    """Distinct, realistic references: every tier host, org/name paths, tags and some untagged."""
    out = []
    for index in range(count):
        host = HOSTS[index % len(HOSTS)]
        tag = "" if index % 7 == 0 else f":v{index % 50}.{index % 13}"
        out.append(f"{host}/org{index % 97}/app{index}{tag}")
    return out


def settings() -> dict[str, dict[str, Any]]:
    """The configurations compared, by label."""
    base: dict[str, Any] = {"registry": REGISTRY, "tiers": ["quay", "k8s", "docker-hub", "ghcr", "gitlab"]}
    return {
        "policies off (as before)": {**base, "pullSecrets": "rewrite", "movingTags": "rewrite"},
        "defaults": base,
        "defaults + 10 exclude patterns": {**base, "exclude": [f"quay.io/team{i}/**" for i in range(10)]},
        "defaults + 100 exclude patterns": {**base, "exclude": [f"ghcr.io/*/tool{i}" for i in range(100)]},
    }


def per_decision_us(rules: Rules, batch: list[str], *, pull_secrets: bool) -> float:
    """Microseconds per uncached decision over ``batch``."""
    decide = rules._decide  # noqa: SLF001 - the uncached path is what is measured
    started = time.perf_counter()
    for image in batch:
        decide(image, pull_secrets)
    return (time.perf_counter() - started) / len(batch) * 1e6


def main() -> None:
    """Print one row per configuration: median microseconds per uncached decision, and the ratio to the first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    batch = images(args.images)
    compiled = {label: Rules(parse_config(config)) for label, config in settings().items()}
    results: dict[str, list[float]] = {label: [] for label in compiled}
    for _ in range(args.rounds):  # A B A B: every configuration once per round
        for label, rules in compiled.items():
            results[label].append(per_decision_us(rules, batch, pull_secrets=len(results[label]) % 2 == 1))
    baseline = statistics.median(next(iter(results.values())))
    print(f"{'configuration':34} {'us/decision':>12} {'ratio':>7}")
    for label, values in results.items():
        median = statistics.median(values)
        print(f"{label:34} {median:12.2f} {median / baseline:7.2f}")


if __name__ == "__main__":
    main()
