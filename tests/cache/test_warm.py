"""Warm-up: the pure flow with a scripted registry, and the `warm` command in-process against a loopback server."""

from __future__ import annotations

import asyncio
import io
import json
from typing import TYPE_CHECKING, Any

import pytest
from cache.cache_support import Certificates, FaultyRegistry, aws_env

from webhook.cache.discovery import RuleDiscovery, RulesUnavailableError
from webhook.cache.registry_client import EcrImageIndex, ManifestAnswer
from webhook.cache.warm import Cache, WarmResult, WarmStatus, read_image_list, summary, warm
from webhook.cli import main
from webhook.cli.warm import Progress, rules_for
from webhook.core.config import parse_config
from webhook.core.reasons import Reason
from webhook.core.rules import Rules

if TYPE_CHECKING:
    from pathlib import Path

    from botocore.stub import Stubber
    from mypy_boto3_ecr import ECRClient

    from webhook.core.reference import ImageReference

ACCOUNT = "123456789012"
REGISTRY = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
DIGEST = "sha256:" + "c" * 64
QUAY_RULE = {"ecrRepositoryPrefix": "quay", "upstreamRegistryUrl": "quay.io", "upstreamRegistry": "quay"}

pytestmark = pytest.mark.usefixtures(aws_env.__name__)


@pytest.fixture
def rules() -> Rules:
    return Rules(parse_config({"registry": REGISTRY, "tiers": ["quay"]}))


class Scripted:
    def __init__(self, answers: dict[str, ManifestAnswer]) -> None:
        self.answers = answers
        self.calls: list[str] = []
        self.running = 0
        self.most = 0

    async def __call__(self, reference: ImageReference, identifier: str) -> ManifestAnswer:
        self.calls.append(f"{reference.path}:{identifier}")
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0.001)
        self.running -= 1
        return self.answers.get(identifier, ManifestAnswer(200, digest=DIGEST))


def test_warm_decides_fetches_and_keeps_the_input_order(rules: Rules) -> None:
    fetch = Scripted(
        {
            "2": ManifestAnswer(404, error="404 Not Found: MANIFEST_UNKNOWN"),
            "3": ManifestAnswer(429, error="429 Too Many Requests: TOOMANYREQUESTS rate limit"),
        }
    )
    images = ["quay.io/a/b:1", "nginx:1.27", "quay.io/a/b:2", "quay.io/a/b:3", f"quay.io/a/b:1@{DIGEST}"]
    seen: list[str] = []

    results = asyncio.run(
        warm([*images, "quay.io/a/b:1"], rules, Cache(fetch), progress=lambda r: seen.append(r.image))
    )

    assert [(r.image, r.status) for r in results] == [
        ("quay.io/a/b:1", WarmStatus.RESOLVED),
        ("nginx:1.27", WarmStatus.SKIPPED),
        ("quay.io/a/b:2", WarmStatus.MISSING),
        ("quay.io/a/b:3", WarmStatus.FAILED),
        (f"quay.io/a/b:1@{DIGEST}", WarmStatus.RESOLVED),
    ]
    assert results[0].target == f"{REGISTRY}/quay/a/b:1"
    assert results[1].detail == "tier-disabled"
    assert results[3].detail == "3: 429 Too Many Requests: TOOMANYREQUESTS rate limit"
    assert sorted(seen) == sorted(images)
    # By tag, then by digest for the pinned one; the duplicate once.
    assert sorted(fetch.calls) == sorted(["quay/a/b:1", "quay/a/b:2", "quay/a/b:3", "quay/a/b:1", f"quay/a/b:{DIGEST}"])


def test_warm_runs_at_most_concurrency_fetches_at_once(rules: Rules) -> None:
    fetch = Scripted({})
    images = [f"quay.io/a/b:{n}" for n in range(20)]
    asyncio.run(warm(images, rules, Cache(fetch), concurrency=3))
    assert len(fetch.calls) == 20
    assert fetch.most == 3


def described(stubber: Stubber, tag: str, *, found: bool | str) -> None:
    """One DescribeImages: found, or the error code ECR answers (`found` names it)."""
    expected = {"registryId": ACCOUNT, "repositoryName": "quay/a/b", "imageIds": [{"imageTag": tag}]}
    if found is True:
        detail = {"registryId": ACCOUNT, "repositoryName": "quay/a/b", "imageDigest": DIGEST, "imageTags": [tag]}
        stubber.add_response("describe_images", {"imageDetails": [detail]}, expected)
    else:
        stubber.add_client_error("describe_images", str(found), "no", expected_params=expected)


def test_with_ecr_s_index_warmed_is_told_from_already_cached(rules: Rules, ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    described(stubber, "1", found=True)
    described(stubber, "2", found="ImageNotFoundException")
    described(stubber, "3", found="RepositoryNotFoundException")
    described(stubber, "4", found="AccessDeniedException")
    fetch = Scripted({"3": ManifestAnswer(404, error="404 Not Found: MANIFEST_UNKNOWN")})
    images = [f"quay.io/a/b:{n}" for n in range(1, 5)]

    # One at a time: the stubbed answers are consumed in order.
    results = asyncio.run(warm(images, rules, Cache(fetch, EcrImageIndex(client, ACCOUNT)), concurrency=1))

    assert [(r.image, r.status) for r in results] == [
        ("quay.io/a/b:1", WarmStatus.CACHED),
        ("quay.io/a/b:2", WarmStatus.WARMED),
        ("quay.io/a/b:3", WarmStatus.MISSING),
        ("quay.io/a/b:4", WarmStatus.RESOLVED),
    ]
    assert fetch.calls == ["quay/a/b:2", "quay/a/b:3", "quay/a/b:4"]  # what the cache held is not fetched
    assert results[0].detail == DIGEST
    assert "not known if cached: ECR DescribeImages failed" in results[3].detail
    assert all(r.ok for r in results if r.status is not WarmStatus.MISSING)


def test_rules_discover_warms_only_tiers_the_cache_has_a_rule_for(ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    stubber.add_response("describe_pull_through_cache_rules", {"pullThroughCacheRules": [QUAY_RULE]}, {})
    config = parse_config({"registry": REGISTRY, "tiers": ["quay", "k8s"], "rules": "discover"})
    fetch = Scripted({})

    async def scenario() -> list[WarmResult]:
        rules = await rules_for(config, lambda: RuleDiscovery(config, client))
        return await warm(["quay.io/a/b:1", "registry.k8s.io/pause:3.10"], rules, Cache(fetch))

    results = asyncio.run(scenario())
    assert [(r.status, r.detail) for r in results] == [
        (WarmStatus.RESOLVED, DIGEST),
        (WarmStatus.SKIPPED, Reason.RULE_MISSING.value),
    ]
    assert fetch.calls == ["quay/a/b:1"]


def test_rules_discover_warms_the_upstreams_tiers_whose_rule_fronts_their_registry(
    ecr: tuple[ECRClient, Stubber],
) -> None:
    client, stubber = ecr
    central = "111122223333.dkr.ecr.us-east-1.amazonaws.com"
    rules = [
        {"ecrRepositoryPrefix": "use1", "upstreamRegistryUrl": central, "upstreamRegistry": "ecr"},
        {
            "ecrRepositoryPrefix": "acr",
            "upstreamRegistryUrl": "othercorp.azurecr.io",
            "upstreamRegistry": "azure-container-registry",
        },
    ]
    stubber.add_response("describe_pull_through_cache_rules", {"pullThroughCacheRules": rules}, {})
    upstreams = [
        {"name": "central-ecr", "upstreamRegistry": "ecr", "host": central, "prefix": "use1"},
        {
            "name": "acme-acr",
            "upstreamRegistry": "azure-container-registry",
            "host": "acmecorp.azurecr.io",
            "prefix": "acr",
        },
    ]
    config = parse_config(
        {"registry": REGISTRY, "upstreams": upstreams, "tiers": ["central-ecr", "acme-acr"], "rules": "discover"}
    )
    fetch = Scripted({})

    async def scenario() -> list[WarmResult]:
        rules = await rules_for(config, lambda: RuleDiscovery(config, client))
        images = ["111122223333.dkr-ecr.us-east-1.on.aws/platform/api:v2", "acmecorp.azurecr.io/shop/web:1"]
        return await warm(images, rules, Cache(fetch))

    results = asyncio.run(scenario())
    assert [r.status for r in results] == [WarmStatus.RESOLVED, WarmStatus.SKIPPED]
    assert results[0].target == f"{REGISTRY}/use1/platform/api:v2"
    assert results[1].detail == Reason.RULE_MISSING.value  # the rule on `acr` fronts another Azure registry
    assert fetch.calls == ["use1/platform/api:v2"]


def test_rules_discover_that_cannot_read_the_rules_is_an_error(ecr: tuple[ECRClient, Stubber]) -> None:
    client, stubber = ecr
    stubber.add_client_error("describe_pull_through_cache_rules", "AccessDeniedException", "not authorized")
    config = parse_config({"registry": REGISTRY, "tiers": ["quay"], "rules": "discover"})
    with pytest.raises(RulesUnavailableError, match="AccessDeniedException"):
        asyncio.run(rules_for(config, lambda: RuleDiscovery(config, client)))


def test_static_rules_need_no_discovery() -> None:
    config = parse_config({"registry": REGISTRY, "tiers": ["quay"]})

    def never() -> RuleDiscovery:
        raise AssertionError("static rules read nothing")

    assert asyncio.run(rules_for(config, never)).decide("quay.io/a/b:1").rewrites


def test_read_image_list_skips_blank_lines_and_comments() -> None:
    assert read_image_list(["# chart images\n", "quay.io/a/b:1  # the app\n", "\n", "  nginx \n"]) == [
        "quay.io/a/b:1",
        "nginx",
    ]


def test_summary_is_a_table_with_counts() -> None:
    table = summary(
        [
            WarmResult("quay.io/a/b:1", f"{REGISTRY}/quay/a/b:1", WarmStatus.WARMED, DIGEST),
            WarmResult("quay.io/a/b:2", f"{REGISTRY}/quay/a/b:2", WarmStatus.CACHED, DIGEST),
            WarmResult("nginx", "nginx", WarmStatus.SKIPPED, "tier-disabled"),
        ]
    )
    assert table.splitlines() == [
        "IMAGE          STATUS          DETAIL",
        f"quay.io/a/b:1  warmed          {REGISTRY}/quay/a/b:1 {DIGEST}",
        f"quay.io/a/b:2  already-cached  {REGISTRY}/quay/a/b:2 {DIGEST}",
        "nginx          skipped         tier-disabled",
        "1 warmed, 1 already-cached, 0 resolved, 0 missing, 0 failed, 1 skipped",
    ]


def test_progress_draws_a_bar_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = Progress(2, stream)
    progress(WarmResult("a", "a", WarmStatus.SKIPPED, "no-rule"))
    progress(WarmResult("b", "b", WarmStatus.RESOLVED, DIGEST))
    progress.close()
    text = stream.getvalue()
    assert "\r\x1b[2K[############............] [1/2] skipped  a" in text
    assert text.endswith("[2/2] resolved b\n")


@pytest.mark.integration
def test_the_command_reads_stdin_and_prints_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    certificates = Certificates(tmp_path / "certs")
    with FaultyRegistry(certificates, status=200) as registry:
        config = tmp_path / "config.yaml"
        config.write_text(json.dumps({"registry": registry.host, "tiers": ["quay"]}))
        monkeypatch.setattr("sys.stdin", io.StringIO("quay.io/a/b:1\nnginx\n"))
        code = main(["warm", "--config", str(config), "--ca-file", str(certificates.ca), "--output", "json", "-f", "-"])
    out, err = capsys.readouterr()
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(line["image"], line["status"]) for line in lines] == [("quay.io/a/b:1", "resolved"), ("nginx", "skipped")]
    assert lines[0]["target"] == f"{registry.host}/quay/a/b:1"
    assert "[2/2]" in err


@pytest.mark.integration
def test_the_command_reads_the_cache_s_rules_with_rules_discover(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    ecr: tuple[ECRClient, Stubber],
) -> None:
    client, stubber = ecr
    stubber.add_response("describe_pull_through_cache_rules", {"pullThroughCacheRules": [QUAY_RULE]}, {})
    made: list[str] = []

    def stubbed(registry: str) -> Any:
        made.append(registry)
        return client

    monkeypatch.setattr("webhook.cli.warm.ecr_client_for", stubbed)
    certificates = Certificates(tmp_path / "certs")
    with FaultyRegistry(certificates, status=200) as registry:
        config = tmp_path / "config.yaml"
        config.write_text(json.dumps({"registry": registry.host, "tiers": ["quay", "k8s"], "rules": "discover"}))
        arguments = ["--config", str(config), "--ca-file", str(certificates.ca), "--output", "json"]
        code = main(["warm", *arguments, "quay.io/a/b:1", "registry.k8s.io/pause:3.10"])
    out, _ = capsys.readouterr()
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(line["status"], line["detail"]) for line in lines[1:]] == [("skipped", "rule-missing")]
    assert lines[0]["status"] == "resolved"
    assert made == [registry.host]  # one ECR client; not ECR: no token, no DescribeImages


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "no images: name some, or give a file with -f FILE"),
        (["--concurrency", "0", "nginx"], "--concurrency must be at least 1, got 0"),
        (["-f", "/nonexistent/images.txt"], "cannot read image list /nonexistent/images.txt: No such file"),
    ],
)
def test_usage_errors_are_one_line(arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["warm", "--registry", REGISTRY, *arguments]) == 2
    assert message in capsys.readouterr().err
