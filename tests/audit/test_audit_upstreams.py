"""``audit`` and ``rewrite`` with the new tiers: chainguard and the config's own ``upstreams`` are counted per tier,
and a disabled one says what enabling it takes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml
from audit.audit_support import REGISTRY, Cli, cli_fixture
from provision.provision_fakes import CENTRAL, NEW_KINDS

if TYPE_CHECKING:
    from pathlib import Path

cli = cli_fixture()

CONFIG = {"registry": REGISTRY, "upstreams": NEW_KINDS["upstreams"], "tiers": ["quay", "acme-acr"]}
MANIFEST = f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: shop}}
spec:
  template:
    spec:
      containers:
        - {{name: app, image: acmecorp.azurecr.io/shop/web:1.0}}
        - {{name: sidecar, image: acmecorp.azurecr.io/shop/proxy:2.0}}
        - {{name: api, image: {CENTRAL}/platform/api:v2}}
        - {{name: fips, image: 111122223333.dkr-ecr-fips.us-east-1.on.aws/platform/api:v2}}
        - {{name: static, image: cgr.dev/chainguard/static:latest}}
        - {{name: other, image: 444455556666.dkr.ecr.us-east-1.amazonaws.com/x:1}}
---
apiVersion: batch/v1
kind: Job
metadata: {{name: once, namespace: shop}}
spec:
  template:
    spec:
      containers:
        - {{name: job, image: acmecorp.azurecr.io/shop/web:1.0}}
"""


def files(tmp_path: Path) -> tuple[str, str]:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    manifest = tmp_path / "app.yaml"
    manifest.write_text(MANIFEST, encoding="utf-8")
    return str(config), str(manifest)


def test_audit_counts_each_new_tier(cli: Cli, tmp_path: Path) -> None:
    config, manifest = files(tmp_path)
    code, out, err = cli("audit", "--config", config, "-f", manifest)
    assert (code, err) == (0, "")
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in out.splitlines()[1:] if line and line[0] != " "}
    assert rows[("acmecorp.azurecr.io", "acme-acr")] == ["2", "2", "3", "-"]
    assert rows[(CENTRAL, "central-ecr")] == ["1", "1", "0", "tier-disabled=1"]
    assert rows[("111122223333.dkr-ecr-fips.us-east-1.on.aws", "central-ecr")] == ["1", "1", "0", "tier-disabled=1"]
    assert rows[("cgr.dev", "chainguard")] == ["1", "1", "0", "tier-disabled=1"]
    assert rows[("444455556666.dkr.ecr.us-east-1.amazonaws.com", "-")] == ["1", "1", "0", "ecr-registry=1"]
    assert (
        "Enable tier central-ecr (another account's registry needs an IAM role for ECR, `customRoleArn`) to cover 2 "
        "more occurrences (images: 2, pod specs: 1)." in out
    )
    assert "Enable tier chainguard (opt-in: needs a Secrets Manager credential) to cover 1 more" in out


def test_rewrite_moves_the_enabled_upstreams_images_only(cli: Cli, tmp_path: Path) -> None:
    config, manifest = files(tmp_path)
    code, out, _ = cli("rewrite", "--config", config, "-f", manifest)
    assert code == 0
    assert out.count(f"{REGISTRY}/acr/shop/web:1.0") == 2
    assert f"{REGISTRY}/acr/shop/proxy:2.0" in out
    assert f"image: {CENTRAL}/platform/api:v2" in out
    assert "cgr.dev/chainguard/static:latest" in out
