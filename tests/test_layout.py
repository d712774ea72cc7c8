"""The package's folders name its parts, and every module belongs to one (see webhook/__init__.py, .importlinter)."""

from __future__ import annotations

import ast
import configparser
import importlib

from repository import REPO

PARTS = ("cli", "serve", "cache", "audit", "provision", "core")
SHARED = {"__init__.py", "config.py", "certs.py", "exceptions.py", "logs.py"}
PACKAGE = REPO / "webhook"


def test_every_module_is_in_a_part_or_shared() -> None:
    top_level = {path.name for path in PACKAGE.glob("*.py")}
    folders = {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert top_level == SHARED, "a new top-level module belongs in a part (core, serve, cache, audit, provision, cli)"
    assert folders == set(PARTS)


def test_each_part_says_what_it_is_and_what_it_may_import() -> None:
    for part in PARTS:
        docstring = ast.get_docstring(ast.parse((PACKAGE / part / "__init__.py").read_text(encoding="utf-8")))
        assert docstring, part
        assert "import" in docstring, f"webhook/{part}/__init__.py should say what the part may import"


def test_import_contracts_name_parts_not_modules() -> None:
    contracts = configparser.ConfigParser()
    contracts.read(REPO / ".importlinter")
    layers = contracts["importlinter:contract:parts"]["layers"].split()
    named = {name.removeprefix("webhook.") for name in layers if name != "|"}
    assert named == set(PARTS)
    pure = contracts["importlinter:contract:pure-core"]["source_modules"].split()
    assert "webhook.core" in pure


def test_the_core_config_model_loads_no_files() -> None:
    # The core reads a Config; reading files, the environment and flags is webhook.config, an edge.
    module = importlib.import_module("webhook.core.config")
    assert not hasattr(module, "load_config")
    tree = ast.parse((PACKAGE / "core" / "config.py").read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"yaml", "os", "pathlib", "webhook.provision.settings", "webhook.config"}
