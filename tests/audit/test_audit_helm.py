"""Real ``helm template`` output, from a chart the test writes: audit it, rewrite it, and render nothing but images."""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from audit.audit_support import REGISTRY, Cli, audit_rules, cli_fixture, write_config
from repository import tool

if TYPE_CHECKING:
    from pathlib import Path

CHART_YAML = "apiVersion: v2\nname: shop\nversion: 0.1.0\nappVersion: '2.1'\n"
VALUES = """\
# Images of the shop. The platform team's webhook does not rewrite application charts.
web:
  image: quay.io/shop/web   # tag from appVersion
worker:
  image: docker.io/library/python:3.12-slim
report:
  image: ghcr.io/shop/report:1
"""
TEMPLATES = {
    "deployment.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
  labels:
    app.kubernetes.io/name: web   # selector label
spec:
  selector:
    matchLabels: {app.kubernetes.io/name: web}
  template:
    metadata:
      labels: {app.kubernetes.io/name: web}
    spec:
      initContainers:
        - name: wait
          image: "registry.k8s.io/e2e-test-images/busybox:1.36.1-1"
      containers:
        - name: web
          image: "{{ .Values.web.image }}:{{ .Chart.AppVersion }}"
          ports:
            - containerPort: 8080   # the app's port
        - name: worker
          image: {{ .Values.worker.image | quote }}
""",
    "cronjob.yaml": """\
apiVersion: batch/v1
kind: CronJob
metadata:
  name: {{ .Release.Name }}-report
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
            - name: report
              image: {{ .Values.report.image }}
""",
    "service.yaml": """\
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-web
spec:
  ports: [{port: 80, targetPort: 8080}]
""",
    "migrate-job.yaml": """\
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-migrate
  annotations:
    helm.sh/hook: pre-upgrade
spec:
  template:
    metadata:
      annotations:
        ecr-ptc-webhook/rewrite: disabled
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: quay.io/shop/migrate:2.1
""",
}

cli = cli_fixture()


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    chart = tmp_path / "shop"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(CHART_YAML, encoding="utf-8")
    (chart / "values.yaml").write_text(VALUES, encoding="utf-8")
    for name, text in TEMPLATES.items():
        (chart / "templates" / name).write_text(text, encoding="utf-8")
    result = subprocess.run(
        [tool("helm"), "template", "prod", str(chart), "--namespace", "shop"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    path = tmp_path / "rendered.yaml"
    path.write_text(result.stdout, encoding="utf-8")
    return path


def images(text: str) -> list[str]:
    found: list[str] = []
    for document in yaml.safe_load_all(text):
        if not isinstance(document, dict):
            continue
        spec: Any = document.get("spec", {})
        if document["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        pod = spec.get("template", {}).get("spec", {})
        found.extend(
            container["image"] for field in ("initContainers", "containers") for container in pod.get(field, [])
        )
    return found


@pytest.mark.integration
def test_audit_of_helm_template_output(cli: Cli, rendered: Path) -> None:
    config = write_config(rendered.parent)
    code, out, _ = cli("audit", "--config", str(config), "-f", str(rendered), "--output", "json")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted((line["kind"], line["name"], line["container"], line["reason"]) for line in lines) == [
        ("CronJob", "prod-report", "report", "tier-disabled"),
        ("Deployment", "prod-web", "wait", "rewritten"),
        ("Deployment", "prod-web", "web", "rewritten"),
        ("Deployment", "prod-web", "worker", "tier-disabled"),
        ("Job", "prod-migrate", "migrate", "pod-opted-out"),
    ]
    assert all(line["source"].startswith(f"{rendered}:") for line in lines)
    text = rendered.read_text(encoding="utf-8").splitlines()
    for line in lines:  # each source line is where its object starts, just below helm's `# Source:` comment
        number = int(line["source"].rpartition(":")[2])
        assert text[number - 1] == "apiVersion: batch/v1" or text[number - 1] == "apiVersion: apps/v1"
        assert text[number - 2].startswith("# Source: shop/templates/")


@pytest.mark.integration
def test_rewrite_of_helm_template_output_through_stdin(cli: Cli, rendered: Path) -> None:
    config = write_config(rendered.parent)
    original = rendered.read_text(encoding="utf-8")
    code, out, err = cli("rewrite", "--config", str(config), "-f", "-", stdin=original)
    assert code == 0
    assert (
        err.splitlines()[-1] == "ecr-ptc-webhook rewrite: rewrote 2 images in 1 of 1 files"
    )  # after the note on ServiceAccounts not in the input
    rules = audit_rules()
    expected = {image: rules.decide(image).result for image in images(original)}
    expected["quay.io/shop/migrate:2.1"] = "quay.io/shop/migrate:2.1"  # the migrate Job's pods opt out
    assert images(out) == [expected[image] for image in images(original)]
    assert set(images(out)) - set(images(original)) == {
        f"{REGISTRY}/k8s/e2e-test-images/busybox:1.36.1-1",
        f"{REGISTRY}/quay/shop/web:2.1",
    }
    assert [line for line in out.splitlines() if line.startswith("# Source:")] == [
        line for line in original.splitlines() if line.startswith("# Source:")
    ]
    assert "ports: [{port: 80, targetPort: 8080}]" in out
    assert "- containerPort: 8080   # the app's port" in out
    assert out.replace(f"{REGISTRY}/k8s/", "registry.k8s.io/").replace(f"{REGISTRY}/quay/", "quay.io/") == original


@pytest.mark.integration
def test_rewritten_helm_output_passes_check(cli: Cli, rendered: Path) -> None:
    config = write_config(rendered.parent)
    assert cli("rewrite", "--config", str(config), "-f", str(rendered), "--check")[0] == 1
    assert cli("rewrite", "--config", str(config), "-f", str(rendered), "-i")[0] == 0
    assert cli("rewrite", "--config", str(config), "-f", str(rendered), "--check")[0] == 0
