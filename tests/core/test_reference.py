"""The reference parser against distribution/reference's ``ParseNormalizedNamed``.

The tables port the upstream test vectors (github.com/distribution/reference: reference_test.go, normalize_test.go,
regexp_test.go). Upstream's ``reference_test.go`` and ``regexp_test.go`` exercise ``Parse`` and the bare regexps,
which keep a domain-less name domain-less; the expectations here are what ``ParseNormalizedNamed`` (the function
container runtimes use for Pod images) makes of the same inputs: ``docker.io`` and ``library/`` are added.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import Written, grammar_biased_text, written_references

from webhook.core.reference import DOMAIN_RE, ImageReference, parse, split_docker_domain
from webhook.exceptions import InvalidReferenceError

F64 = "f" * 64
SHA256 = f"sha256:{F64}"
SHA512 = "sha512:" + "f" * 128
BE17 = "sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912"
DBCC = "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"
HUB = "docker.io"


def ref(domain: str, path: str, tag: str | None = None, digest: str | None = None) -> ImageReference:
    return ImageReference(domain=domain, path=path, tag=tag, digest=digest)


def short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:45]}...({len(text)})"


VALID: list[tuple[str, ImageReference]] = [
    # reference_test.go TestReferenceParse (Parse vectors, normalised)
    ("test_com", ref(HUB, "library/test_com")),
    ("test.com:tag", ref(HUB, "library/test.com", "tag")),
    ("test.com:5000", ref(HUB, "library/test.com", "5000")),
    ("test.com/repo:tag", ref("test.com", "repo", "tag")),
    ("test:5000/repo", ref("test:5000", "repo")),
    ("test:5000/repo:tag", ref("test:5000", "repo", "tag")),
    (f"test:5000/repo@{SHA256}", ref("test:5000", "repo", None, SHA256)),
    (f"test:5000/repo:tag@{SHA256}", ref("test:5000", "repo", "tag", SHA256)),
    # upstream's FIXME case: an uppercase first component is a domain (normalize_test.go agrees: "Foo/bar")
    ("Uppercase/lowercase:tag", ref("Uppercase", "lowercase", "tag")),
    ("lowercase:Uppercase", ref(HUB, "library/lowercase", "Uppercase")),
    ("a/" * 127 + "a:tag-puts-this-over-max", ref(HUB, "a/" * 127 + "a", "tag-puts-this-over-max")),
    ("sub-dom1.foo.com/bar/baz/quux", ref("sub-dom1.foo.com", "bar/baz/quux")),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", ref("sub-dom1.foo.com", "bar/baz/quux", "some-long-tag")),
    (
        "b.gcr.io/test.example.com/my-app:test.example.com",
        ref("b.gcr.io", "test.example.com/my-app", "test.example.com"),
    ),
    ("xn--n3h.com/myimage:xn--n3h.com", ref("xn--n3h.com", "myimage", "xn--n3h.com")),
    (f"xn--7o8h.com/myimage:xn--7o8h.com@{SHA512}", ref("xn--7o8h.com", "myimage", "xn--7o8h.com", SHA512)),
    ("foo_bar.com:8080", ref(HUB, "library/foo_bar.com", "8080")),
    ("foo/foo_bar.com:8080", ref(HUB, "foo/foo_bar.com", "8080")),
    ("192.168.1.1", ref(HUB, "library/192.168.1.1")),
    ("192.168.1.1:tag", ref(HUB, "library/192.168.1.1", "tag")),
    ("192.168.1.1:5000", ref(HUB, "library/192.168.1.1", "5000")),
    ("192.168.1.1/repo", ref("192.168.1.1", "repo")),
    ("192.168.1.1:5000/repo", ref("192.168.1.1:5000", "repo")),
    ("192.168.1.1:5000/repo:5050", ref("192.168.1.1:5000", "repo", "5050")),
    ("[2001:db8::1]/repo", ref("[2001:db8::1]", "repo")),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", ref("[2001:db8:1:2:3:4:5:6]", "repo", "tag")),
    ("[2001:db8::1]:5000/repo", ref("[2001:db8::1]:5000", "repo")),
    ("[2001:db8::1]:5000/repo:tag", ref("[2001:db8::1]:5000", "repo", "tag")),
    (f"[2001:db8::1]:5000/repo@{SHA256}", ref("[2001:db8::1]:5000", "repo", None, SHA256)),
    (f"[2001:db8::1]:5000/repo:tag@{SHA256}", ref("[2001:db8::1]:5000", "repo", "tag", SHA256)),
    ("[2001:db8::]:5000/repo", ref("[2001:db8::]:5000", "repo")),
    ("[::1]:5000/repo", ref("[::1]:5000", "repo")),
    # reference_test.go TestDomainAndPath, TestSerialization
    ("test.com/foo", ref("test.com", "foo")),
    ("test_com/foo", ref(HUB, "test_com/foo")),
    ("test:8080/foo", ref("test:8080", "foo")),
    ("test.com:8080/foo", ref("test.com:8080", "foo")),
    ("test-com:8080/foo", ref("test-com:8080", "foo")),
    ("xn--n3h.com:18080/foo", ref("xn--n3h.com:18080", "foo")),
    ("example.com:8000/named", ref("example.com:8000", "named")),
    ("example.com:8000/named:tagged", ref("example.com:8000", "named", "tagged")),
    (
        "other.com/named@sha256:1234567890098765432112345667890098765432112345667890098765432112",
        ref("other.com", "named", None, "sha256:1234567890098765432112345667890098765432112345667890098765432112"),
    ),
    # normalize_test.go TestValidateReferenceName (valid)
    ("docker/docker", ref(HUB, "docker/docker")),
    ("library/debian", ref(HUB, "library/debian")),
    ("debian", ref(HUB, "library/debian")),
    ("docker.io/docker/docker", ref(HUB, "docker/docker")),
    ("docker.io/library/debian", ref(HUB, "library/debian")),
    ("docker.io/debian", ref(HUB, "library/debian")),
    ("index.docker.io/docker/docker", ref(HUB, "docker/docker")),
    ("index.docker.io/library/debian", ref(HUB, "library/debian")),
    ("index.docker.io/debian", ref(HUB, "library/debian")),
    ("127.0.0.1:5000/docker/docker", ref("127.0.0.1:5000", "docker/docker")),
    ("127.0.0.1:5000/library/debian", ref("127.0.0.1:5000", "library/debian")),
    ("127.0.0.1:5000/debian", ref("127.0.0.1:5000", "debian")),
    ("192.168.0.1", ref(HUB, "library/192.168.0.1")),
    ("192.168.0.1:80", ref(HUB, "library/192.168.0.1", "80")),
    ("192.168.0.1:8/debian", ref("192.168.0.1:8", "debian")),
    ("192.168.0.2:25000/debian", ref("192.168.0.2:25000", "debian")),
    (
        "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        ref(HUB, "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev"),
    ),
    ("[fc00::1]:5000/docker", ref("[fc00::1]:5000", "docker")),
    ("[fc00::1]:5000/docker/docker", ref("[fc00::1]:5000", "docker/docker")),
    ("[fc00:1:2:3:4:5:6:7]:5000/library/debian", ref("[fc00:1:2:3:4:5:6:7]:5000", "library/debian")),
    (
        "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
        ref(HUB, "library/" + "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"),
    ),
    ("Docker/docker", ref("Docker", "docker")),
    ("DOCKER/docker", ref("DOCKER", "docker")),
    # normalize_test.go TestValidateRemoteName (valid)
    ("docker-rules/docker", ref(HUB, "docker-rules/docker")),
    ("docker---rules/docker", ref(HUB, "docker---rules/docker")),
    ("doc/docker", ref(HUB, "doc/docker")),
    ("d/docker", ref(HUB, "d/docker")),
    ("jess/t", ref(HUB, "jess/t")),
    ("dock__er/docker", ref(HUB, "dock__er/docker")),
    # normalize_test.go TestParseRepositoryInfo (familiar, full and ambiguous names)
    ("fooo/bar", ref(HUB, "fooo/bar")),
    ("docker.io/fooo/bar", ref(HUB, "fooo/bar")),
    ("index.docker.io/fooo/bar", ref(HUB, "fooo/bar")),
    ("ubuntu", ref(HUB, "library/ubuntu")),
    ("docker.io/library/ubuntu", ref(HUB, "library/ubuntu")),
    ("library/ubuntu", ref(HUB, "library/ubuntu")),
    ("nonlibrary/ubuntu", ref(HUB, "nonlibrary/ubuntu")),
    ("other/library", ref(HUB, "other/library")),
    ("127.0.0.1:8000/private/moonbase", ref("127.0.0.1:8000", "private/moonbase")),
    ("127.0.0.1:8000/privatebase", ref("127.0.0.1:8000", "privatebase")),
    ("example.com/private/moonbase", ref("example.com", "private/moonbase")),
    ("example.com/privatebase", ref("example.com", "privatebase")),
    ("example.com:8000/private/moonbase", ref("example.com:8000", "private/moonbase")),
    ("example.com:8000/privatebasee", ref("example.com:8000", "privatebasee")),
    ("ubuntu-12.04-base", ref(HUB, "library/ubuntu-12.04-base")),
    ("index.docker.io/library/ubuntu-12.04-base", ref(HUB, "library/ubuntu-12.04-base")),
    ("docker.io/foo", ref(HUB, "library/foo")),
    ("library/foo/bar", ref(HUB, "library/foo/bar")),
    ("store/foo/bar", ref(HUB, "store/foo/bar")),
    ("Foo/bar", ref("Foo", "bar")),
    ("FOO/bar", ref("FOO", "bar")),
    # normalize_test.go TestParseReferenceWithTagAndDigest: tag and digest together
    (
        "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa",
        ref(
            HUB, "library/busybox", "latest", "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
        ),
    ),
    # normalize_test.go TestParseAnyReference (the names; bare IDs are in INVALID)
    ("redis", ref(HUB, "library/redis")),
    ("redis:latest", ref(HUB, "library/redis", "latest")),
    ("docker.io/library/redis:latest", ref(HUB, "library/redis", "latest")),
    (f"redis@sha256:{DBCC}", ref(HUB, "library/redis", None, f"sha256:{DBCC}")),
    (f"docker.io/library/redis@sha256:{DBCC}", ref(HUB, "library/redis", None, f"sha256:{DBCC}")),
    ("dmcgowan/myapp", ref(HUB, "dmcgowan/myapp")),
    ("dmcgowan/myapp:latest", ref(HUB, "dmcgowan/myapp", "latest")),
    ("docker.io/mcgowan/myapp:latest", ref(HUB, "mcgowan/myapp", "latest")),
    (f"dmcgowan/myapp@sha256:{DBCC}", ref(HUB, "dmcgowan/myapp", None, f"sha256:{DBCC}")),
    # ParseAnyReference reads "sha256:<hex>" as a digest; ParseNormalizedNamed reads it as name:tag.
    (f"sha256:{DBCC}", ref(HUB, "library/sha256", DBCC)),
    (DBCC[:-1], ref(HUB, f"library/{DBCC[:-1]}")),
    ("dbcc1", ref(HUB, "library/dbcc1")),
    # normalize_test.go TestNormalizedSplitHostname
    ("docker/migrator", ref(HUB, "docker/migrator")),
    ("foo", ref(HUB, "library/foo")),
    ("xn--n3h.com/foo", ref("xn--n3h.com", "foo")),
    ("docker.io/library/foo/bar", ref(HUB, "library/foo/bar")),
    # regexp_test.go TestFullNameRegexp (names that match)
    ("short", ref(HUB, "library/short")),
    ("simple/name", ref(HUB, "simple/name")),
    ("docker/stevvooe/app", ref(HUB, "docker/stevvooe/app")),
    ("aa/aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb", ref(HUB, "aa/aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb")),
    ("aa/aa/bb/bb/bb", ref(HUB, "aa/aa/bb/bb/bb")),
    ("a/a/a/a", ref(HUB, "a/a/a/a")),
    ("a", ref(HUB, "library/a")),
    ("a/aa", ref(HUB, "a/aa")),
    ("a/aa/a", ref(HUB, "a/aa/a")),
    ("foo.com", ref(HUB, "library/foo.com")),
    ("foo.com:8080/bar", ref("foo.com:8080", "bar")),
    ("foo.com/bar", ref("foo.com", "bar")),
    ("foo.com/bar/baz", ref("foo.com", "bar/baz")),
    ("localhost:8080/bar", ref("localhost:8080", "bar")),
    ("blog.foo.com/bar/baz", ref("blog.foo.com", "bar/baz")),
    ("aa-a/a", ref(HUB, "aa-a/a")),
    ("foo_bar", ref(HUB, "library/foo_bar")),
    ("foo_bar.com", ref(HUB, "library/foo_bar.com")),
    ("foo.com/foo_bar", ref("foo.com", "foo_bar")),
    ("example.com/xn--7o8h.com/myimage", ref("example.com", "xn--7o8h.com/myimage")),
    ("example.com/some_separator__underscore/myimage", ref("example.com", "some_separator__underscore/myimage")),
    ("do__cker/docker", ref(HUB, "do__cker/docker")),
    (
        "registry.io/foo/project--id.module--name.ver---sion--name",
        ref("registry.io", "foo/project--id.module--name.ver---sion--name"),
    ),
    ("Asdf.com/foo/bar", ref("Asdf.com", "foo/bar")),
    # regexp_test.go TestReferenceRegexp (references that match)
    ("registry.com:8080/myapp:tag", ref("registry.com:8080", "myapp", "tag")),
    (f"registry.com:8080/myapp@{BE17}", ref("registry.com:8080", "myapp", None, BE17)),
    (f"registry.com:8080/myapp:tag2@{BE17}", ref("registry.com:8080", "myapp", "tag2", BE17)),
    # no slash: `localhost` is a name here and 8080 its tag
    (f"localhost:8080@{BE17}", ref(HUB, "library/localhost", "8080", BE17)),
    (f"localhost:8080/name@{BE17}", ref("localhost:8080", "name", None, BE17)),
    (f"localhost@{BE17}", ref(HUB, "library/localhost", None, BE17)),
    # regexp_test.go TestIdentifierRegexp (strings that are not a bare image ID are names)
    (
        "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf",
        ref(HUB, "library/da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf"),
    ),
    (
        "sha256:da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821",
        ref(HUB, "library/sha256", "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821"),
    ),
    (
        "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf98218482",
        ref(HUB, "library/da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf98218482"),
    ),
]

INVALID: list[str] = [
    # reference_test.go TestReferenceParse, TestWithNameFailure
    "",
    ":justtag",
    f"@{SHA256}",
    "repo@sha256:ffffffffffffffffffffffffffffffffff",
    f"validname@invaliddigest:{F64}",
    "Uppercase:tag",
    "test:5000/Uppercase/lowercase:tag",
    "a/" * 128 + "a:tag",
    "aa/asdf$$^/aa",
    "[2001:db8::1]",
    "[2001:db8::1]:5000",
    "[2001:db8::1]:tag",
    "[fe80::1%eth0]:5000/repo",
    "[fe80::1%@invalidzone]:5000/repo",
    # normalize_test.go TestValidateReferenceName (invalid)
    "https://github.com/docker/docker",
    "docker/Docker",
    "-docker",
    "-docker/docker",
    "-docker.io/docker/docker",
    "docker///docker",
    "docker.io/docker/Docker",
    "docker.io/docker///docker",
    "[fc00::1]",
    "[fc00::1]:5000",
    "fc00::1:5000/debian",
    "[fe80::1%eth0]:5000/debian",
    "[2001:db8:3:4::192.0.2.33]:5000/debian",
    "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
    # normalize_test.go TestValidateRemoteName (invalid)
    "docker-/docker",
    "-docker-/docker",
    "____/____",
    "_docker/_docker",
    "dock..er/docker",
    "dock_.er/docker",
    "dock-.er/docker",
    "docker/",
    (
        "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_"
        "its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_"
        "not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker"
    ),
    # normalize_test.go TestInvalidReferenceComponents, TestParseAnyReference (a bare ID is no name)
    "-foo",
    DBCC,
    # regexp_test.go TestFullNameRegexp (names that do not match)
    "a/a/a/a/",
    "a//a/a",
    "foo.com/",
    "foo.com:http/bar",
    "a^a",
    "asdf$$^/aa",
    "a-/a/a/a",
    "foo.com/a-/a/a",
    "-foo/bar",
    "foo/bar-",
    "foo-/bar",
    "foo/-bar",
    "_foo/bar",
    "foo_bar.com:8080/app",
    "docker_/docker_",
    "example.com/__underscore/myimage",
    "example.com/..dots/myimage",
    "example.com/.dots/myimage",
    "example.com/nodouble..dots/myimage",
    "docker./docker",
    ".docker/docker",
    "do..cker/docker",
    "do__cker:8080/docker",
    "Foo/FarB",
    # the name regexp matches this one, but its 257-character path fails Parse's length check
    "a/" * 128 + "a",
    # regexp_test.go TestReferenceRegexp (references that do not match)
    "registry.com:8080/myapp@sha256:badbadbadbad",
    "registry.com:8080/myapp:invalid~tag",
    "bad_hostname.com:8080/myapp:tag",
    f"localhost:http/name@{BE17}",
    "registry.com:8080/myapp@bad",
    "registry.com:8080/myapp@2bad",
    # regexp_test.go TestIdentifierRegexp: a bare ID; and uppercase hex, which is an uppercase name
    "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821",
    "7EC43B381E5AEFE6E04EFB0B3F0693FF2A4A50652D64AEC573905F2DB5889A1C",
]

DOMAINS: list[tuple[str, bool]] = [
    # regexp_test.go TestDomainRegexp (the grammar's host[:port]; port ranges are not the grammar's concern)
    ("test.com", True),
    ("test.com:10304", True),
    ("test.com:http", False),
    ("localhost", True),
    ("localhost:8080", True),
    ("a", True),
    ("a.b", True),
    ("ab.cd.com", True),
    ("a-b.com", True),
    ("-ab.com", False),
    ("ab-.com", False),
    ("ab.c-om", True),
    ("ab.-com", False),
    ("ab.com-", False),
    ("0101.com", True),
    ("001a.com", True),
    ("b.gbc.io:443", True),
    ("b.gbc.io", True),
    ("xn--n3h.com", True),
    ("Asdf.com", True),
    ("192.168.1.1:75050", True),
    ("192.168.1.1:750050", True),
    ("[fd00:1:2::3]:75050", True),
    ("[fd00:1:2::3]75050", False),
    ("[fd00:1:2::3]::75050", False),
    ("[fd00:1:2::3%eth0]:75050", False),
    ("[fd00123123123]:75050", True),
    ("[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:75050", True),
    ("[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:750505", True),
    ("fd00:1:2::3:75050", False),
    # the Python traps
    ("test.com\n", False),
    ("test.com:٣", False),
    ("tést.com", False),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[short(text) for text, _ in VALID])
def test_upstream_valid_vectors(text: str, expected: ImageReference) -> None:
    parsed = parse(text)
    assert parsed == expected
    assert parse(str(parsed)) == parsed


@pytest.mark.parametrize("text", INVALID, ids=[short(text) for text in INVALID])
def test_upstream_invalid_vectors(text: str) -> None:
    with pytest.raises(InvalidReferenceError) as caught:
        parse(text)
    assert caught.value.reference == text


@pytest.mark.parametrize(("text", "matches"), DOMAINS, ids=[short(text) for text, _ in DOMAINS])
def test_upstream_domain_vectors(text: str, matches: bool) -> None:
    assert (DOMAIN_RE.fullmatch(text) is not None) is matches


# --- the deliberate deviation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["my_host.com/foo", "foo_bar.com/app:v1", "a__b.example/c"])
def test_first_component_read_as_invalid_domain_is_rejected(text: str) -> None:
    # Deliberate deviation from distribution: a first component with a '.' (so `splitDockerDomain` takes it as the
    # domain) that is not valid domain syntax makes distribution fall back to a domain-less path
    # ("my_host.com/foo" with domain ""). The runtime would then resolve it in a way nobody wrote, so we call it
    # invalid and leave the image untouched.
    assert split_docker_domain(text)[0] == text.partition("/")[0]
    with pytest.raises(InvalidReferenceError, match="invalid registry host"):
        parse(text)


# --- each rule of the grammar -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "domain", "path"),
    [
        ("Registry/app", "Registry", "app"),  # uppercase: a domain, never a namespace
        ("localhost/app", "localhost", "app"),
        ("localhost:5000/app", "localhost:5000", "app"),
        ("cache:5000/app", "cache:5000", "app"),  # a port alone makes a host
        ("registry.example/app", "registry.example", "app"),
        ("registry/app", "docker.io", "registry/app"),  # none of those: a Docker Hub namespace
        ("[::1]/app", "[::1]", "app"),
        ("[fd00::1]:5000/app", "[fd00::1]:5000", "app"),
        ("index.docker.io/app", "docker.io", "library/app"),
        ("app", "docker.io", "library/app"),
        ("docker.io/org/app", "docker.io", "org/app"),
        ("registry.example/app/x", "registry.example", "app/x"),  # other registries never get `library/`
    ],
)
def test_domain_rules(text: str, domain: str, path: str) -> None:
    parsed = parse(text)
    assert (parsed.domain, parsed.path) == (domain, path)


def test_domain_case_is_kept_and_host_is_lowercase() -> None:
    parsed = parse("Quay.IO:443/org")
    assert parsed.host == "quay.io:443"
    upper = parse("QUAY.IO/org/app")
    assert upper.domain == "QUAY.IO"
    assert upper.host == "quay.io"
    assert upper.hostname == "quay.io"
    assert parse("[FD00::1]:5000/app").hostname == "[fd00::1]"
    assert parse("localhost:5000/app").hostname == "localhost"


@pytest.mark.parametrize(
    "text",
    [
        "nginx\n",
        "nginx:1.27\n",
        f"nginx@{SHA256}\n",
        "quay.io/org/app\n",
        "\nnginx",
        " nginx",
        "nginx ",
        "nginx:1.27 ",
        "quay.io\n/app",
    ],
)
def test_whitespace_and_trailing_newline_are_invalid(text: str) -> None:
    # Python's `$` matches before a trailing newline; the parser must not.
    with pytest.raises(InvalidReferenceError):
        parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "nginx:١٢٣",  # Arabic-Indic digits: `\d` in Unicode mode
        "nginx:v٣",
        "nginx:é",  # `\w` in Unicode mode
        "nginx:café",
        "nginx:ǅ",
        "ngïnx",
        "quay.io/örg/app",
        "registry.exämple/app",
        "registry.example:\u0665\u0660\u0660\u0660/app",  # Arabic-Indic 5000 as a port
        "nginx@sha256:" + "\u0660" * 64,  # Arabic-Indic zeros as hex
        "nginx:\uff11",  # fullwidth digit one
    ],
)
def test_unicode_letters_and_digits_are_invalid(text: str) -> None:
    with pytest.raises(InvalidReferenceError):
        parse(text)


@pytest.mark.parametrize(
    ("tag", "valid"),
    [
        ("a" * 128, True),
        ("a" * 129, False),
        ("_" + "a" * 127, True),
        ("v1.2.3-rc.1_build", True),
        ("UPPER", True),
        ("-leading-dash", False),
        (".leading-dot", False),
        ("has/slash", False),
        ("has+plus", False),
        ("", False),
    ],
    ids=short,
)
def test_tag_rules(tag: str, valid: bool) -> None:
    text = f"quay.io/org/app:{tag}"
    if valid:
        assert parse(text).tag == tag
    else:
        with pytest.raises(InvalidReferenceError):
            parse(text)


def test_path_limit_is_255_including_added_library_prefix() -> None:
    at_limit = "a" * 255
    assert len(parse(f"quay.io/{at_limit}").path) == 255
    with pytest.raises(InvalidReferenceError, match="longer than 255"):
        parse(f"quay.io/{at_limit}a")
    # `library/` counts: 247 + 8 = 255 is fine, 248 + 8 = 256 is not
    assert parse("a" * 247).path == "library/" + "a" * 247
    with pytest.raises(InvalidReferenceError, match="longer than 255"):
        parse("a" * 248)
    with pytest.raises(InvalidReferenceError, match="longer than 255"):
        parse("docker.io/" + "a" * 248)
    # the domain and the tag do not count
    long_domain = ".".join(["d" * 60] * 4)
    assert parse(f"{long_domain}/{at_limit}:{'t' * 128}").path == at_limit


@pytest.mark.parametrize(
    ("digest", "valid"),
    [
        ("sha256:" + "a" * 64, True),
        ("sha256:" + "a" * 63, False),
        ("sha256:" + "a" * 65, False),
        ("sha384:" + "a" * 96, True),
        ("sha384:" + "a" * 95, False),
        ("sha384:" + "a" * 64, False),
        ("sha512:" + "a" * 128, True),
        ("sha512:" + "a" * 127, False),
        ("sha512:" + "a" * 64, False),
        ("sha256:" + "A" * 64, False),  # go-digest wants lowercase hex
        ("sha256:" + "a" * 63 + "F", False),
        ("sha256:" + "g" * 64, False),
        ("SHA256:" + "a" * 64, False),  # algorithms are case-sensitive
        ("md5:" + "a" * 32, False),  # grammatical, but not a registered algorithm
        ("sha256+b64:" + "a" * 64, False),
        ("blake3:" + "a" * 64, False),
        ("sha256:", False),
        ("sha256", False),
    ],
    ids=short,
)
def test_digest_rules(digest: str, valid: bool) -> None:
    text = f"quay.io/org/app@{digest}"
    if valid:
        assert parse(text).digest == digest
    else:
        with pytest.raises(InvalidReferenceError):
            parse(text)


def test_tag_and_digest_together_are_both_kept() -> None:
    parsed = parse(f"quay.io/org/app:v1@{SHA256}")
    assert (parsed.tag, parsed.digest) == ("v1", SHA256)
    assert parsed.suffix == f":v1@{SHA256}"
    assert str(parsed) == f"quay.io/org/app:v1@{SHA256}"
    with pytest.raises(InvalidReferenceError):
        parse(f"quay.io/org/app@{SHA256}:v1")  # digest before tag


def test_no_tag_is_added_and_no_digest_is_dropped() -> None:
    assert str(parse("nginx")) == "docker.io/library/nginx"
    assert parse("nginx").tag is None
    assert str(parse(f"nginx@{SHA256}")) == f"docker.io/library/nginx@{SHA256}"


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("a" * 64, False),  # a bare image ID
        ("0123456789abcdef" * 4, False),
        ("a" * 63, True),
        ("a" * 65, True),
        ("A" * 64, False),  # uppercase hex is an uppercase name
        ("a" * 64 + ":tag", True),
        ("docker.io/" + "a" * 64, True),
        ("org/" + "a" * 64, True),
        ("a" * 64 + "\n", False),
    ],
    ids=short,
)
def test_bare_64_hex_is_not_a_name(text: str, valid: bool) -> None:
    if valid:
        parse(text)
    else:
        with pytest.raises(InvalidReferenceError):
            parse(text)


def test_invalid_reference_error_says_what_and_why() -> None:
    with pytest.raises(InvalidReferenceError) as caught:
        parse("Quay.io/Org/App")
    assert isinstance(caught.value, ValueError)
    assert caught.value.reference == "Quay.io/Org/App"
    assert "lowercase" in caught.value.why
    assert "'Quay.io/Org/App'" in str(caught.value)


# --- properties ---------------------------------------------------------------------------------------------------


@given(st.text())
def test_parse_raises_only_invalid_reference_error_on_any_text(text: str) -> None:
    try:
        parsed = parse(text)
    except InvalidReferenceError:
        return
    assert parse(str(parsed)) == parsed


@given(grammar_biased_text())
def test_parse_raises_only_invalid_reference_error_on_near_references(text: str) -> None:
    try:
        parsed = parse(text)
    except InvalidReferenceError:
        return
    assert parsed.path
    assert parse(str(parsed)) == parsed


@given(written_references())
def test_grammar_references_parse_into_their_parts(written: Written) -> None:
    assert parse(written.text) == written.expected


@given(written_references())
def test_round_trip(written: Written) -> None:
    parsed = parse(written.text)
    text = str(parsed)
    assert parse(text) == parsed
    assert str(parse(text)) == text
