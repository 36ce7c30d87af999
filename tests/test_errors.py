"""One error root per package, and no two error classes of a package share a code.

A caller catches one class per package, and logs and metrics tell errors apart by `code`. Private exception
classes (leading underscore) are control flow inside one module and never leave it, so they are not counted.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import issuer
import keys
import mcp_server
import orchestrator
from issuer import IssuerError
from keys import KeysError
from mcp_server import McpServerError
from orchestrator import OrchestratorError

ROOTS: dict[ModuleType, type[Exception]] = {
    keys: KeysError,
    issuer: IssuerError,
    mcp_server: McpServerError,
    orchestrator: OrchestratorError,
}


def error_classes(package: ModuleType) -> list[type[BaseException]]:
    """The public exception classes defined anywhere in `package` (every module is imported)."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.endswith("__main__"):
            continue  # running it is not importing it
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == info.name
                and not name.startswith("_")
            ):
                found[f"{info.name}.{name}"] = value
    return [found[name] for name in sorted(found)]


@pytest.mark.parametrize("package", list(ROOTS), ids=lambda p: p.__name__)
def test_every_error_is_under_the_package_root(package: ModuleType) -> None:
    classes = error_classes(package)
    assert ROOTS[package] in classes
    outside = [cls.__qualname__ for cls in classes if not issubclass(cls, ROOTS[package])]
    assert outside == []


@pytest.mark.parametrize("package", list(ROOTS), ids=lambda p: p.__name__)
def test_every_error_has_a_code_of_its_own(package: ModuleType) -> None:
    by_code: dict[str, list[str]] = {}
    for cls in error_classes(package):
        code = cls.__dict__.get("code")
        assert isinstance(code, str), f"{cls.__qualname__} defines no code of its own"
        assert code
        by_code.setdefault(code, []).append(cls.__qualname__)
    shared = {code: names for code, names in by_code.items() if len(names) > 1}
    assert shared == {}


def test_an_outage_is_not_a_bad_token() -> None:
    # The MCP server must be able to answer 503 for an outage and 401 for a bad token.
    assert not issubclass(keys.KeysUnavailable, keys.TokenError)
    assert issubclass(keys.KeysUnavailable, KeysError)
