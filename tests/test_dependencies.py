"""Every library our packages import is a declared runtime dependency, and dev-only ones stay out of them."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("keys", "issuer", "mcp_server", "orchestrator")
# Distributions that install a module under a meta-distribution's name: `fastmcp` installs `fastmcp-slim`.
DECLARED_AS = {"fastmcp-slim": "fastmcp"}


def _name(requirement: str) -> str:
    name = re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0].lower().replace("_", "-")
    return DECLARED_AS.get(name, name)


def declared() -> tuple[set[str], set[str]]:
    """The runtime dependencies and the dev group of pyproject.toml, as normalized distribution names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = {_name(r) for r in project["project"]["dependencies"]}
    dev = {_name(r) for r in project["dependency-groups"]["dev"]}
    return runtime, dev


def imported_libraries() -> dict[str, set[str]]:
    """Top-level modules outside the standard library and our packages -> the files importing them."""
    found: dict[str, set[str]] = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in PACKAGES:
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_library_is_a_declared_runtime_dependency() -> None:
    runtime, _ = declared()
    distributions = importlib.metadata.packages_distributions()
    undeclared = {}
    for module, files in sorted(imported_libraries().items()):
        providers = {_name(d) for d in distributions.get(module, [])}
        assert providers, f"{module} is imported but not installed"
        if not providers & runtime:
            undeclared[module] = sorted(files)
    assert undeclared == {}


def test_dev_only_libraries_are_not_imported_by_our_packages() -> None:
    runtime, dev = declared()
    distributions = importlib.metadata.packages_distributions()
    dev_only = dev - runtime
    used = {
        module
        for module in imported_libraries()
        if {_name(d) for d in distributions.get(module, [])} & dev_only
    }
    assert used == set()
    assert "joserfc" in dev_only  # the tests and benchmarks compare against it; the product never uses it
