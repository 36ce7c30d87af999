"""docs/configuration.md is the settings classes, rendered: every setting documented, and the page never
drifts from the code."""

from __future__ import annotations

from pathlib import Path

from issuer import IssuerSettings
from mcp_server import McpSettings
from orchestrator._call._settings import AgentSettings
from orchestrator._call._wiring import ConnectionSettings
from orchestrator._commands._configuration import render, settings, settings_classes

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "configuration.md"


def test_configuration_md_is_the_settings_classes_rendered() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md differs from the settings classes: "
        "run `python -m orchestrator._commands._configuration docs/configuration.md`"
    )


def test_every_settings_class_of_every_part_is_found() -> None:
    assert {IssuerSettings, McpSettings, AgentSettings, ConnectionSettings} <= set(settings_classes())
    documented = {(s.reader, s.name) for s in settings()}
    assert ("MCP server", "MCP_ISSUER_URL") in documented
    assert ("agent worker", "ORCHESTRATOR_STT") in documented  # the field is `stt`: the alias is the name
    assert ("`voicebank token`", "VOICEBANK_MODE") in documented


def test_every_setting_says_what_it_does() -> None:
    undocumented = [f"{s.reader} {s.name}" for s in settings() if len(s.description) < 10]
    assert undocumented == []


def test_a_setting_read_by_several_parts_has_one_type_and_one_default() -> None:
    seen: dict[str, tuple[str, str, str]] = {}
    disagree = []
    for setting in settings():
        first = seen.setdefault(setting.name, (setting.type, setting.default, setting.reader))
        if first[:2] != (setting.type, setting.default):
            disagree.append(
                f"{setting.name}: {first[2]} {first[:2]} but {setting.reader} {setting.type, setting.default}"
            )
    assert disagree == []


def test_secrets_show_no_default_value() -> None:
    secrets = [s for s in settings() if s.type.startswith("secret")]
    assert {s.name for s in secrets} >= {"KEYS_PASSPHRASE", "LIVEKIT_API_SECRET"}
    assert {s.default for s in secrets} == {"unset"}
