from __future__ import annotations

import json
from typing import TYPE_CHECKING

from fastapi.testclient import TestClient
from repository import REPO
from reviews import make_pod, make_review

from webhook.cli import build_parser, main
from webhook.config import load_config
from webhook.core.rules import Rules
from webhook.serve.app import create_app

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

EXAMPLE = REPO / "examples" / "config.yaml"
IMAGES = [
    "quay.io/prometheus/node-exporter:v1.8.2",
    "nginx",
    "ghcr.io/fluxcd/helm-controller:v1.1.0",
    "gcr.io/k8s-staging-multitenancy/hnc-manager:v1.1.0",
    "public.ecr.aws/karpenter/controller:1.1.0",
    "UPPER/Case",
]


def test_commands_are_registered() -> None:
    help_text = build_parser().format_help()
    for command in ("serve", "certs", "explain"):
        assert command in help_text


def test_explain_json_agrees_with_mutate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--config", str(EXAMPLE), "--output", "json", *IMAGES]) == 0
    explained = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [set(item) for item in explained] == [{"image", "action", "result", "reason", "tier"}] * len(IMAGES)

    rules = Rules(load_config(EXAMPLE))
    body = make_review(make_pod(*IMAGES))
    with TestClient(create_app(rules)) as client:
        warnings = client.post("/audit", json=body).json()["response"].get("warnings", [])
    rewrites = [f"{item['image']} -> {item['result']}" for item in explained if item["action"] == "rewrite"]
    kept = [f"{item['image']} stays on its upstream: {item['reason']} (`movingTags: keep`)" for item in explained[1:2]]
    assert warnings == rewrites + kept
    assert [item["reason"] for item in explained] == [
        "rewritten",
        "moving-tag",
        "tier-disabled",
        "upstream-unsupported",
        "public-ecr",
        "invalid-reference",
    ]


def test_explain_text_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--config", str(EXAMPLE), "ghcr.io/fluxcd/helm-controller:v1.1.0"]) == 0
    out = capsys.readouterr().out
    assert "skip (tier-disabled [tier ghcr]" in out


def test_flags_override_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "explain",
                "--config",
                str(EXAMPLE),
                "--tier",
                "ghcr",
                "--prefix",
                "ghcr=github",
                "--output",
                "json",
                "ghcr.io/a/b:1",
            ]
        )
        == 0
    )
    decision = json.loads(capsys.readouterr().out)
    assert decision["result"] == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/github/a/b:1"


def test_config_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("registry: 123456789012.dkr.ecr.eu-west-1.amazonaws.com\ntiers: [dockerhub]\n")
    assert main(["explain", "--config", str(config), "nginx"]) == 2
    err = capsys.readouterr().err
    assert "config key `tiers`: unknown tier 'dockerhub'; known: quay, k8s, docker-hub, ghcr, gitlab" in err
    assert "Traceback" not in err


def test_env_overrides_reach_commands(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ECR_PTC_WEBHOOK_REGISTRY", "999999999999.dkr.ecr.us-east-1.amazonaws.com")
    monkeypatch.setenv("ECR_PTC_WEBHOOK_DIGESTS", "skip")
    assert main(["explain", "--output", "json", "quay.io/a/b@sha256:" + "0" * 64, "quay.io/a/b:1"]) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["reason"] == "digest-pinned"
    assert second["result"] == "999999999999.dkr.ecr.us-east-1.amazonaws.com/quay/a/b:1"


def test_certs_command_writes_the_three_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["certs", "--out", str(tmp_path), "--dns-name", "localhost", "--ip", "127.0.0.1"]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
    assert main(["certs", "--out", str(tmp_path)]) == 2
    assert "give at least one --dns-name or --ip" in capsys.readouterr().err


def test_explain_shows_each_policy_and_what_changes_it(capsys: pytest.CaptureFixture[str]) -> None:
    images = ["quay.io/acme/private:v1", "nginx", "ghcr.io/acme/tools:v1", "registry.k8s.io/pause:3.10"]
    flags = [
        "--tier",
        "quay",
        "--tier",
        "k8s",
        "--tier",
        "docker-hub",
        "--tier",
        "ghcr",
        "--exclude",
        "ghcr.io/*/tools",
    ]
    assert main(["explain", "--config", str(EXAMPLE), *flags, "--with-pull-secrets", *images]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "skip (pull-secret [tier quay]: " in lines[0]
    assert lines[0].endswith("; changed by `pullSecrets: rewrite`)")
    assert "skip (pull-secret [tier docker-hub]" in lines[1]  # pull secrets are checked before moving tags
    assert "skip (excluded [tier ghcr]: " in lines[2]
    assert lines[2].endswith("; changed by `exclude`)")
    assert "rewrite (rewritten [tier k8s]" in lines[3]  # registry.k8s.io holds no private images
    assert main(["explain", "--config", str(EXAMPLE), "nginx"]) == 0
    assert capsys.readouterr().out.endswith("; changed by `movingTags: rewrite` (or pin a digest))\n")
    assert main(["explain", "--config", str(EXAMPLE), "--include", "quay.io/**", "registry.k8s.io/pause:3.10"]) == 0
    assert "skip (not-included [tier k8s]" in capsys.readouterr().out
