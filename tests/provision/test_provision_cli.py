"""``ecr-ptc-webhook provision ...``: output, exit codes and errors, with the FAKE in-memory ECR as the backend."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from provision.provision_fakes import REGISTRY, FakeEcr, aws_sandbox

from webhook.cli import main
from webhook.provision.aws import AwsBackend
from webhook.provision.resources import CreationTemplate

CONFIG = {
    "registry": REGISTRY,
    "tiers": ["quay", "docker-hub"],
    "prefixes": {"docker-hub": "dockerhub"},
    "provision": {"secrets": {"docker-hub": "ecr-pullthroughcache/docker-hub"}},
}

pytestmark = pytest.mark.usefixtures(aws_sandbox.__name__)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    return path


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeEcr:
    fake = FakeEcr().with_secret()
    monkeypatch.setattr(AwsBackend, "from_session", classmethod(lambda _cls, _session: fake))
    return fake


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["provision", *argv])
    out, err = capsys.readouterr()
    return code, out, err


CHART = Path(__file__).parents[2] / "charts" / "ecr-ptc-webhook"


def configmap_keys() -> set[str]:
    """The top-level keys of the config.yaml that templates/configmap.yaml renders from the values."""
    template = (CHART / "templates" / "configmap.yaml").read_text(encoding="utf-8")
    block = template.split("config.yaml: |", 1)[1]
    return set(re.findall(r"^    ([A-Za-z]+):", block, flags=re.MULTILINE))


def validate_against_chart_schema(values: dict[str, Any]) -> None:
    """values.schema.json, as `helm install` checks it."""
    jsonschema.validate(values, json.loads((CHART / "values.schema.json").read_text(encoding="utf-8")))


def test_values_carry_every_webhook_key_the_chart_renders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    webhook = {"dryRun": True, "digests": "skip", "rules": "discover", "rulesRefreshSeconds": 60, "verify": True}
    path.write_text(yaml.safe_dump({**CONFIG, **webhook, "verifyBudgetSeconds": 0.25}), encoding="utf-8")
    code, out, _ = run(capsys, "values", "--config", str(path))
    assert code == 0
    values = yaml.safe_load(out)
    assert values == {
        "registry": REGISTRY,
        "upstreams": [],
        "tiers": ["quay", "docker-hub"],
        "prefixes": {"quay": "quay", "docker-hub": "dockerhub"},
        **webhook,
        "verifyBudgetSeconds": 0.25,
        "pullSecrets": "keep",
        "movingTags": "keep",
        "exclude": [],
        "include": [],
    }
    assert set(values) == configmap_keys()
    validate_against_chart_schema(values)


def test_values_default_keys_validate_against_the_chart_schema(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = yaml.safe_load(run(capsys, "values", "--config", str(config_file))[1])
    assert set(values) == configmap_keys()
    validate_against_chart_schema(values)
    assert (values["dryRun"], values["rules"], values["verify"]) == (False, "static", False)


def test_webhook_policy_follows_discover_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "rules": "discover", "verify": True}), encoding="utf-8")
    code, out, _ = run(capsys, "webhook-policy", "--config", str(path))
    assert code == 0
    statements = {statement["Sid"]: statement for statement in json.loads(out)["Statement"]}
    assert statements["EcrPtcWebhookDiscoverRules"]["Action"] == "ecr:DescribePullThroughCacheRules"
    assert statements["EcrPtcWebhookLogin"]["Action"] == "ecr:GetAuthorizationToken"
    assert statements["EcrPtcWebhookVerify"]["Action"] == [
        "ecr:BatchGetImage",
        "ecr:BatchImportUpstreamImage",
        "ecr:CreateRepository",
    ]
    assert statements["EcrPtcWebhookVerify"]["Resource"] == [
        "arn:aws:ecr:eu-west-1:123456789012:repository/quay/*",
        "arn:aws:ecr:eu-west-1:123456789012:repository/dockerhub/*",
    ]
    path.write_text(yaml.safe_dump({**CONFIG, "rules": "discover"}), encoding="utf-8")
    code, out, _ = run(capsys, "webhook-policy", "--config", str(path))
    assert [statement["Sid"] for statement in json.loads(out)["Statement"]] == ["EcrPtcWebhookDiscoverRules"]


def test_webhook_policy_is_empty_for_a_static_unverified_webhook(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "webhook-policy", "--config", str(config_file))
    assert (code, out) == (0, "")
    assert "needs no IAM policy" in err


@pytest.mark.usefixtures("fake")
def test_plan_prints_the_webhook_policy_when_it_calls_aws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "verify": True}), encoding="utf-8")
    out = run(capsys, "plan", "--config", str(path))[1]
    assert "The webhook's ServiceAccount role needs this identity policy (also: `provision webhook-policy`):" in out


def test_apply_adopt_flag_takes_over_a_hand_made_template(
    config_file: Path, fake: FakeEcr, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.templates["quay"] = CreationTemplate("quay", "hand-made", ("PULL_THROUGH_CACHE",), "MUTABLE", None)
    code, _, err = run(capsys, "apply", "--config", str(config_file))
    assert code == 2
    assert "re-run with --adopt" in err
    code, out, _ = run(capsys, "plan", "--config", str(config_file), "--adopt")
    assert code == 0
    assert "~ update repository creation template quay/" in out.splitlines()
    code, out, _ = run(capsys, "apply", "--config", str(config_file), "--adopt")
    assert code == 0
    assert fake.templates["quay"].description.startswith("Managed by ecr-ptc-webhook (adopted: template): ")
    code, out, _ = run(capsys, "destroy", "--config", str(config_file), "--yes")
    assert "quay" in fake.templates
    assert "! left in place: repository creation template quay/ existed before ecr-ptc-webhook adopted it" in out


def test_node_policy_is_offline_json(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "node-policy", "--config", str(config_file))
    assert code == 0
    statements = json.loads(out)["Statement"]
    assert statements[1]["Resource"] == [
        "arn:aws:ecr:eu-west-1:123456789012:repository/quay/*",
        "arn:aws:ecr:eu-west-1:123456789012:repository/dockerhub/*",
    ]


@pytest.mark.usefixtures("fake")
def test_plan_prints_a_diff_and_detailed_exit_code(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--config", str(config_file))
    assert code == 0
    lines = out.splitlines()
    assert lines[:4] == [
        "+ create repository creation template quay/",
        "    appliedFor: PULL_THROUGH_CACHE",
        "    imageTagMutability: MUTABLE",
        "    lifecyclePolicy: expire images 30 days after caching (sinceImagePushed)",
    ]
    assert "+ create pull-through cache rule dockerhub (registry-1.docker.io -> dockerhub/)" in lines
    assert "Plan: 4 to create, 0 to update, 0 to delete, 0 unchanged." in lines
    assert "Node roles in the cluster accounts need this identity policy (also: `provision node-policy`):" in lines
    assert run(capsys, "plan", "--config", str(config_file), "--detailed-exitcode")[0] == 3


def test_apply_prints_what_it_did_and_is_idempotent(
    config_file: Path, fake: FakeEcr, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "apply", "--config", str(config_file))
    assert code == 0
    assert "+ created pull-through cache rule quay (quay.io -> quay/)" in out.splitlines()
    assert "Apply complete: 4 created, 0 updated, 0 deleted, 0 unchanged." in out
    assert len(fake.rules) == 2
    code, out, _ = run(capsys, "apply", "--config", str(config_file))
    assert "Apply complete: 0 created, 0 updated, 0 deleted, 4 unchanged." in out
    assert run(capsys, "plan", "--config", str(config_file), "--detailed-exitcode")[0] == 0


def test_destroy_needs_yes(config_file: Path, fake: FakeEcr, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "apply", "--config", str(config_file))
    code, out, _ = run(capsys, "destroy", "--config", str(config_file))
    assert code == 0
    assert "Nothing deleted: re-run with --yes to delete the above." in out
    assert len(fake.rules) == 2
    code, out, _ = run(capsys, "destroy", "--config", str(config_file), "--yes")
    assert "- deleted repository creation template dockerhub/" in out.splitlines()
    assert fake.rules == {}


def test_verify_exit_code(config_file: Path, fake: FakeEcr, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "apply", "--config", str(config_file))
    code, out, _ = run(capsys, "verify", "--config", str(config_file))
    assert (code, out.splitlines()[-1]) == (0, "All checks passed.")
    fake.invalid_rules["dockerhub"] = "401 Unauthorized"
    code, out, _ = run(capsys, "verify", "--config", str(config_file))
    assert code == 1
    assert "FAIL ValidatePullThroughCacheRule dockerhub: 401 Unauthorized; check the secret" in out


def test_errors_are_one_line_and_exit_2(config_file: Path, fake: FakeEcr, capsys: pytest.CaptureFixture[str]) -> None:
    fake.credentials.clear()
    code, out, err = run(capsys, "plan", "--config", str(config_file))
    assert (code, out) == (2, "")
    assert err == "ecr-ptc-webhook provision: secret ecr-pullthroughcache/docker-hub not found\n"
    code, _, err = run(capsys, "apply", "--config", str(config_file), "--region", "us-east-1")
    assert code == 2
    assert "--region us-east-1 disagrees with the registry host" in err


def test_bad_provision_section_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "provision": {"lifecycleDays": "thirty"}}), encoding="utf-8")
    code, _, err = run(capsys, "values", "--config", str(path))
    assert code == 2
    assert f"{path}: config key `provision.lifecycleDays`" in err
