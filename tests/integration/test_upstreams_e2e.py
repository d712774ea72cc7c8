"""Issue 14 as a user would try it: one config file with all three new kinds of upstream (chainguard, an Azure
registry, an ECR registry of another account), then ``explain``, ``/mutate`` over TLS on a real server, ``provision
plan`` and ``apply`` against ECR stubbed with botocore's Stubber (every request checked against the ECR model), and
``provision values`` into the chart."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import boto3
import jsonpatch
import pytest
import yaml
from botocore.stub import Stubber
from integration.server import WebhookProcess
from integration.test_chart import one, render
from provision.provision_fakes import ACCOUNT, CENTRAL, NEW_KINDS, REGISTRY, UPSTREAM_ROLE, aws_sandbox, secret_arn
from reviews import make_pod, make_review

from webhook.cli import main
from webhook.core.config import parse_config
from webhook.provision.aws import AwsBackend
from webhook.provision.desired import MANAGED_BY, lifecycle_policy

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

PINNED = "@sha256:" + "c" * 64
CHAINGUARD = f"cgr.dev/chainguard/static:latest{PINNED}"  # pinned: `movingTags: keep` leaves a bare :latest alone
AZURE = "acmecorp.azurecr.io/shop/web:1.0"
CENTRAL_IMAGE = f"{CENTRAL}/platform/api:v2"
CENTRAL_DUAL_STACK = "111122223333.dkr-ecr.us-east-1.on.aws/platform/api:v2"
EKS_ADDON = "602401143452.dkr.ecr.us-east-1.amazonaws.com/eks/coredns:v1.11.1"
SECRETS = ("ecr-pullthroughcache/chainguard", "ecr-pullthroughcache/acme-acr")


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(NEW_KINDS, sort_keys=False), encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_explain(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "explain",
        "--config",
        str(config_file),
        "--output",
        "json",
        CHAINGUARD,
        AZURE,
        CENTRAL_DUAL_STACK,
        EKS_ADDON,
    )
    assert code == 0
    decisions = [json.loads(line) for line in out.splitlines()]
    assert [(item["action"], item["reason"], item["tier"], item["result"]) for item in decisions] == [
        ("rewrite", "rewritten", "chainguard", f"{REGISTRY}/chainguard/chainguard/static:latest{PINNED}"),
        ("rewrite", "rewritten", "acme-acr", f"{REGISTRY}/acr/shop/web:1.0"),
        ("rewrite", "rewritten", "central-ecr", f"{REGISTRY}/use1/platform/api:v2"),
        ("skip", "eks-addon-registry", None, EKS_ADDON),
    ]


@pytest.fixture
def server(tmp_path: Path, config_file: Path) -> Iterator[WebhookProcess]:
    with WebhookProcess(tmp_path, config_file) as process:
        yield process


def test_mutate_over_tls(server: WebhookProcess) -> None:
    review = make_review(make_pod(CHAINGUARD, AZURE, CENTRAL_IMAGE, init=(EKS_ADDON,)))
    status, answer = server.request("POST", "/mutate", review)
    assert status == 200
    assert answer["response"]["allowed"] is True
    patch = json.loads(base64.b64decode(answer["response"]["patch"]))
    pod: dict[str, Any] = jsonpatch.apply_patch(review["request"]["object"], patch)
    assert [container["image"] for container in pod["spec"]["containers"]] == [
        f"{REGISTRY}/chainguard/chainguard/static:latest{PINNED}",
        f"{REGISTRY}/acr/shop/web:1.0",
        f"{REGISTRY}/use1/platform/api:v2",
    ]
    assert pod["spec"]["initContainers"][0]["image"] == EKS_ADDON
    status, audited = server.request("POST", "/audit", make_review(make_pod(AZURE, CENTRAL_DUAL_STACK)))
    assert status == 200
    assert "patch" not in audited["response"]
    assert audited["response"]["warnings"] == [
        f"{AZURE} -> {REGISTRY}/acr/shop/web:1.0",
        f"{CENTRAL_DUAL_STACK} -> {REGISTRY}/use1/platform/api:v2",
    ]
    status, metrics = server.request("GET", "/metrics")
    assert status == 200
    text = metrics.decode()
    for tier in ("chainguard", "acme-acr", "central-ecr"):
        assert (
            f'ecr_ptc_webhook_decisions_total{{action="rewrite",mode="mutate",reason="rewritten",tier="{tier}"}} 1.0'
            in (text)
        )


# --- provision, against ECR stubbed with the real service models ---------------------------------------------------

RULES = [
    ("chainguard", "cgr.dev", "chainguard", {"credentialArn": secret_arn(SECRETS[0])}),
    ("acr", "acmecorp.azurecr.io", "azure-container-registry", {"credentialArn": secret_arn(SECRETS[1])}),
    ("use1", CENTRAL, "ecr", {"customRoleArn": UPSTREAM_ROLE}),
]


class StubbedAws:
    """The three clients the provisioner uses, each behind a Stubber that checks every call against its model."""

    def __init__(self) -> None:
        self.ecr = boto3.client("ecr", region_name="eu-west-1")
        self.secrets = boto3.client("secretsmanager", region_name="eu-west-1")
        self.sts = boto3.client("sts", region_name="eu-west-1")
        self.stubs = (Stubber(self.ecr), Stubber(self.secrets), Stubber(self.sts))

    def reads(self) -> None:
        """What plan reads: the caller, both secrets (keys only), the registry."""
        ecr, secrets, sts = self.stubs
        sts.add_response("get_caller_identity", {"Account": ACCOUNT, "Arn": f"arn:aws:iam::{ACCOUNT}:user/ci"})
        for name in SECRETS:
            secrets.add_response("describe_secret", {"ARN": secret_arn(name), "Name": name}, {"SecretId": name})
            secrets.add_response(
                "get_secret_value",
                {"ARN": secret_arn(name), "SecretString": '{"username": "u", "accessToken": "t"}'},
                {"SecretId": secret_arn(name)},
            )
        ecr.add_response("describe_pull_through_cache_rules", {"pullThroughCacheRules": []}, {})
        ecr.add_response("describe_repository_creation_templates", {"repositoryCreationTemplates": []}, {})
        ecr.add_client_error("get_registry_policy", "RegistryPolicyNotFoundException", "none", 400)

    def writes(self) -> None:
        """What apply then sends: a template, then a rule, per tier."""
        ecr = self.stubs[0]
        for prefix, url, _, _ in RULES:
            template = {
                "prefix": prefix,
                "description": f"{MANAGED_BY}: pull-through cache of {url}",
                "appliedFor": ["PULL_THROUGH_CACHE"],
                "imageTagMutability": "MUTABLE",
                "lifecyclePolicy": lifecycle_policy(30),
            }
            ecr.add_response("create_repository_creation_template", {}, template)
        for prefix, url, kind, credential in RULES:
            request = {
                "ecrRepositoryPrefix": prefix,
                "upstreamRegistryUrl": url,
                "upstreamRegistry": kind,
                **credential,
            }
            ecr.add_response("create_pull_through_cache_rule", {}, request)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubbedAws]:
    stubbed = StubbedAws()
    backend = AwsBackend(stubbed.ecr, stubbed.secrets, stubbed.sts)
    monkeypatch.setattr(AwsBackend, "from_session", classmethod(lambda _cls, _session: backend))
    for stub in stubbed.stubs:
        stub.activate()
    yield stubbed
    for stub in stubbed.stubs:
        stub.assert_no_pending_responses()
        stub.deactivate()


@pytest.mark.usefixtures(aws_sandbox.__name__)
def test_provision_plan_then_apply(config_file: Path, aws: StubbedAws, capsys: pytest.CaptureFixture[str]) -> None:
    aws.reads()
    code, out, _ = run(capsys, "provision", "plan", "--config", str(config_file), "--detailed-exitcode")
    assert code == 3
    assert "Plan: 6 to create, 0 to update, 0 to delete, 0 unchanged." in out
    assert f"+ create pull-through cache rule use1 ({CENTRAL} -> use1/)\n    upstreamRegistry: ecr\n" in out
    assert f"    customRoleArn: {UPSTREAM_ROLE}\n" in out
    assert '"Service": "pullthroughcache.ecr.amazonaws.com"' in out  # the role's trust policy, printed with the plan

    aws.reads()
    aws.writes()
    code, out, _ = run(capsys, "provision", "apply", "--config", str(config_file))
    assert code == 0
    assert "+ created pull-through cache rule acr (acmecorp.azurecr.io -> acr/)" in out
    assert "Apply complete: 6 created, 0 updated, 0 deleted, 0 unchanged." in out


def effective(data: dict[str, Any]) -> tuple[object, ...]:
    """What the webhook does with a config: its tiers, and every known tier's hosts and prefix."""
    config = parse_config({key: value for key, value in data.items() if key != "provision"})
    tiers = {name: (tier.hosts, config.prefix_for(name)) for name, tier in config.known_tiers.items()}
    return config.tiers, tiers, config.digests, config.dry_run


def test_provision_values_install_the_same_config(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "provision", "values", "--config", str(config_file))
    assert code == 0
    values = yaml.safe_load(out)
    assert values["upstreams"] == [
        {**upstream, "host": upstream["host"].lower()} for upstream in NEW_KINDS["upstreams"]
    ]
    assert values["prefixes"] == {"chainguard": "chainguard"}
    assert effective(values) == effective(NEW_KINDS)
    # ...and the chart, given these values, renders a ConfigMap the webhook reads as the same config.
    path = tmp_path / "values.yaml"
    path.write_text(out, encoding="utf-8")
    deployed = yaml.safe_load(one(render("-f", str(path)), "ConfigMap")["data"]["config.yaml"])
    assert effective(deployed) == effective(NEW_KINDS)


def test_explain_with_a_tier_flag_for_an_upstream(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "explain", "--config", str(config_file), "--tier", "acme-acr", "--output", "json", AZURE, CHAINGUARD
    )
    assert code == 0
    assert [json.loads(line)["reason"] for line in out.splitlines()] == ["rewritten", "tier-disabled"]
