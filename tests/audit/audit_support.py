"""What the audit and rewrite tests share: a config with some tiers off, running the CLI, real tools."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any, Final, Protocol

import pytest
import yaml

from webhook.cli import main
from webhook.core.config import parse_config
from webhook.core.rules import Rules

REPO: Final = Path(__file__).resolve().parents[2]
FIXTURES: Final = Path(__file__).resolve().parent / "fixtures"
REGISTRY: Final = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
CONFIG: Final = {"registry": REGISTRY, "tiers": ["quay", "k8s"]}
"""quay and k8s on; docker-hub, ghcr and gitlab off, so audits have something left to cover."""


class Cli(Protocol):
    """The ``cli`` fixture: run the command line in process."""

    def __call__(self, *argv: str, stdin: str | None = None) -> tuple[int, str, str]: ...


def audit_rules() -> Rules:
    return Rules(parse_config(CONFIG))


def write_config(directory: Path) -> Path:
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    return path


def run_cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *argv: str,
    stdin: str | None = None,
) -> tuple[int, str, str]:
    """``ecr-ptc-webhook ARGV`` in process, with ``stdin`` as standard input; returns (code, stdout, stderr)."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8"))
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cli_fixture() -> Any:
    """The ``cli`` fixture, for a module to bind: ``cli = cli_fixture()`` (a nested conftest.py would clash in mypy).

    ``cli(*argv, stdin=None) -> (code, stdout, stderr)`` runs ``ecr-ptc-webhook ARGV`` in process.
    """

    @pytest.fixture(name="cli")
    def fixture(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
        def run(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
            return run_cli(capsys, monkeypatch, *argv, stdin=stdin)

        return run

    return fixture
