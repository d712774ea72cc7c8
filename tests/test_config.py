from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from webhook.config import load_config
from webhook.core.config import Config, parse_config
from webhook.core.registries import TIERS
from webhook.exceptions import ConfigError, WebhookError
from webhook.provision.config import parse_provision_config

if TYPE_CHECKING:
    from pathlib import Path

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
OTHER_REGISTRY = "210987654321.dkr.ecr.us-east-1.amazonaws.com"
KNOWN_TIERS = "known: quay, k8s, docker-hub, ghcr, gitlab, chainguard"


def config_error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert isinstance(caught.value, WebhookError)
    assert isinstance(caught.value, ValueError)
    return str(caught.value)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults -----------------------------------------------------------------------------------------------------


def test_defaults() -> None:
    config = parse_config({"registry": REGISTRY})
    assert config.registry == REGISTRY
    assert config.tiers == ("quay", "k8s")
    assert config.digests == "rewrite"
    assert config.dry_run is False
    assert config.prefixes == {}
    assert {tier.name: config.prefix_for(tier.name) for tier in TIERS} == {
        "quay": "quay",
        "k8s": "k8s",
        "docker-hub": "docker-hub",
        "ghcr": "ghcr",
        "gitlab": "gitlab",
        "chainguard": "chainguard",
    }


def test_full_config() -> None:
    config = parse_config(
        {
            "registry": REGISTRY,
            "tiers": ["quay", "docker-hub"],
            "prefixes": {"docker-hub": "dockerhub", "quay": "mirror/quay.io"},
            "dryRun": True,
            "digests": "skip",
        }
    )
    assert config.tiers == ("quay", "docker-hub")
    assert config.prefix_for("docker-hub") == "dockerhub"
    assert config.prefix_for("quay") == "mirror/quay.io"
    assert config.prefix_for("k8s") == "k8s"
    assert config.dry_run is True
    assert config.digests == "skip"


@pytest.mark.parametrize(
    "registry",
    [REGISTRY, "cache.example", "cache.example:5000", "localhost:5000", "10.0.0.1:5000", "[fd00::1]:5000"],
)
def test_registry_hosts_accepted(registry: str) -> None:
    assert parse_config({"registry": registry}).registry == registry


def test_config_is_frozen() -> None:
    config = parse_config({"registry": REGISTRY})
    with pytest.raises(ValueError, match="frozen"):
        config.registry = OTHER_REGISTRY  # type: ignore[misc]


# --- error messages name the key and the fix ----------------------------------------------------------------------


def test_missing_registry() -> None:
    assert config_error({}) == (
        "configuration: config key `registry`: required, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    )


def test_unknown_key() -> None:
    message = config_error({"registry": REGISTRY, "dryrun": True})
    assert message.startswith(
        "configuration: config key `dryrun`: unknown key; known keys: registry, upstreams, tiers, "
    )
    assert "dryRun" in message


def test_unknown_tier() -> None:
    assert config_error({"registry": REGISTRY, "tiers": ["quay", "dockerhub"]}) == (
        f"configuration: config key `tiers`: unknown tier 'dockerhub'; {KNOWN_TIERS}"
    )


def test_unknown_tier_in_prefixes() -> None:
    assert config_error({"registry": REGISTRY, "prefixes": {"dockerhub": "dh"}}) == (
        f"configuration: config key `prefixes`: unknown tier 'dockerhub'; {KNOWN_TIERS}"
    )


def test_tier_listed_twice() -> None:
    message = config_error({"registry": REGISTRY, "tiers": ["quay", "k8s", "quay"]})
    assert message.startswith("configuration: config key `tiers`: lists a tier twice")


def test_tiers_must_be_a_list() -> None:
    assert "config key `tiers`" in config_error({"registry": REGISTRY, "tiers": "quay"})


@pytest.mark.parametrize(
    "prefix",
    [
        "Q",
        "x",  # shorter than 2
        "a" * 31,  # longer than 30
        "Quay",  # uppercase
        "quay/",  # trailing slash
        "/quay",
        "-quay",
        "quay-",
        "qu..ay",
        "qu ay",
        "ROOT",
        "quay\n",
        "quäy",
    ],
)
def test_bad_prefix(prefix: str) -> None:
    message = config_error({"registry": REGISTRY, "prefixes": {"quay": prefix}})
    assert message == (
        f"configuration: config key `prefixes`: prefix {prefix!r} for tier 'quay' is not a valid ECR repository "
        "prefix: 2-30 characters, lowercase letters and digits separated by '.', '_', '-' or '/', e.g. 'dockerhub'"
    )


@pytest.mark.parametrize("prefix", ["ab", "a" * 30, "quay-io", "mirror/quay", "a.b_c-d/e", "q1"])
def test_good_prefix(prefix: str) -> None:
    assert parse_config({"registry": REGISTRY, "prefixes": {"quay": prefix}}).prefix_for("quay") == prefix


def test_duplicate_prefixes_name_the_prefixes_key() -> None:
    # Two tiers with one prefix would send two upstreams' images to the same cache repositories.
    message = config_error({"registry": REGISTRY, "prefixes": {"quay": "mirror", "ghcr": "mirror"}})
    assert "tiers 'quay' and 'ghcr' share the prefix 'mirror'; give each its own" in message
    assert "config key `prefixes`" in message


def test_prefix_equal_to_another_tiers_default_is_a_duplicate() -> None:
    message = config_error({"registry": REGISTRY, "prefixes": {"quay": "k8s"}})
    assert "tiers 'quay' and 'k8s' share the prefix 'k8s'" in message


def test_nested_prefixes_are_rejected() -> None:
    # quay.io/k8s/pause -> cache/k8s/pause and registry.k8s.io/pause -> cache/k8s/pause: two upstream images, one
    # cache repository. A prefix that is another's prefix plus '/...' must be refused like an equal one.
    message = config_error({"registry": REGISTRY, "prefixes": {"quay": "cache", "k8s": "cache/k8s"}})
    assert "config key `prefixes`" in message
    assert "'quay'" in message
    assert "'k8s'" in message


@pytest.mark.parametrize(
    ("registry", "expected"),
    [
        (
            "https://x/y",
            "'https://x/y' is not a registry host; expected e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        ),
        (f"https://{REGISTRY}", "(no scheme, no path)"),
        (f"{REGISTRY}/quay", "(no scheme, no path)"),
        ("cache", "'cache' is not a registry host: a host needs a '.' or a ':port'"),
        ("", "is not a registry host"),
        (f"{REGISTRY}\n", "is not a registry host"),
        ("my_cache.example", "is not a registry host"),
        ("quay.io", "'quay.io' is an upstream registry; set the cache's ECR registry host"),
        ("QUAY.IO", "is an upstream registry"),
        ("docker.io", "is an upstream registry"),
        ("registry-1.docker.io", "is an upstream registry"),
        ("registry.k8s.io", "is an upstream registry"),
        ("ghcr.io", "is an upstream registry"),
        ("registry.gitlab.com", "is an upstream registry"),
    ],
)
def test_registry_must_be_a_cache_host(registry: str, expected: str) -> None:
    message = config_error({"registry": registry})
    assert message.startswith("configuration: config key `registry`: ")
    assert expected in message


def test_legacy_docker_hub_host_is_called_an_upstream_registry() -> None:
    # index.docker.io has dots; "a host needs a '.' or a ':port'" would send the user the wrong way.
    message = config_error({"registry": "index.docker.io"})
    assert "'index.docker.io' is an upstream registry" in message


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, None, "on"])
def test_dry_run_must_be_a_boolean(value: object) -> None:
    message = config_error({"registry": REGISTRY, "dryRun": value})
    assert message == f"configuration: config key `dryRun`: expected true or false, got {value!r}"


def test_digests_must_be_rewrite_or_skip() -> None:
    message = config_error({"registry": REGISTRY, "digests": "keep"})
    assert message.startswith("configuration: config key `digests`: ")
    assert "'rewrite'" in message
    assert "'skip'" in message


def test_every_error_is_reported() -> None:
    message = config_error({"registry": "cache", "tiers": ["dockerhub"], "dryRun": "maybe"})
    lines = message.splitlines()
    assert len(lines) == 3
    assert {re.findall(r"`(\w+)`", line)[0] for line in lines} == {"registry", "tiers", "dryRun"}


# --- the file -----------------------------------------------------------------------------------------------------


def test_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
# the cache
registry: {REGISTRY}
tiers: [quay, k8s, ghcr]
prefixes:
  ghcr: github
dryRun: true
digests: skip
""",
    )
    config = load_config(path)
    assert config == Config(
        registry=REGISTRY, tiers=("quay", "k8s", "ghcr"), prefixes={"ghcr": "github"}, dry_run=True, digests="skip"
    )


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "registry: cache\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: config key `registry`: 'cache' is not a registry host")


def test_quoted_yes_is_not_a_boolean(tmp_path: Path) -> None:
    path = write(tmp_path, f'registry: {REGISTRY}\ndryRun: "yes"\n')
    with pytest.raises(ConfigError, match=r"config key `dryRun`: expected true or false, got 'yes'"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"cannot read config file {path}: No such file or directory"


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path)


def test_bad_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "registry: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"config file {path} is not valid YAML: ")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"registry: \xff\xfe\n")
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "shown"), [("- quay\n- k8s\n", "['quay', 'k8s']"), ("just a string\n", "'just a string'")]
)
def test_not_a_mapping(tmp_path: Path, text: str, shown: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"config file {path}: expected a mapping of keys (registry, tiers, ...), got {shown}"


def test_empty_file_needs_the_registry_elsewhere(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing yet\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: config key `registry`: required")):
        load_config(path)
    assert load_config(path, env={"ECR_PTC_WEBHOOK_REGISTRY": REGISTRY}).registry == REGISTRY


# --- environment and flags ----------------------------------------------------------------------------------------


def test_no_sources_at_all() -> None:
    with pytest.raises(ConfigError, match="config key `registry`: required"):
        load_config()


def test_env() -> None:
    config = load_config(
        env={
            "ECR_PTC_WEBHOOK_REGISTRY": REGISTRY,
            "ECR_PTC_WEBHOOK_TIERS": " quay , docker-hub,,ghcr ",
            "ECR_PTC_WEBHOOK_PREFIXES": "docker-hub=dockerhub, ghcr = github ,",
            "ECR_PTC_WEBHOOK_DRY_RUN": "true",
            "ECR_PTC_WEBHOOK_DIGESTS": "skip",
            "UNRELATED": "x",
            "ECR_PTC_WEBHOOK_UNKNOWN": "ignored",
        }
    )
    assert config.registry == REGISTRY
    assert config.tiers == ("quay", "docker-hub", "ghcr")
    assert config.prefixes == {"docker-hub": "dockerhub", "ghcr": "github"}
    assert config.dry_run is True
    assert config.digests == "skip"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        (" 1 ", True),
        ("yes", True),
        ("on", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("off", False),
    ],
)
def test_env_booleans(raw: str, expected: bool) -> None:
    env = {"ECR_PTC_WEBHOOK_REGISTRY": REGISTRY, "ECR_PTC_WEBHOOK_DRY_RUN": raw}
    assert load_config(env=env).dry_run is expected


@pytest.mark.parametrize("raw", ["maybe", "", "2", "tru"])
def test_env_bad_boolean(raw: str) -> None:
    env = {"ECR_PTC_WEBHOOK_REGISTRY": REGISTRY, "ECR_PTC_WEBHOOK_DRY_RUN": raw}
    with pytest.raises(ConfigError) as caught:
        load_config(env=env)
    assert str(caught.value) == f"ECR_PTC_WEBHOOK_DRY_RUN: expected true or false, got {raw!r}"


def test_env_bad_prefixes() -> None:
    env = {"ECR_PTC_WEBHOOK_REGISTRY": REGISTRY, "ECR_PTC_WEBHOOK_PREFIXES": "quay=q1,ghcr"}
    with pytest.raises(ConfigError) as caught:
        load_config(env=env)
    assert str(caught.value) == "ECR_PTC_WEBHOOK_PREFIXES: expected tier=prefix[,tier=prefix], got 'ghcr'"


def test_env_values_are_validated_like_the_file() -> None:
    env = {"ECR_PTC_WEBHOOK_REGISTRY": REGISTRY, "ECR_PTC_WEBHOOK_TIERS": "quay,dockerhub"}
    with pytest.raises(ConfigError, match=re.escape(f"config key `tiers`: unknown tier 'dockerhub'; {KNOWN_TIERS}")):
        load_config(env=env)
    env = {"ECR_PTC_WEBHOOK_REGISTRY": REGISTRY, "ECR_PTC_WEBHOOK_DIGESTS": "keep"}
    with pytest.raises(ConfigError, match="config key `digests`"):
        load_config(env=env)


def test_empty_env_tiers_enable_nothing() -> None:
    config = load_config(env={"ECR_PTC_WEBHOOK_REGISTRY": REGISTRY, "ECR_PTC_WEBHOOK_TIERS": ""})
    assert config.tiers == ()


def test_precedence_flags_beat_env_beat_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"registry: {REGISTRY}\ntiers: [quay]\ndryRun: false\ndigests: rewrite\nprefixes:\n  quay: from-file\n",
    )
    assert load_config(path).tiers == ("quay",)

    env = {
        "ECR_PTC_WEBHOOK_REGISTRY": OTHER_REGISTRY,
        "ECR_PTC_WEBHOOK_TIERS": "k8s",
        "ECR_PTC_WEBHOOK_DRY_RUN": "true",
        "ECR_PTC_WEBHOOK_PREFIXES": "quay=from-env",
    }
    from_env = load_config(path, env=env)
    assert from_env.registry == OTHER_REGISTRY
    assert from_env.tiers == ("k8s",)
    assert from_env.dry_run is True
    assert from_env.prefixes == {"quay": "from-env"}  # replaces the file's mapping, not merged with it
    assert from_env.digests == "rewrite"  # from the file: no variable set

    flags = {
        "registry": "cache.example:5000",
        "tiers": ["ghcr"],
        "dryRun": False,  # an explicit false beats the environment's true
        "digests": "skip",
        "prefixes": None,  # a flag not given leaves the lower layers alone
    }
    from_flags = load_config(path, env=env, overrides=flags)
    assert from_flags.registry == "cache.example:5000"
    assert from_flags.tiers == ("ghcr",)
    assert from_flags.dry_run is False
    assert from_flags.digests == "skip"
    assert from_flags.prefixes == {"quay": "from-env"}


def test_flag_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=re.escape(f"unknown tier 'dockerhub'; {KNOWN_TIERS}")):
        load_config(overrides={"registry": REGISTRY, "tiers": ["dockerhub"]})


def test_the_provision_section_is_the_provisioners_to_validate() -> None:
    # The webhook carries `provision:` as opaque data; `ecr-ptc-webhook provision` owns and validates it.
    data = {"registry": "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "provision": {"lifecycleDayz": 30}}
    assert parse_config(data).provision == {"lifecycleDayz": 30}
    with pytest.raises(ConfigError, match=r"config key `provision.lifecycleDayz`: unknown key"):
        parse_provision_config(data)


def test_the_image_policies_default_to_keep_and_no_patterns() -> None:
    config = parse_config({"registry": REGISTRY})
    assert (config.pull_secrets, config.moving_tags, config.exclude, config.include) == ("keep", "keep", (), ())


def test_the_image_policies_from_file_env_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"registry: {REGISTRY}\npullSecrets: rewrite\nexclude: [quay.io/acme/**]\ninclude: ['**']\n", encoding="utf-8"
    )
    assert load_config(path).exclude == ("quay.io/acme/**",)
    env = {
        "ECR_PTC_WEBHOOK_PULL_SECRETS": "keep",
        "ECR_PTC_WEBHOOK_MOVING_TAGS": "rewrite",
        "ECR_PTC_WEBHOOK_EXCLUDE": " ghcr.io/*/tools , nginx,, ",
    }
    config = load_config(path, env=env)
    assert (config.pull_secrets, config.moving_tags) == ("keep", "rewrite")
    assert config.exclude == ("ghcr.io/*/tools", "nginx")
    assert config.include == ("**",)
    flagged = load_config(path, env=env, overrides={"exclude": ["bitnami/*"], "movingTags": "keep"})
    assert (flagged.exclude, flagged.moving_tags) == (("bitnami/*",), "keep")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"pullSecrets": "drop"}, "config key `pullSecrets`: Input should be 'keep' or 'rewrite'"),
        ({"movingTags": True}, "config key `movingTags`: Input should be 'keep' or 'rewrite'"),
        ({"exclude": "quay.io/**"}, "config key `exclude`: Input should be a valid tuple"),
        ({"exclude": ["quay.io/acme/app:v1"]}, "config key `exclude`: pattern 'quay.io/acme/app:v1': "),
        ({"include": [""]}, "config key `include`: pattern '': a pattern is a non-empty"),
        (
            {"include": ["https://ghcr.io/acme"]},
            "config key `include`: pattern 'https://ghcr.io/acme': a pattern has no",
        ),
        ({"exclude": ["quay.io/acme/[x"]}, "unbalanced brackets"),
        ({"exclude": ["quay.io//x"]}, "empty path component"),
        ({"exclude": ["nginx@sha256:" + "a" * 64]}, "not digests"),
    ],
)
def test_bad_image_policies_name_the_key_and_the_pattern(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({"registry": REGISTRY, **data})


def test_env_and_flags_enable_the_files_upstreams(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"registry: {REGISTRY}\n"
        "upstreams:\n"
        "  - {name: acme-acr, upstreamRegistry: azure-container-registry, host: acmecorp.azurecr.io, prefix: acr}\n",
    )
    assert load_config(path, env={"ECR_PTC_WEBHOOK_TIERS": "quay,acme-acr"}).tiers == ("quay", "acme-acr")
    assert load_config(path, overrides={"tiers": ["acme-acr"]}).tiers == ("acme-acr",)
    with pytest.raises(ConfigError, match=re.escape(f"unknown tier 'acme'; {KNOWN_TIERS}, acme-acr")):
        load_config(path, env={"ECR_PTC_WEBHOOK_TIERS": "acme"})
