"""The container image, without a Docker engine: hadolint, the build context, and what the final stage runs.

The image is built elsewhere (CI with a Docker engine, a developer's machine); here we check what would make that
build or the running pod fail: a COPY of something the context leaves out, an unpinned base or dependency, root,
an installer left in the final stage, a command line that differs from the chart's.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest
import yaml
from repository import SERVE_ARGS, tool

REPO: Final = Path(__file__).resolve().parents[2]
DOCKERFILE: Final = REPO / "Dockerfile"


# --- a small Dockerfile reader ---------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def arguments(self, instruction: str) -> list[str]:
        return [arguments for name, arguments in self.instructions if name == instruction]


def stages() -> list[Stage]:
    """The Dockerfile's stages, each with its instructions (continuations joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    result: list[Stage] = []
    for line in logical:
        if not line.strip():
            continue
        instruction, _, arguments = line.strip().partition(" ")
        instruction, arguments = instruction.upper(), arguments.strip()
        if instruction == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(words[0], name))
        else:
            assert result, f"Dockerfile: {instruction} before the first FROM"
            result[-1].instructions.append((instruction, arguments))
    return result


def exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"expected the exec (JSON) form, got {arguments}"
    return [str(item) for item in value]


def copied_sources() -> list[str]:
    """Every path a COPY or ADD takes from the build context (not from another stage)."""
    sources = []
    for stage in stages():
        for instruction, arguments in stage.instructions:
            if instruction not in {"COPY", "ADD"}:
                continue
            words = exec_form(arguments) if arguments.startswith("[") else shlex.split(arguments)
            flags = [word for word in words if word.startswith("--")]
            if any(flag.startswith("--from=") for flag in flags):
                continue
            paths = [word for word in words if not word.startswith("--")]
            sources.extend(paths[:-1])
    return sources


def ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (is an exception, regex), in order: the last pattern that matches decides."""
    patterns = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = line.removeprefix("!").strip().strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        patterns.append((exception, re.compile(regex)))
    return patterns


def in_context(path: str) -> bool:
    """Whether the build context sends this file (Docker: a pattern matching a parent directory matches too)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for exception, regex in ignore_patterns():
        if any(regex.fullmatch(candidate) for candidate in candidates):
            included = exception
    return included


# --- tests -----------------------------------------------------------------------------------------------------


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--config", str(REPO / ".hadolint.yaml"), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_the_build_context_holds_everything_the_dockerfile_copies() -> None:
    sources = copied_sources()
    assert sources, "the Dockerfile copies nothing from the context"
    for source in sources:
        path = REPO / source
        assert path.exists(), f"Dockerfile copies {source}, which is not in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        wanted = [f.relative_to(REPO).as_posix() for f in files if "__pycache__" not in f.parts]
        assert wanted, f"Dockerfile copies {source}, which is empty"
        left_out = [name for name in wanted if not in_context(name)]
        assert left_out == [], f".dockerignore leaves out files the Dockerfile copies from {source}"


def test_the_build_context_leaves_out_everything_else() -> None:
    # Virtualenvs, tools and git history would make every build upload gigabytes.
    for name in [".venv/bin/python", ".tools/bin/helm", ".git/HEAD", "tests/conftest.py", "charts/ecr-ptc-webhook"]:
        assert not in_context(name), name
    assert not in_context("webhook/__pycache__/cli.cpython-311.pyc")


def test_the_package_metadata_the_build_reads_is_copied() -> None:
    # hatchling needs the readme pyproject.toml names; the install needs the pinned constraints.
    project = (REPO / "pyproject.toml").read_text()
    readme = re.search(r'^readme\s*=\s*"([^"]+)"', project, re.MULTILINE)
    assert readme
    assert {"pyproject.toml", "constraints.txt", readme[1], "webhook/"} <= set(copied_sources())


def test_multi_stage_with_a_pinned_slim_python_base() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2, "build tools stay in a build stage"
    for stage in all_stages:
        assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+", stage.base), f"unpinned base image {stage.base}"
    # The venv copied from the build stage points at the interpreter of the same image.
    assert len({stage.base for stage in all_stages}) == 1


def test_dependencies_come_from_the_constraints_file() -> None:
    build = stages()[0]
    installs = [run for run in build.arguments("RUN") if "pip install" in run]
    assert installs
    assert all("--constraint constraints.txt" in run for run in installs)
    # boto3 for `rules: discover` and `verify: true`, which the chart can switch on.
    assert any('"$1[aws]"' in run for run in installs)


def test_the_final_stage_runs_the_webhook_as_non_root() -> None:
    final = stages()[-1]
    (user,) = final.arguments("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), "a numeric UID lets the kubelet check runAsNonRoot"
    assert int(uid) != 0
    assert not gid or int(gid) != 0
    (entrypoint,) = final.arguments("ENTRYPOINT")
    assert exec_form(entrypoint) == ["ecr-ptc-webhook"]
    (command,) = final.arguments("CMD")
    assert exec_form(command) == SERVE_ARGS
    assert final.arguments("EXPOSE") == ["8443"]


def test_the_final_stage_installs_and_builds_nothing() -> None:
    final = stages()[-1]
    runs = " && ".join(final.arguments("RUN"))
    assert not re.search(r"\b(pip|apt-get|apt|apk)\b[^&;]*\binstall\b", runs), runs
    assert not re.search(r"\b(gcc|make|build-essential)\b", runs), runs
    assert "pip uninstall" in runs, "the base image's installer goes too"
    copies = final.arguments("COPY")
    assert copies
    assert all(copy.startswith("--from=") for copy in copies), "the final stage takes only the built venv"


def test_the_chart_runs_the_image_as_the_dockerfile_expects() -> None:
    values = yaml.safe_load((REPO / "charts" / "ecr-ptc-webhook" / "values.yaml").read_text())
    (user,) = stages()[-1].arguments("USER")
    assert values["podSecurityContext"]["runAsUser"] == int(user.partition(":")[0])
    assert values["containerPort"] == int(SERVE_ARGS[-1])


@pytest.mark.integration
def test_constraints_pin_every_package_the_image_installs(tmp_path: Path) -> None:
    constraints = REPO / "constraints.txt"
    if not constraints.exists():
        pytest.fail("constraints.txt is missing: the Dockerfile installs with --constraint constraints.txt")
    pinned = {}
    for line in constraints.read_text().splitlines():
        name, separator, version = line.split("#", 1)[0].strip().partition("==")
        if separator:
            pinned[re.sub(r"[-_.]+", "-", name).lower()] = version.split(";", 1)[0].strip()
    assert "hatchling" in pinned, "the build backend the Dockerfile installs is pinned too"

    report = tmp_path / "report.json"
    # What the Dockerfile's `pip install --constraint constraints.txt` resolves, without installing it.
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
    subprocess.run(
        [*pip, "--report", str(report), "--constraint", str(constraints), f"{REPO}[aws]"],
        check=True,
        timeout=600,
    )
    resolved = {
        re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert resolved.pop("ecr-ptc-webhook")
    assert {"fastapi", "uvicorn", "cryptography", "boto3", "httpx"} <= set(resolved)
    unpinned = {name: version for name, version in resolved.items() if pinned.get(name) != version}
    assert unpinned == {}, "constraints.txt does not pin these runtime dependencies"
