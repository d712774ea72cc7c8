"""Repository patterns for ``exclude`` and ``include``: globs over normalised repositories, as in ``.gitignore``.

A pattern names repositories as the reference grammar normalises them, host first: ``docker.io/library/nginx``,
``quay.io/acme/app``. Images are matched by their normalised repository, so ``nginx``, ``docker.io/nginx`` and
``index.docker.io/library/nginx`` are all ``docker.io/library/nginx``; patterns are normalised the same way, so the
pattern ``nginx`` means ``docker.io/library/nginx`` too.

Syntax, component by component (components are separated by ``/``):

- ``*`` matches anything inside one component (never a ``/``); ``?`` one character; ``[a-z]`` one of a class
  (``[!a-z]`` or ``[^a-z]`` negated);
- a trailing ``/**`` matches everything below (``quay.io/acme/**``: every repository of the organisation, not
  ``quay.io/acme`` itself); a leading ``**/`` matches under any host or path (``**/tools``); ``a/**/b`` matches
  ``a/b``, ``a/x/b`` and deeper; ``**`` alone matches every repository;
- a first component with a glob character is a host pattern (``*.azurecr.io/**``); a first component without ``.``,
  ``:`` or ``localhost`` is a Docker Hub path, as in an image reference (``bitnami/*`` is ``docker.io/bitnami/*``).

A pattern never has a tag, a digest or a URL scheme, and no component is empty. Pure: strings in, matchers out.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from webhook.core.registries import DOCKER_HUB_DOMAIN, LOCALHOST, TIER_BY_HOST

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from webhook.core.reference import ImageReference
    from webhook.core.registries import Tier

_GLOB_CHARACTERS: Final = frozenset("*?[")
_LITERAL_COMPONENT: Final = re.compile(
    r"[a-z0-9._-]+|[A-Za-z0-9.-]+(?::[0-9]+)?|\[[a-fA-F0-9:]+\](?::[0-9]+)?", re.ASCII
)
"""What a component may hold besides glob syntax: path characters, or (first component) a host with a port."""


class PatternError(ValueError):
    """A pattern that cannot be compiled; the message says why (the config names the key and the pattern)."""


def repository_of(reference: ImageReference, tier_by_host: Mapping[str, Tier] = TIER_BY_HOST) -> str:
    """The normalised repository an image is matched by, e.g. ``docker.io/library/nginx``.

    The tier's canonical host (Docker Hub's aliases as ``docker.io``, an ECR upstream's FIPS and dual-stack hosts as
    its standard one) and the path, with ``library/`` for Docker Hub's one-component names. ``tier_by_host`` is the
    config's (user-defined tiers included).
    """
    tier = tier_by_host.get(reference.host)
    if tier is None:
        return f"{reference.host}/{reference.path}"
    return f"{tier.canonical_host}/{tier.repository_path(reference.path)}"


def normalise(pattern: str, tier_by_host: Mapping[str, Tier] = TIER_BY_HOST) -> str:
    """The pattern with its host made canonical; raise :class:`PatternError` for a pattern that is not one.

    Canonical: the host in lowercase, a tier's other hosts as its first (Docker Hub's aliases as ``docker.io``), a
    Docker Hub path given its host.
    """
    _check_form(pattern)
    first, slash, rest = pattern.partition("/")
    if _GLOB_CHARACTERS & set(first) or first == "**":
        return pattern
    if not slash or ("." not in first and ":" not in first and first != LOCALHOST):
        host, rest = DOCKER_HUB_DOMAIN, pattern  # a Docker Hub path, as the grammar reads a name without a host
    else:
        host = first.lower()
    tier = tier_by_host.get(host)
    if tier is not None:
        host = tier.canonical_host
        if not _GLOB_CHARACTERS & set(rest):  # a glob may stand for `library/...` itself
            rest = tier.repository_path(rest)
    return f"{host}/{rest}"


def _check_form(pattern: str) -> None:
    if not pattern or pattern.strip() != pattern or any(character.isspace() for character in pattern):
        raise PatternError("a pattern is a non-empty repository glob without spaces, e.g. quay.io/acme/**")
    if "://" in pattern:
        raise PatternError("a pattern has no URL scheme: write quay.io/acme/**, not https://quay.io/acme/**")
    if "@" in pattern:
        raise PatternError("a pattern names repositories, not digests: drop the @sha256:... part")
    components = pattern.split("/")
    if "" in components:
        raise PatternError("a pattern has no empty path component (no leading, trailing or doubled '/')")
    if any(":" in component for component in components[1:]) or (len(components) == 1 and ":" in pattern):
        raise PatternError("a pattern names repositories, not tags: drop the :tag part")
    for index, component in enumerate(components):
        _check_component(component, first=index == 0)


def _check_component(component: str, *, first: bool) -> None:
    depth = 0
    for character in component:
        if character == "[":
            if depth:
                raise PatternError(f"unbalanced brackets in {component!r}: a class cannot hold '['")
            depth = 1
        elif character == "]":
            if not depth:
                raise PatternError(f"unbalanced brackets in {component!r}: ']' without '['")
            depth = 0
    if depth:
        raise PatternError(f"unbalanced brackets in {component!r}: '[' without ']'")
    if re.search(r"\[[!^]?\]", component):
        raise PatternError(f"empty class in {component!r}: a class names at least one character, e.g. [a-z]")
    if component == "**" or _GLOB_CHARACTERS & set(component):
        return
    if not _LITERAL_COMPONENT.fullmatch(component) or (not first and component.lower() != component):
        raise PatternError(
            f"{component!r} is not a repository path component (lowercase letters, digits, '.', '_', '-')"
        )


def _translate(component: str) -> str:
    """One component's glob as a regular expression that never crosses a ``/``."""
    out: list[str] = []
    index = 0
    while index < len(component):
        character = component[index]
        if character == "*":
            out.append("[^/]*")
        elif character == "?":
            out.append("[^/]")
        elif character == "[":
            end = component.index("]", index + 1)
            body = component[index + 1 : end]
            negated = body[:1] in {"!", "^"}
            if negated:
                body = body[1:]
            escaped = body.replace("\\", "\\\\").replace("^", "\\^")
            out.append(f"[^/{escaped}]" if negated else f"[{escaped}]")
            index = end
        else:
            out.append(re.escape(character))
        index += 1
    return "".join(out)


def _expression(pattern: str) -> str:
    """The pattern (already normalised) as a regular expression over a whole normalised repository."""
    components = pattern.split("/")
    out: list[str] = []
    separator = False
    for index, component in enumerate(components):
        last = index == len(components) - 1
        if component == "**":
            if last:
                out.append(("/" if separator else "") + ".+")
            else:
                out.append(("/" if separator else "") + "(?:[^/]+/)*")
                separator = False
            continue
        out.append(("/" if separator else "") + _translate(component))
        separator = True
    return "".join(out)


class RepositoryPatterns:
    """A list of patterns compiled once into one expression; ``matches(repository)`` tells whether any matches."""

    def __init__(self, patterns: Sequence[str], tier_by_host: Mapping[str, Tier] = TIER_BY_HOST) -> None:
        """Compile ``patterns`` (raises :class:`PatternError` naming the first bad one).

        Hosts are made canonical with ``tier_by_host``, the config's (see :func:`normalise`).
        """
        self.patterns = tuple(patterns)
        expressions = []
        for pattern in self.patterns:
            try:
                expression = _expression(normalise(pattern, tier_by_host))
                re.compile(expression, re.ASCII)
            except PatternError as error:
                raise PatternError(f"pattern {pattern!r}: {error}") from None
            except re.error as error:  # e.g. a reversed range, [z-a]
                raise PatternError(f"pattern {pattern!r}: {error}") from None
            expressions.append(expression)
        self._compiled: re.Pattern[str] | None = None
        if expressions:
            self._compiled = re.compile("|".join(f"(?:{item})" for item in expressions), re.ASCII)

    def __bool__(self) -> bool:
        """Whether there is any pattern."""
        return self._compiled is not None

    def matches(self, repository: str) -> bool:
        """Whether ``repository`` (see :func:`repository_of`) matches any pattern."""
        return self._compiled is not None and self._compiled.fullmatch(repository) is not None
