"""docs/configuration.md, generated from the settings classes: every setting, its type, default and readers.

`python -m orchestrator._commands._configuration docs/configuration.md` rewrites the file; a test fails
when the file and the classes differ. Every `BaseSettings` class in our packages is found by importing
them, so a new setting appears here (and must say what it does) without touching this module.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

__all__ = ["PACKAGES", "Setting", "render", "settings", "settings_classes"]

PACKAGES = ("keys", "issuer", "mcp_server", "orchestrator")
# Who reads a class, by the module it lives in; the first listed reader of a setting describes it.
_READERS = (
    ("issuer.", "issuer"),
    ("mcp_server.", "MCP server"),
    ("orchestrator._call.", "agent worker"),
    ("orchestrator._logs.", "log set-up of every part"),
    ("orchestrator._commands.", "command line"),
)

_HEADER = """\
# Configuration

Every setting is an environment variable, read once when a part starts into a validated settings object;
names are case-insensitive. `voicebank doctor` checks a configuration against the running services.

This page is generated from the settings classes by
`python -m orchestrator._commands._configuration docs/configuration.md`; edit the classes, not this page
(`tests/test_configuration.py` fails when the two differ).
"""


@dataclass(frozen=True)
class Setting:
    """One environment variable as one settings class reads it."""

    name: str
    type: str
    default: str
    reader: str
    description: str


def settings_classes() -> list[type[BaseSettings]]:
    """Every settings class defined in our packages, in a stable order."""
    found: dict[str, type[BaseSettings]] = {}
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, package_name + "."):
            if info.name.endswith("__main__"):
                continue  # running it is not importing it
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if (
                    isinstance(value, type)
                    and issubclass(value, BaseSettings)
                    and value is not BaseSettings
                    and value.__module__ == info.name
                ):
                    found[f"{info.name}.{value.__qualname__}"] = value
    return [found[name] for name in sorted(found, key=lambda n: (_reader_rank(n), n))]


def _reader_rank(qualified: str) -> int:
    return next((i for i, (prefix, _) in enumerate(_READERS) if qualified.startswith(prefix)), len(_READERS))


def reader(cls: type[BaseSettings]) -> str:
    module = cls.__module__ + "."
    for prefix, name in _READERS:
        if module.startswith(prefix):
            if name == "command line":
                return f"`voicebank {cls.__module__.rsplit('._', 1)[-1].replace('_', '-')}`"
            return name
    return cls.__module__


def _env_name(cls: type[BaseSettings], name: str, field: FieldInfo) -> str:
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        alias = next((choice for choice in alias.choices if isinstance(choice, str)), None)
    if isinstance(alias, str):
        return alias.upper()
    return (str(cls.model_config.get("env_prefix") or "") + name).upper()


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{value}`" for value in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        kept = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return " \\| ".join(_type_name(arg) for arg in kept)
    names = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "true/false",
        Path: "path",
        SecretStr: "secret",
    }
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _bounds(field: FieldInfo) -> str:
    # pydantic keeps `Field(gt=..., le=...)` as annotated-types constraints, each with its one attribute.
    signs = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}
    parts = [
        f"{sign} {getattr(item, name)}"
        for item in field.metadata
        for name, sign in signs.items()
        if getattr(item, name, None) is not None
    ]
    return (", " + ", ".join(parts)) if parts else ""


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "computed"
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, Path) and not value.is_absolute():
        return f"`./{value.as_posix()}`"
    return f"`{value}`"


def settings() -> Iterator[Setting]:
    """Every (class, field) pair as a documented setting, owners first."""
    for cls in settings_classes():
        for name, field in cls.model_fields.items():
            yield Setting(
                name=_env_name(cls, name, field),
                type=_type_name(field.annotation) + _bounds(field),
                default=_default(field),
                reader=reader(cls),
                description=" ".join((field.description or "").split()),
            )


def _what_it_does(readings: list[Setting]) -> str:
    """The owner's sentence; each reader's own when they say different things."""
    said = dict.fromkeys(reading.description for reading in readings)
    if len(said) == 1:
        return readings[0].description
    by_reader = dict.fromkeys((reading.reader, reading.description) for reading in readings)
    return "<br>".join(f"**{reader.strip('`')}**: {description}" for reader, description in by_reader)


def render() -> str:
    """The whole page."""
    by_name: dict[str, list[Setting]] = {}
    for setting in settings():
        by_name.setdefault(setting.name, []).append(setting)
    sections: dict[str, list[list[Setting]]] = {}
    for readings in by_name.values():
        sections.setdefault(readings[0].reader, []).append(readings)
    out = [_HEADER]
    for owner, groups in sections.items():
        out.append(f"## Read by the {owner}\n" if not owner.startswith("`") else f"## Read by {owner}\n")
        out.append("| setting | type | default | also read by | what it does |")
        out.append("|---|---|---|---|---|")
        for readings in sorted(groups, key=lambda group: group[0].name):
            first = readings[0]
            others = ", ".join(dict.fromkeys(r.reader for r in readings if r.reader != first.reader)) or "—"
            out.append(
                f"| `{first.name}` | {first.type} | {first.default} | {others} | {_what_it_does(readings)} |"
            )
        out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    """Write the page to the path given, or print it."""
    text = render()
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
