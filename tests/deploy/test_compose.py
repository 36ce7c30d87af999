"""compose.yaml and the Dockerfile, checked without a Docker engine.

The file is interpolated as Compose would, resolved (anchors and merge keys), validated against the
Compose specification (compose-spec), and then every service's environment is checked against the
settings classes that service actually reads: nothing it needs is missing, nothing set is unread (a
typo), and the URLs, Redis and LiveKit credentials agree across services.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from compose_spec import PyCompose
from pydantic_settings import BaseSettings

from issuer import IssuerSettings
from mcp_server import McpSettings
from orchestrator import AgentSettings, ConnectionSettings
from orchestrator._commands import main
from orchestrator._commands._cli import _parser

ROOT = Path(__file__).resolve().parents[2]
HOST_ENV = {"KEYS_PASSPHRASE": "a-passphrase-for-the-test", "POSTGRES_PASSWORD": "a-database-password"}
_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:[?-])(?P<arg>[^}]*))?\}")


class InterpolationError(Exception):
    pass


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR:?error}` and `$$`."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        value = env.get(name, "")
        if value:
            return value
        if op == ":?":
            raise InterpolationError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return _VARIABLE.sub(one, text)


def env_names(*classes: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads."""
    names: set[str] = set()
    for cls in classes:
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            names.add(alias if isinstance(alias, str) else name.upper())
    return names


def bank_settings_names() -> set[str]:
    return {"BANK_DB_URL"}  # dev-init seeds the bank where the MCP server reads it


READS = {
    "init": env_names(IssuerSettings) | bank_settings_names(),
    "issuer": env_names(IssuerSettings),
    "mcp": env_names(McpSettings) | {"ISSUER_URL"},
    "agent": env_names(AgentSettings, ConnectionSettings),
}
REQUIRED = {
    "issuer": {
        "ISSUER_URL", "MCP_RESOURCE_URL", "REDIS_URL", "KEYS_STORE", "KEYS_PASSPHRASE", "VOICEBANK_MODE",
        "VOICEBANK_STATE", "LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET",
    },
    "mcp": {"MCP_ISSUER_URL", "MCP_RESOURCE_URL", "REDIS_URL", "BANK_DB_URL", "VOICEBANK_STATE"},
    "agent": {
        "ISSUER_URL", "MCP_URL", "REDIS_URL", "LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET",
        "ORCHESTRATOR_CLIENT_KEY", "ORCHESTRATOR_STT", "ORCHESTRATOR_LLM", "ORCHESTRATOR_TTS",
    },
}  # fmt: skip


def role(name: str) -> str:
    return name.split("-")[0]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    text = interpolate((ROOT / "compose.yaml").read_text(), HOST_ENV)
    resolved = yaml.safe_load(text)  # resolves anchors and merge keys as Compose does
    PyCompose.from_json(json.dumps(resolved)).validate()  # the Compose specification's own rules
    services: dict[str, Any] = resolved["services"]
    return services


def test_the_file_needs_its_secrets_from_the_host() -> None:
    text = (ROOT / "compose.yaml").read_text()
    for missing in HOST_ENV:
        with pytest.raises(InterpolationError, match=missing):
            interpolate(text, {k: v for k, v in HOST_ENV.items() if k != missing})


def test_an_invalid_file_is_caught_by_the_schema() -> None:
    # The validator is real: an unknown service key fails.
    with pytest.raises(ValueError, match="bogus"):
        PyCompose.from_json(json.dumps({"services": {"a": {"image": "x", "bogus": 1}}})).validate()


def test_services(compose: dict[str, Any]) -> None:
    expected = {"redis", "postgres", "livekit", "init", "issuer-1", "issuer-2", "mcp-1", "mcp-2", "agent"}
    assert set(compose) == expected
    for name, service in compose.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in compose, f"{name} depends on unknown {dependency}"
        if name != "init":
            assert "healthcheck" in service, f"{name} has no health check"
    assert compose["init"]["restart"] == "no"
    for name in ("issuer-1", "issuer-2", "mcp-1", "mcp-2"):
        assert compose[name]["depends_on"]
    assert compose["livekit"]["command"][:1] == ["--dev"]


def test_every_variable_is_read_and_every_needed_one_is_set(compose: dict[str, Any]) -> None:
    for name, service in compose.items():
        if name in ("redis", "postgres", "livekit"):
            continue
        env = service["environment"]
        unread = set(env) - READS[role(name)]
        assert not unread, f"{name} sets variables nothing reads: {sorted(unread)}"
        missing = REQUIRED.get(role(name), set()) - set(env)
        assert not missing, f"{name} lacks {sorted(missing)}"
        assert all(str(value) for value in env.values()), f"{name} has an empty variable"


def test_services_agree(compose: dict[str, Any]) -> None:
    env = {name: s["environment"] for name, s in compose.items() if "environment" in s}
    issuers = [env["issuer-1"], env["issuer-2"], env["init"]]
    mcps = [env["mcp-1"], env["mcp-2"]]
    issuer_url = {e["ISSUER_URL"] for e in issuers} | {e["MCP_ISSUER_URL"] for e in mcps}
    assert issuer_url == {env["agent"]["ISSUER_URL"]}
    resource = {e["MCP_RESOURCE_URL"] for e in issuers + mcps}
    assert resource == {env["agent"]["MCP_URL"]}
    voicebank = [e for name, e in env.items() if name != "postgres"]
    assert {e["REDIS_URL"] for e in voicebank} == {"redis://redis:6379/0"}
    assert {e["KEYS_STORE"] for e in issuers} == {"redis"}
    assert {e["VOICEBANK_MODE"] for e in issuers} == {"prod"}
    assert len({e["KEYS_PASSPHRASE"] for e in issuers}) == 1
    assert {e["BANK_DB_URL"] for e in mcps} == {env["init"]["BANK_DB_URL"]}
    bank = urlsplit(env["init"]["BANK_DB_URL"])
    database = env["postgres"]
    assert (bank.hostname, bank.username, bank.password, bank.path) == (
        "postgres",
        database["POSTGRES_USER"],
        database["POSTGRES_PASSWORD"],
        "/" + database["POSTGRES_DB"],
    )
    for key in ("LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "LIVEKIT_AGENT_NAME"):
        assert {e[key] for e in [*issuers, env["agent"]]} == {env["agent"][key]}
    assert urlsplit(env["agent"]["LIVEKIT_URL"]).hostname == "livekit"
    assert env["agent"]["ORCHESTRATOR_CLIENT_KEY"].startswith(env["agent"]["VOICEBANK_STATE"])
    # The issuer names the actor of every session grant; the agent must authenticate as that client.
    assert {e["ORCHESTRATOR_CLIENT_ID"] for e in [*issuers, env["agent"]]} == {"orchestrator"}


def test_the_agent_is_dpop_bound_and_the_mcp_servers_require_dpop(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # docs/architecture.md "Sender-constrained tokens": compose registers the orchestrator bound and refuses bearer tokens.
    for name in ("mcp-1", "mcp-2"):
        assert compose[name]["environment"]["MCP_REQUIRE_DPOP"] == "true"
    # The registry is made outside the cluster by the command the file documents: run that very command.
    documented = [
        line.lstrip("# ").split("#", 1)[0].split()
        for line in (ROOT / "compose.yaml").read_text().splitlines()
        if line.lstrip("# ").startswith("voicebank dev-init")
    ]
    assert len(documented) == 1
    argv = documented[0][1:]
    assert argv[argv.index("--state") + 1] == "./deploy"
    argv[argv.index("--state") + 1] = str(tmp_path / "deploy")
    for name in (
        "KEYS_PASSPHRASE",
        "VOICEBANK_STATE",
        "VOICEBANK_MODE",
        "BANK_DB_URL",
        "ISSUER_CLIENTS_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    assert main(argv) == 0
    registry = json.loads((tmp_path / "deploy" / "clients.json").read_text())
    bound = {c["client_id"]: c["dpop_bound_access_tokens"] for c in registry["clients"]}
    assert bound == {"orchestrator": True, "backend": False, "admin": False}


def test_one_setting_name_per_fact() -> None:
    # The issuer and the agent read the orchestrator's client id under one name.
    assert "ORCHESTRATOR_CLIENT_ID" in READS["issuer"] & READS["agent"]
    assert "AGENT_CLIENT_ID" not in set().union(*READS.values())


def test_urls_name_the_aliases_and_ports_the_services_listen_on(compose: dict[str, Any]) -> None:
    parser = _parser()
    listens: dict[str, int] = {}
    for service in compose.values():
        command = service.get("command", [])
        if command[:1] != ["voicebank"]:
            continue
        args = parser.parse_args(command[1:])  # every command is a real `voicebank` command
        if args.command == "up" and args.only in ("issuer", "mcp"):
            (alias,) = service["networks"]["default"]["aliases"]
            listens[alias] = args.issuer_port if args.only == "issuer" else args.mcp_port
            assert args.host == "0.0.0.0"  # noqa: S104 - containers listen on their network
    agent = compose["agent"]["environment"]
    for url in (agent["ISSUER_URL"], agent["MCP_URL"]):
        parts = urlsplit(url)
        assert parts.hostname in listens, url
        assert parts.port == listens[parts.hostname], url
    assert urlsplit(agent["MCP_URL"]).path == "/mcp"


def test_dockerfile_installs_every_package_from_the_lock_file() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "uv sync --frozen --no-dev" in dockerfile
    for package in ("keys", "issuer", "mcp_server", "orchestrator"):
        assert f"COPY {package} ./{package}" in dockerfile
    cmd = re.search(r"^CMD (.+)$", dockerfile, re.M)
    assert cmd is not None
    argv = json.loads(cmd.group(1))
    assert argv[0] == "voicebank"
    _parser().parse_args(argv[1:])
    assert "USER voicebank" in dockerfile  # not root


def test_regression_health_checks_ask_for_readiness(compose: dict[str, Any]) -> None:
    # A replica is healthy when it can serve (keys, database, Redis), not merely alive (issue 10).
    for name in ("issuer-1", "issuer-2", "mcp-1", "mcp-2"):
        probe = " ".join(compose[name]["healthcheck"]["test"])
        assert "/readyz" in probe, name
        assert "/healthz" not in probe, name


def _mounted_files(resolved: dict[str, Any], service: dict[str, Any]) -> dict[str, str]:
    """What a service can read from outside its image: host file or volume -> where it appears inside."""
    mounted: dict[str, str] = {}
    for kind, default_dir in (("secrets", "/run/secrets/"), ("configs", "/")):
        for entry in service.get(kind, []):
            source, target = (
                (entry, entry) if isinstance(entry, str) else (entry["source"], entry.get("target"))
            )
            inside = target if str(target).startswith("/") else default_dir + str(target or source)
            mounted[resolved[kind][source]["file"]] = inside
    for volume in service.get("volumes", []):
        source, _, inside = (
            volume if isinstance(volume, str) else f"{volume['source']}:{volume['target']}"
        ).partition(":")
        mounted[f"volume {source}"] = inside
    return mounted


def test_regression_each_service_reads_only_the_secrets_it_needs() -> None:
    # One volume with every client's private key, the admin key included, was mounted into both MCP
    # replicas and the agent: a compromised MCP container could mint keys:admin tokens (issue 10).
    resolved = yaml.safe_load(interpolate((ROOT / "compose.yaml").read_text(), HOST_ENV))
    services = resolved["services"]
    readers: dict[str, set[str]] = {}
    for name, service in services.items():
        for source in _mounted_files(resolved, service):
            readers.setdefault(source, set()).add(name)
    deploy = "./deploy"
    assert readers == {
        f"{deploy}/clients/orchestrator.pem": {"agent"},  # the agent's own key, nobody else's
        f"{deploy}/clients.json": {"issuer-1", "issuer-2"},  # public keys only
        "volume redis": {"redis"},
        "volume postgres": {"postgres"},
    }
    for name in ("mcp-1", "mcp-2", "init"):
        assert _mounted_files(resolved, services[name]) == {}, f"{name} gets files it does not need"
    everything = json.dumps(resolved)
    for never in ("admin.pem", "backend.pem", f"{deploy}/passphrase", f"{deploy}/keys"):
        assert never not in everything, f"{never} reaches the cluster"
    # The services read their files where compose puts them.
    agent = services["agent"]
    assert (
        _mounted_files(resolved, agent)[f"{deploy}/clients/orchestrator.pem"]
        == (agent["environment"]["ORCHESTRATOR_CLIENT_KEY"])
    )
    for name in ("issuer-1", "issuer-2"):
        issuer = services[name]
        assert (
            _mounted_files(resolved, issuer)[f"{deploy}/clients.json"]
            == (issuer["environment"]["ISSUER_CLIENTS_FILE"])
        )
    assert services["init"]["command"] == ["voicebank", "dev-init", "--bank-only"]


def test_the_init_command_seeds_the_bank_and_makes_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BANK_DB_URL", raising=False)
    state = tmp_path / "state"
    assert main(["dev-init", "--bank-only", "--state", str(state)]) == 0
    assert "bank: seeded" in capsys.readouterr().out
    assert sorted(p.name for p in state.iterdir()) == ["bank.db"]
    with pytest.raises(SystemExit) as exit_:
        main(["dev-init", "--bank-only", "--force", "--state", str(state)])
    assert exit_.value.code == 2
