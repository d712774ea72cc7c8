"""Repository patterns for `exclude` and `include`: gitignore-style globs over normalised repositories."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook.core.patterns import PatternError, RepositoryPatterns, normalise, repository_of
from webhook.core.reference import parse

COMPONENT = st.from_regex(r"[a-z0-9]+(?:[._-][a-z0-9]+)?", fullmatch=True)
"""One repository path component."""


def matches(pattern: str, image: str) -> bool:
    return RepositoryPatterns([pattern]).matches(repository_of(parse(image)))


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("nginx", "docker.io/library/nginx"),
        ("nginx:1.27", "docker.io/library/nginx"),
        ("docker.io/nginx", "docker.io/library/nginx"),
        ("index.docker.io/library/nginx", "docker.io/library/nginx"),
        ("registry-1.docker.io/nginx", "docker.io/library/nginx"),
        ("Registry-1.Docker.IO/library/nginx@sha256:" + "a" * 64, "docker.io/library/nginx"),
        ("bitnami/redis", "docker.io/bitnami/redis"),
        ("QUAY.IO/acme/app:v1", "quay.io/acme/app"),
        ("localhost:5000/app", "localhost:5000/app"),
    ],
)
def test_images_are_matched_by_their_normalised_repository(image: str, repository: str) -> None:
    assert repository_of(parse(image)) == repository


@pytest.mark.parametrize(
    ("pattern", "normalised"),
    [
        ("nginx", "docker.io/library/nginx"),
        ("docker.io/nginx", "docker.io/library/nginx"),
        ("index.docker.io/library/nginx", "docker.io/library/nginx"),
        ("registry-1.docker.io/nginx", "docker.io/library/nginx"),
        ("bitnami/*", "docker.io/bitnami/*"),
        ("docker.io/*", "docker.io/*"),
        ("Quay.IO/acme/**", "quay.io/acme/**"),
        ("**/tools", "**/tools"),
        ("*.example.com/**", "*.example.com/**"),
        ("localhost:5000/app", "localhost:5000/app"),
    ],
)
def test_patterns_are_normalised_as_references_are(pattern: str, normalised: str) -> None:
    assert normalise(pattern) == normalised


@pytest.mark.parametrize(
    ("pattern", "image", "expected"),
    [
        ("quay.io/acme/app", "quay.io/acme/app:v1", True),
        ("quay.io/acme/app", "quay.io/acme/app2", False),
        ("quay.io/acme/**", "quay.io/acme/app", True),
        ("quay.io/acme/**", "quay.io/acme/team/app", True),
        ("quay.io/acme/**", "quay.io/acme", False),
        ("quay.io/acme/**", "quay.io/acmecorp/app", False),
        ("ghcr.io/*/tools", "ghcr.io/acme/tools", True),
        ("ghcr.io/*/tools", "ghcr.io/acme/team/tools", False),
        ("ghcr.io/acme/**/cli", "ghcr.io/acme/cli", True),
        ("ghcr.io/acme/**/cli", "ghcr.io/acme/x/cli", True),
        ("ghcr.io/acme/**/cli", "ghcr.io/acme/x/y/cli", True),
        ("ghcr.io/acme/**/cli", "ghcr.io/acme/cli-tools", False),
        ("**/tools", "tools", True),  # docker.io/library/tools
        ("**/tools", "ghcr.io/a/b/tools", True),
        ("**", "quay.io/anything/at/all", True),
        ("nginx", "nginx:1.27", True),
        ("nginx", "bitnami/nginx", False),
        ("bitnami/*", "bitnami/redis", True),
        ("registry.gitlab.com/acme/app-[0-9]", "registry.gitlab.com/acme/app-1", True),
        ("registry.gitlab.com/acme/app-[0-9]", "registry.gitlab.com/acme/app-x", False),
        ("registry.gitlab.com/acme/app-[!0-9]", "registry.gitlab.com/acme/app-x", True),
        ("quay.io/acme/ap?", "quay.io/acme/app", True),
        ("quay.io/acme/ap?", "quay.io/acme/ap", False),
        ("*.example.com/**", "registry.example.com/team/app", True),
        ("*.example.com/**", "example.com/team/app", False),
        ("quay.io/a.b/c", "quay.io/axb/c", False),  # '.' is literal, not a regex wildcard
    ],
)
def test_glob_semantics(pattern: str, image: str, *, expected: bool) -> None:
    assert matches(pattern, image) is expected


@pytest.mark.parametrize(
    "spelling",
    [
        "nginx",
        "nginx:latest",
        "docker.io/nginx",
        "docker.io/library/nginx",
        "index.docker.io/nginx",
        "index.docker.io/library/nginx",
        "registry-1.docker.io/nginx",
        "registry-1.docker.io/library/nginx",
        "DOCKER.IO/library/nginx:1.27",
    ],
)
@pytest.mark.parametrize("pattern", ["nginx", "docker.io/nginx", "index.docker.io/library/nginx", "docker.io/*/nginx"])
def test_every_spelling_of_a_docker_hub_image_matches_every_spelling_of_its_pattern(
    spelling: str, pattern: str
) -> None:
    assert matches(pattern, spelling)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "non-empty"),
        (" quay.io/x", "without spaces"),
        ("quay.io/x y", "without spaces"),
        ("https://quay.io/acme", "no URL scheme"),
        ("quay.io/acme/app:v1", "not tags"),
        ("nginx:latest", "not tags"),
        ("quay.io/acme/app@sha256:" + "a" * 64, "not digests"),
        ("quay.io//app", "empty path component"),
        ("/quay.io/app", "empty path component"),
        ("quay.io/app/", "empty path component"),
        ("quay.io/[abc", "'[' without ']'"),
        ("quay.io/abc]", "']' without '['"),
        ("quay.io/a[b[c]]", "cannot hold '['"),
        ("quay.io/[]", "empty class"),
        ("quay.io/[z-a]", "pattern 'quay.io/[z-a]'"),
        ("quay.io/Acme/app", "not a repository path component"),
        ("quay.io/ac$me", "not a repository path component"),
    ],
)
def test_invalid_patterns_are_refused_naming_the_pattern(pattern: str, message: str) -> None:
    with pytest.raises(PatternError, match=re.escape(message)) as raised:
        RepositoryPatterns(["quay.io/fine/**", pattern])
    assert str(raised.value).startswith(f"pattern {pattern!r}: ")


def test_no_pattern_matches_nothing() -> None:
    patterns = RepositoryPatterns([])
    assert not patterns
    assert not patterns.matches("docker.io/library/nginx")


@given(st.lists(COMPONENT, min_size=1, max_size=4), st.lists(COMPONENT, min_size=1, max_size=3))
def test_a_star_never_crosses_a_slash(prefix: list[str], tail: list[str]) -> None:
    repository = "/".join(["quay.io", *prefix, *tail])
    one_level = RepositoryPatterns(["/".join(["quay.io", *prefix, "*"])])
    assert one_level.matches(repository) is (len(tail) == 1)
    below = RepositoryPatterns(["/".join(["quay.io", *prefix, "**"])])
    assert below.matches(repository)


@given(st.lists(COMPONENT, min_size=1, max_size=5))
def test_a_literal_pattern_matches_exactly_its_repository(components: list[str]) -> None:
    repository = "/".join(["ghcr.io", *components])
    assert RepositoryPatterns([repository]).matches(repository)
    assert not RepositoryPatterns([repository]).matches(repository + "x")
    assert not RepositoryPatterns([repository]).matches(repository + "/x")


@given(st.lists(COMPONENT, min_size=2, max_size=5), st.lists(COMPONENT, max_size=3))
def test_double_star_in_the_middle_matches_any_depth(head_and_last: list[str], middle: list[str]) -> None:
    *head, last = head_and_last
    pattern = "/".join(["ghcr.io", *head, "**", last])
    assert RepositoryPatterns([pattern]).matches("/".join(["ghcr.io", *head, *middle, last]))


@given(st.text(max_size=40))
def test_any_string_is_a_pattern_or_a_pattern_error(text: str) -> None:
    try:
        patterns = RepositoryPatterns([text])
    except PatternError:
        return
    patterns.matches("docker.io/library/nginx")
