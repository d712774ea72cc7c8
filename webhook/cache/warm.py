"""Cache warm-up: pull the manifests of a list of images through the cache before pods need them.

For each image, the one decision function says where it would be rewritten (images that are not rewritten are
skipped, with the reason); the rewritten reference's manifest is then fetched from the cache with the same lookup
as ``verify`` (by tag, then by digest for a pinned reference), which makes a pull-through cache fetch it from
upstream. Fetches run in parallel, at most ``concurrency`` at a time; results keep the input order.

An HTTP answer does not tell whether the cache already held a manifest or just fetched it. For an ECR cache, a
:class:`CacheIndex` (ECR's ``DescribeImages``, which imports nothing) is asked first: an image it holds is
``already-cached`` and not fetched; one it does not hold and that the fetch then resolves is ``warmed``. Without an
index (a registry that is not ECR), or when the index cannot tell, a success stays ``resolved``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final, Protocol

from webhook.cache.verify import Outcome, resolve
from webhook.core.reference import parse

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from webhook.cache.registry_client import ImagePresence
    from webhook.cache.verify import ManifestFetch
    from webhook.core.reference import ImageReference
    from webhook.core.rules import Rules

DEFAULT_CONCURRENCY: Final = 8
"""Fetches at once: each may make the cache call its upstream, whose rate limits (Docker Hub's) we respect."""


class WarmStatus(StrEnum):
    """What happened to one image."""

    WARMED = "warmed"
    """The cache did not hold the image; the fetch made it pull the manifest from upstream, and it holds it now."""
    CACHED = "already-cached"
    """The cache held the image already (ECR's ``DescribeImages``); nothing was fetched."""
    RESOLVED = "resolved"
    """The cache served the manifest (it holds it now); whether it held it before cannot be told (not ECR, or
    ``DescribeImages`` failed: the detail says why)."""
    MISSING = "missing"
    """The cache answered 404: the image (tag or digest) does not exist upstream, or the rule does not front it."""
    FAILED = "failed"
    """No usable answer: the registry's error (401, 403, 429, 5xx) or no answer at all."""
    SKIPPED = "skipped"
    """Not rewritten by the rules: nothing to warm."""


SERVED: Final = frozenset({WarmStatus.WARMED, WarmStatus.CACHED, WarmStatus.RESOLVED})
"""The statuses of an image the cache serves now."""
_STATUS_BY_OUTCOME: Final = {
    Outcome.MISSING: WarmStatus.MISSING,
    Outcome.FAILED: WarmStatus.FAILED,
}


class CacheIndex(Protocol):
    """Whether the cache holds an image, asked without pulling it (``webhook.registry_client.EcrImageIndex``)."""

    async def presence(self, reference: ImageReference) -> ImagePresence:
        """Held, not held, or cannot tell (with why); never raises."""
        ...


@dataclass(frozen=True, slots=True)
class WarmResult:
    """One image's line in the summary."""

    image: str
    target: str
    """The cache reference fetched (the image itself when skipped)."""
    status: WarmStatus
    detail: str
    """The manifest digest when served, the reason code when skipped, the registry's error otherwise."""

    @property
    def ok(self) -> bool:
        """Whether the image needs no attention (served or skipped)."""
        return self.status in SERVED or self.status is WarmStatus.SKIPPED


@dataclass(frozen=True, slots=True)
class Cache:
    """How ``warm`` reaches the cache: a manifest fetch (GET), and for ECR an index that tells what it holds."""

    fetch: ManifestFetch
    index: CacheIndex | None = None


async def warm(
    images: Iterable[str],
    rules: Rules,
    cache: Cache,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[WarmResult], None] | None = None,
) -> list[WarmResult]:
    """Warm each image (duplicates once); ``progress`` is called as each one finishes."""
    unique = list(dict.fromkeys(images))
    limit = asyncio.Semaphore(max(concurrency, 1))

    async def one(image: str) -> WarmResult:
        async with limit:
            result = await warm_image(image, rules, cache)
        if progress is not None:
            progress(result)
        return result

    return list(await asyncio.gather(*(one(image) for image in unique)))


async def warm_image(image: str, rules: Rules, cache: Cache) -> WarmResult:
    """Decide; ask the index whether the cache holds the target; if not (or it cannot tell), fetch its manifest."""
    decision = rules.decide(image)
    if not decision.rewrites:
        return WarmResult(image, image, WarmStatus.SKIPPED, decision.reason.value)
    target = decision.result
    reference = parse(target)
    before = await cache.index.presence(reference) if cache.index is not None else None
    if before is not None and before.cached:
        return WarmResult(image, target, WarmStatus.CACHED, before.digest)
    lookup = await resolve(cache.fetch, reference)
    if lookup.outcome is not Outcome.RESOLVED:
        return WarmResult(image, target, _STATUS_BY_OUTCOME[lookup.outcome], lookup.detail)
    if before is None:
        return WarmResult(image, target, WarmStatus.RESOLVED, lookup.detail)
    if before.cached is None:
        return WarmResult(image, target, WarmStatus.RESOLVED, f"{lookup.detail} (not known if cached: {before.error})")
    return WarmResult(image, target, WarmStatus.WARMED, lookup.detail)


def read_image_list(lines: Iterable[str]) -> list[str]:
    """Images from a file's lines: one per line, blank lines and ``#`` comments ignored."""
    images = []
    for line in lines:
        text = line.partition("#")[0].strip()
        if text:
            images.append(text)
    return images


def summary(results: Sequence[WarmResult]) -> str:
    """A table (image, status, target or detail) and a count per status."""
    rows = [("IMAGE", "STATUS", "DETAIL")]
    for result in results:
        detail = f"{result.target} {result.detail}" if result.status in SERVED else result.detail
        rows.append((result.image, result.status.value, detail.strip()))
    widths = [max(len(row[column]) for row in rows) for column in range(2)]
    lines = [f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}".rstrip() for row in rows]
    counts = {status: sum(1 for result in results if result.status is status) for status in WarmStatus}
    lines.append(", ".join(f"{count} {status.value}" for status, count in counts.items()))
    return "\n".join(lines)
