r"""Image references, parsed exactly as distribution/reference's ``ParseNormalizedNamed`` does.

Pure: strings in, :class:`ImageReference` out. Every pattern is matched with ``fullmatch`` and ``re.ASCII``:
Python's ``$`` also matches before a trailing newline and its ``\\w``/``\\d`` match Unicode, both of which would
accept references the container runtime rejects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from webhook.core.registries import (
    DOCKER_HUB_DOMAIN,
    DOCKER_HUB_LEGACY_DOMAIN,
    DOCKER_HUB_OFFICIAL_NAMESPACE,
    LOCALHOST,
    REFERENCE_PATH_MAX,
)
from webhook.exceptions import InvalidReferenceError

_PATH_COMPONENT: Final = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT: Final = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME: Final = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6_ADDRESS: Final = r"\[[a-fA-F0-9:]+\]"
_DOMAIN: Final = rf"(?:{_DOMAIN_NAME}|{_IPV6_ADDRESS})(?::[0-9]+)?"
_TAG: Final = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST: Final = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

DOMAIN_RE: Final = re.compile(_DOMAIN, re.ASCII)
"""A registry host with an optional port, as the grammar allows it."""
_REMAINDER_RE: Final = re.compile(
    rf"(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?",
    re.ASCII,
)
_IDENTIFIER_RE: Final = re.compile(r"[a-f0-9]{64}", re.ASCII)

_DIGEST_HEX_LENGTH: Final[dict[str, int]] = {"sha256": 64, "sha384": 96, "sha512": 128}
"""Digest algorithms go-digest registers, with their hex lengths; the hex must be lowercase."""
_LOWER_HEX_RE: Final = re.compile(r"[a-f0-9]+", re.ASCII)


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed, normalised image reference: ``domain/path[:tag][@digest]``."""

    domain: str
    """Registry host as written (case kept), `docker.io` for Docker Hub names."""
    path: str
    """Repository path, with `library/` added for one-component Docker Hub names."""
    tag: str | None = None
    digest: str | None = None

    @property
    def host(self) -> str:
        """The domain in lowercase, for matching against registry tables."""
        return self.domain.lower()

    @property
    def hostname(self) -> str:
        """The host without its port."""
        host = self.host
        if host.startswith("["):
            return host[: host.index("]") + 1]
        return host.partition(":")[0]

    @property
    def suffix(self) -> str:
        """``:tag``, ``@digest`` or both, exactly as written."""
        return (f":{self.tag}" if self.tag is not None else "") + (f"@{self.digest}" if self.digest is not None else "")

    def __str__(self) -> str:
        """The fully qualified form, e.g. ``docker.io/library/nginx:1.27``."""
        return f"{self.domain}/{self.path}{self.suffix}"


def split_docker_domain(name: str) -> tuple[str, str]:
    """Split a reference into domain and remainder as distribution's ``splitDockerDomain``."""
    first, slash, rest = name.partition("/")
    if not slash or (not any(c in first for c in ".:") and first != LOCALHOST and first.lower() == first):
        domain, remainder = DOCKER_HUB_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == DOCKER_HUB_LEGACY_DOMAIN:
        domain = DOCKER_HUB_DOMAIN
    if domain == DOCKER_HUB_DOMAIN and "/" not in remainder:
        remainder = f"{DOCKER_HUB_OFFICIAL_NAMESPACE}/{remainder}"
    return domain, remainder


def parse(reference: str) -> ImageReference:
    """Parse and normalise ``reference``; raise :class:`InvalidReferenceError` for anything else."""
    if not reference:
        raise InvalidReferenceError(reference, "empty")
    if _IDENTIFIER_RE.fullmatch(reference):
        raise InvalidReferenceError(reference, "a 64-character hex string is an image ID, not a name")
    domain, remainder = split_docker_domain(reference)
    if remainder.partition(":")[0].lower() != remainder.partition(":")[0]:
        raise InvalidReferenceError(reference, "repository name must be lowercase")
    if not DOMAIN_RE.fullmatch(domain):
        # distribution would fall back to reading the whole string as a path with no domain; a name the
        # runtime resolves so differently from how it reads is one we leave alone.
        raise InvalidReferenceError(reference, f"invalid registry host {domain!r}")
    match = _REMAINDER_RE.fullmatch(remainder)
    if match is None:
        raise InvalidReferenceError(reference, "invalid reference format")
    path, tag, digest = match.group("path", "tag", "digest")
    if len(path) > REFERENCE_PATH_MAX:
        raise InvalidReferenceError(reference, f"repository name longer than {REFERENCE_PATH_MAX} characters")
    if digest is not None:
        _check_digest(reference, digest)
    return ImageReference(domain=domain, path=path, tag=tag, digest=digest)


def _check_digest(reference: str, digest: str) -> None:
    """Validate a digest as go-digest does: a registered algorithm and its exact lowercase hex length."""
    algorithm, _, encoded = digest.partition(":")
    expected = _DIGEST_HEX_LENGTH.get(algorithm)
    if expected is None:
        raise InvalidReferenceError(reference, f"unsupported digest algorithm {algorithm!r}")
    if len(encoded) != expected or not _LOWER_HEX_RE.fullmatch(encoded):
        raise InvalidReferenceError(reference, f"{algorithm} digest must be {expected} lowercase hex characters")
