"""Huge inputs are streamed: memory stays flat from a few hundred to 20,000 documents or List items."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
from audit.audit_support import REPO, write_config

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

MEASURE = (
    "import resource, sys\n"
    "from webhook.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "sys.stderr.write(f'maxrss={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n')\n"
    "sys.exit(code)\n"
)
FLAT_KB = 10 * 1024
"""Allowed growth of peak memory over 100x the documents; loading 20,000 whole would add about 70 MB."""


def helm_like(path: Path, count: int) -> Path:
    with path.open("w", encoding="utf-8") as stream:
        for index in range(count):
            stream.write(
                f"---\n# Source: app/templates/deployment-{index}.yaml\napiVersion: apps/v1\nkind: Deployment\n"
                f"metadata:\n  name: app-{index}\n  namespace: ns-{index % 50}\n  labels: {{app: app-{index}}}\n"
                f"spec:\n  replicas: 3\n  template:\n    metadata:\n      labels: {{app: app-{index}}}\n    spec:\n"
                f"      initContainers:\n        - name: init\n          image: quay.io/org/init:{index % 7}\n"
                f'      containers:\n        - name: app\n          image: "nginx:1.{index % 30}"\n'
                f"          env: [{{name: A, value: '1'}}]\n"
                "        - name: sidecar\n          image: registry.k8s.io/pause:3.9\n"
            )
    return path


def kubectl_list(path: Path, count: int) -> Path:
    pod = {"containers": [{"name": "app", "image": "quay.io/org/app:1"}, {"name": "proxy", "image": "nginx:1"}]}
    items = (
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": f"a{index}"},
            "spec": {"template": {"spec": pod}},
        }
        for index in range(count)
    )
    with path.open("w", encoding="utf-8") as stream:
        stream.write('{\n    "apiVersion": "v1",\n    "items": [\n')
        for index, item in enumerate(items):
            stream.write(("," if index else "") + json.dumps(item, indent=4) + "\n")
        stream.write('    ],\n    "kind": "List",\n    "metadata": {"resourceVersion": ""}\n}\n')
    return path


def audit_peak(config: Path, manifest: Path) -> tuple[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, "audit", "--config", str(config), "-f", str(manifest)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        timeout=300,
    )
    peak = int(result.stderr.strip().rpartition("maxrss=")[2])
    return result.stdout, peak


@pytest.mark.integration
@pytest.mark.parametrize(("write", "occurrences"), [(helm_like, 3), (kubectl_list, 2)])
def test_memory_stays_flat_from_200_to_20000_objects(
    tmp_path: Path, write: Callable[[Path, int], Path], occurrences: int
) -> None:
    config = write_config(tmp_path)
    small_out, small_peak = audit_peak(config, write(tmp_path / "small", 200))
    big_out, big_peak = audit_peak(config, write(tmp_path / "big", 20_000))
    assert "200 pod specs" in small_out
    assert f"20000 pod specs, {20_000 * occurrences} image occurrences" in big_out
    print(f"{write.__name__}: peak RSS {small_peak} KB for 200 objects, {big_peak} KB for 20000")  # noqa: T201
    assert big_peak - small_peak < FLAT_KB
