"""`voicebank up`: URLs, which servers it builds, the agent's absence, and a real run with a log file."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from issuer import IssuerSettings
from orchestrator._commands._dev_init import dev_init
from orchestrator._commands._serve import SharedLoopServer
from orchestrator._commands._up import UpOptions, _agent_process, _servers, service_urls
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
AGENT_VARIABLES = (
    "LIVEKIT_URL",
    "LIVEKIT_API_KEY",
    "LIVEKIT_API_SECRET",
    "ORCHESTRATOR_STT",
    "ORCHESTRATOR_LLM",
    "ORCHESTRATOR_TTS",
)


def test_urls_follow_the_listening_address_unless_the_environment_names_them() -> None:
    options = UpOptions(host="0.0.0.0", issuer_port=9000, mcp_port=9001)  # noqa: S104
    assert service_urls(options, {}) == ("http://127.0.0.1:9000", "http://127.0.0.1:9001/mcp")
    env = {"ISSUER_URL": "https://issuer.example", "MCP_RESOURCE_URL": "https://mcp.example/mcp"}
    assert service_urls(options, env) == ("https://issuer.example", "https://mcp.example/mcp")


def test_servers_built_per_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ISSUER_URL", "MCP_RESOURCE_URL", "KEYS_STORE", "REDIS_URL", "VOICEBANK_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ISSUER_METRICS_PORT", "0")  # no metrics listeners here: see the test below
    monkeypatch.setenv("MCP_METRICS_PORT", "0")
    dev_init(IssuerSettings(voicebank_state=tmp_path), out=lambda _: None)
    ports = [free_port(), free_port(), free_port()]
    both = _servers(UpOptions(state=tmp_path, issuer_port=ports[0], mcp_port=ports[1]), {})
    assert [s.config.port for s in both] == ports[:2]
    only_mcp = _servers(UpOptions(state=tmp_path, only="mcp", mcp_port=ports[2]), {})
    assert [s.config.port for s in only_mcp] == ports[2:]


def test_metrics_listeners_are_on_loopback_whatever_the_public_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ISSUER_URL", "MCP_RESOURCE_URL", "KEYS_STORE", "REDIS_URL", "VOICEBANK_MODE"):
        monkeypatch.delenv(name, raising=False)
    issuer_metrics, mcp_metrics = free_port(), free_port()
    monkeypatch.setenv("ISSUER_METRICS_PORT", str(issuer_metrics))
    monkeypatch.setenv("MCP_METRICS_PORT", str(mcp_metrics))
    dev_init(IssuerSettings(voicebank_state=tmp_path), out=lambda _: None)
    options = UpOptions(state=tmp_path, host="0.0.0.0", issuer_port=free_port(), mcp_port=free_port())  # noqa: S104
    servers = _servers(options, {})
    try:
        assert [(s.config.host, s.config.port) for s in servers] == [
            ("0.0.0.0", options.issuer_port),  # noqa: S104
            ("127.0.0.1", issuer_metrics),
            ("0.0.0.0", options.mcp_port),  # noqa: S104
            ("127.0.0.1", mcp_metrics),
        ]
        bound = [
            sock.getsockname() for s in servers if isinstance(s, SharedLoopServer) for sock in s.sockets or []
        ]
        assert bound == [("127.0.0.1", issuer_metrics), ("127.0.0.1", mcp_metrics)]
    finally:
        for server in servers:
            for sock in getattr(server, "sockets", None) or []:
                sock.close()


def test_the_agent_is_not_started_without_its_configuration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in AGENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert _agent_process(UpOptions(), {}) is None
    err = capsys.readouterr().err
    assert "voice agent not started" in err
    assert "LIVEKIT_URL" in err


async def test_up_serves_both_parts_logs_to_a_file_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in AGENT_VARIABLES}
    env = {k: v for k, v in env.items() if not k.startswith(("MCP_", "ISSUER_"))}
    env |= {"ISSUER_METRICS_PORT": str(free_port()), "MCP_METRICS_PORT": str(free_port())}
    state, log = tmp_path / "state", tmp_path / "up.log"
    await asyncio.to_thread(dev_init, IssuerSettings(voicebank_state=state), out=lambda _: None)
    issuer_port, mcp_port = free_port(), free_port()
    args = ["up", "--state", str(state), "--issuer-port", str(issuer_port), "--mcp-port", str(mcp_port)]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchestrator._commands",
        *args,
        "--log-file",
        str(log),
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(600):  # bounded: a cross-process start, up to about 60 s under load
                if log.is_file() and log.read_text().count("Uvicorn running on") == 2:
                    break
                await asyncio.sleep(0.1)
            assert (await http.get(f"http://127.0.0.1:{issuer_port}/readyz")).status_code == 200
            denied = await http.post(f"http://127.0.0.1:{mcp_port}/mcp", json={})
            assert denied.status_code == 401
            assert "resource_metadata" in denied.headers["www-authenticate"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0
    assert b"Traceback" not in err
    text = log.read_text()
    assert '"reason":"no_token"' in text  # the audit line went to the file
    assert log.stat().st_mode & 0o777 == 0o600
    assert "Shutting down" in text
