"""Hypothesis strategies: image references built from the distribution/reference grammar, and pods.

Each generated reference comes with the :class:`~webhook.reference.ImageReference` that ``ParseNormalizedNamed``
gives for it, so a test can compare the parser's answer with the grammar's rather than with the parser itself.
"""

from __future__ import annotations

import copy
import string
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from webhook.core.patch import OPT_OUT_ANNOTATION, OPT_OUT_VALUE, ORIGINAL_IMAGES_ANNOTATION
from webhook.core.reference import ImageReference
from webhook.core.registries import (
    DOCKER_HUB_DOMAIN,
    DOCKER_HUB_LEGACY_DOMAIN,
    DOCKER_HUB_OFFICIAL_NAMESPACE,
    REFERENCE_PATH_MAX,
    TIERS,
)

LOWER_ALNUM = string.ascii_lowercase + string.digits
DOMAIN_ALNUM = string.ascii_letters + string.digits
TAG_FIRST = string.ascii_letters + string.digits + "_"
TAG_REST = TAG_FIRST + ".-"
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

TIER_HOSTS: tuple[str, ...] = tuple(host for tier in TIERS for host in tier.hosts)
"""Every host a tier rewrites, as the registry table spells it (lowercase)."""

GRAMMAR_ALPHABET = LOWER_ALNUM[:6] + "AZ" + "09" + "._-/:@[]%" + "\n é٣"
"""Characters that matter to the grammar, plus the traps: newline, space, a non-ASCII letter and digit."""


@dataclass(frozen=True, slots=True)
class Written:
    """A reference as a user writes it, and what ``ParseNormalizedNamed`` reads from it."""

    text: str
    expected: ImageReference


def _alphanumeric(max_size: int = 8) -> st.SearchStrategy[str]:
    return st.text(LOWER_ALNUM, min_size=1, max_size=max_size)


@st.composite
def path_components(draw: st.DrawFn) -> str:
    """``[a-z0-9]+`` joined by ``.``, ``_``, ``__`` or one or more ``-``."""
    parts = [draw(_alphanumeric())]
    for _ in range(draw(st.integers(0, 2))):
        separator = draw(st.sampled_from([".", "_", "__", "-", "--", "---"]))
        parts.append(separator + draw(_alphanumeric()))
    return "".join(parts)


@st.composite
def paths(draw: st.DrawFn, min_components: int = 1, max_components: int = 4) -> str:
    """Path components separated by single slashes."""
    components = draw(st.lists(path_components(), min_size=min_components, max_size=max_components))
    return "/".join(components)


@st.composite
def domain_components(draw: st.DrawFn) -> str:
    """A DNS-like label: letters (either case) and digits, inner hyphens."""
    first = draw(st.sampled_from(DOMAIN_ALNUM))
    middle = draw(st.text(DOMAIN_ALNUM + "-", max_size=6))
    if not middle:
        return first
    return first + middle + draw(st.sampled_from(DOMAIN_ALNUM))


def ports() -> st.SearchStrategy[str]:
    return st.integers(0, 99999).map(lambda port: f":{port}")


@st.composite
def domains(draw: st.DrawFn) -> str:
    """Domains that ``splitDockerDomain`` reads as a domain: a dot, a port, ``localhost``, uppercase or IPv6."""
    kind = draw(st.sampled_from(["dotted", "port", "localhost", "uppercase", "ipv6"]))
    if kind == "dotted":
        labels = draw(st.lists(domain_components(), min_size=2, max_size=4))
        host = ".".join(labels)
    elif kind == "port":
        return draw(domain_components()) + draw(ports())
    elif kind == "localhost":
        host = "localhost"
    elif kind == "uppercase":
        label = draw(domain_components())
        host = label if label.lower() != label else label.upper() + "X"
    else:
        # Without a ':' inside, `[0]` is not read as a domain (nor is it valid as a path).
        groups = draw(st.lists(st.text("0123456789abcdefABCDEF", max_size=4), min_size=2, max_size=8))
        host = "[" + ":".join(groups) + "]"
    return host + draw(st.one_of(st.just(""), ports()))


def tags() -> st.SearchStrategy[str]:
    """``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``, ASCII only."""
    return st.builds(lambda first, rest: first + rest, st.sampled_from(TAG_FIRST), st.text(TAG_REST, max_size=127))


@st.composite
def digests(draw: st.DrawFn) -> str:
    """A registered algorithm and its exact lowercase hex length."""
    algorithm = draw(st.sampled_from(sorted(DIGEST_HEX_LENGTHS)))
    length = DIGEST_HEX_LENGTHS[algorithm]
    return f"{algorithm}:" + draw(st.text("0123456789abcdef", min_size=length, max_size=length))


def normalised(domain: str | None, path: str, tag: str | None, digest: str | None) -> ImageReference:
    """What ``ParseNormalizedNamed`` makes of ``[domain/]path[:tag][@digest]``."""
    if domain is None or domain == DOCKER_HUB_LEGACY_DOMAIN:
        domain = DOCKER_HUB_DOMAIN
    if domain == DOCKER_HUB_DOMAIN and "/" not in path:
        path = f"{DOCKER_HUB_OFFICIAL_NAMESPACE}/{path}"
    return ImageReference(domain=domain, path=path, tag=tag, digest=digest)


def spell(domain: str | None, path: str, tag: str | None, digest: str | None) -> str:
    """``[domain/]path[:tag][@digest]``."""
    return (
        (f"{domain}/" if domain is not None else "")
        + path
        + (f":{tag}" if tag is not None else "")
        + (f"@{digest}" if digest is not None else "")
    )


@st.composite
def written_references(
    draw: st.DrawFn,
    domain: st.SearchStrategy[str | None] | None = None,
    path: st.SearchStrategy[str] | None = None,
) -> Written:
    """A valid reference from the grammar, with or without a domain, tag and digest, and its parse."""
    chosen_domain = draw(domain if domain is not None else st.one_of(st.none(), domains()))
    chosen_path = draw(path if path is not None else paths())
    tag = draw(st.one_of(st.none(), tags()))
    digest = draw(st.one_of(st.none(), digests()))
    if chosen_domain is None and "/" in chosen_path:
        # A domain-less name must not start with something `splitDockerDomain` reads as a host.
        first = chosen_path.split("/", 1)[0]
        if "." in first or first == "localhost":
            chosen_domain = DOCKER_HUB_DOMAIN
    expected = normalised(chosen_domain, chosen_path, tag, digest)
    if len(expected.path) > REFERENCE_PATH_MAX or _is_identifier(spell(chosen_domain, chosen_path, tag, digest)):
        # Too long, or a bare image ID: fall back to a name that is certainly valid.
        chosen_domain, chosen_path = None, "x"
        expected = normalised(chosen_domain, chosen_path, tag, digest)
    return Written(spell(chosen_domain, chosen_path, tag, digest), expected)


def _is_identifier(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


@st.composite
def tier_hosts(draw: st.DrawFn) -> str:
    """A tier's host, in any letter case (hosts match case-insensitively)."""
    host = draw(st.sampled_from(TIER_HOSTS))
    flips = draw(st.lists(st.booleans(), min_size=len(host), max_size=len(host)))
    return "".join(c.upper() if flip else c for c, flip in zip(host, flips, strict=True))


def tier_references() -> st.SearchStrategy[Written]:
    """Valid references on a tier's host, including Docker Hub names written without a domain."""
    return written_references(domain=st.one_of(st.none(), tier_hosts()))


@st.composite
def mutated_references(draw: st.DrawFn) -> str:
    """A valid reference with a few characters inserted, deleted or replaced: near misses of the grammar."""
    text = draw(written_references()).text
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        character = draw(st.sampled_from(GRAMMAR_ALPHABET))
        if action == "insert":
            text = text[:position] + character + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + 1 :]
        else:
            text = text[:position] + character + text[position + 1 :]
    return text


def grammar_biased_text() -> st.SearchStrategy[str]:
    """Strings that look like references: grammar characters, valid references and their near misses."""
    return st.one_of(
        st.text(GRAMMAR_ALPHABET, max_size=40),
        written_references().map(lambda written: written.text),
        mutated_references(),
    )


# --- pods ---------------------------------------------------------------------------------------------------------

POD_IMAGES = st.sampled_from(
    [
        "quay.io/prometheus/node-exporter:v1.8.2",
        "nginx",
        "nginx:1.27@sha256:" + "a" * 64,
        "registry.k8s.io/pause:3.10",
        "ghcr.io/fluxcd/source-controller:v1.4.1",
        "registry.gitlab.com/group/project/image:tag",
        "public.ecr.aws/eks/aws-load-balancer-controller:v2.8.0",
        "602401143452.dkr.ecr.eu-west-1.amazonaws.com/eks/coredns:v1.11.1",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/quay/already/cached:v1",
        "gcr.io/distroless/static",
        "example.com:5000/team/app",
        "",
        "Not A Reference",
    ]
)
NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    """Pods with every image slot kind, odd images, and each metadata shape the patch builder tells apart."""
    names = iter(draw(st.lists(NAMES, min_size=12, max_size=12, unique=True)))
    spec: dict[str, Any] = {}
    for field in ("containers", "initContainers", "ephemeralContainers"):
        if draw(st.booleans()):
            spec[field] = [
                {"name": next(names), "image": image} for image in draw(st.lists(POD_IMAGES, min_size=0, max_size=3))
            ]
    if draw(st.booleans()):
        spec["volumes"] = [{"name": "v", "image": {"reference": draw(POD_IMAGES)}}, {"name": "e", "emptyDir": {}}]
    secrets = draw(st.sampled_from([None, [], [{"name": "registry-robot"}]]))
    if secrets is not None:
        spec["imagePullSecrets"] = secrets  # `pullSecrets: keep` reads them; `[]` counts as none
    pod: dict[str, Any] = {"spec": spec}
    metadata = draw(
        st.sampled_from(
            [
                None,
                {},
                {"annotations": None},
                {"annotations": {"a/b~c": "1"}},
                {"annotations": {ORIGINAL_IMAGES_ANNOTATION: '{"gone": "quay.io/x/y"}'}},
                {"annotations": {ORIGINAL_IMAGES_ANNOTATION: "[1]"}},
                {"annotations": {OPT_OUT_ANNOTATION: OPT_OUT_VALUE}},
            ]
        )
    )
    if metadata is not None:
        pod["metadata"] = copy.deepcopy(metadata)
    return pod
