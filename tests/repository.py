"""What several test suites know about this repository: where it is, its real tools, and how the image is run."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

import pytest

REPO: Final = Path(__file__).resolve().parents[1]

SERVE_ARGS: Final = [
    "serve",
    "--config",
    "/etc/ecr-ptc-webhook/config.yaml",
    "--tls-cert",
    "/etc/ecr-ptc-webhook/tls/tls.crt",
    "--tls-key",
    "/etc/ecr-ptc-webhook/tls/tls.key",
    "--host",
    "0.0.0.0",  # noqa: S104 (in the pod: the Service and the kubelet's probes reach it on the pod IP)
    "--port",
    "8443",
]
"""The webhook's command in the image (Dockerfile CMD) and in the chart's Deployment: the two must agree."""


def tool(name: str) -> str:
    """A real tool: .tools/bin first (hack/install-tools.sh puts it there), then PATH; never a silent skip."""
    local = REPO / ".tools" / "bin" / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed (neither .tools/bin/{name} nor on PATH): run `bash hack/install-tools.sh`"
        )
    return found
