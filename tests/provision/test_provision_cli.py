"""``ecr-ptc-webhook provision ...``: output, exit codes and errors, with the FAKE in-memory ECR as the backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from provision.provision_fakes import REGISTRY, FakeEcr, aws_sandbox

from webhook.cli import main
from webhook.provision.aws import AwsBackend

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


def test_values_match_the_chart(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "values", "--config", str(config_file))
    assert code == 0
    assert yaml.safe_load(out) == {
        "registry": REGISTRY,
        "tiers": ["quay", "docker-hub"],
        "prefixes": {"quay": "quay", "docker-hub": "dockerhub"},
    }
    chart = Path(__file__).parents[2] / "charts" / "ecr-ptc-webhook" / "values.yaml"
    if chart.exists():
        assert set(yaml.safe_load(out)) <= set(yaml.safe_load(chart.read_text(encoding="utf-8")))


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
