"""`voicebank up`: URLs, which servers it builds, the agent's absence, and a real run with a log file."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

from issuer import IssuerSettings
from orchestrator._commands import main
from orchestrator._commands._dev_init import dev_init
from orchestrator._commands._serve import SharedLoopServer
from orchestrator._commands._up import (
    UpError,
    UpOptions,
    _agent_process,
    _servers,
    mcp_issuer_url,
    service_urls,
)
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


def test_the_issuer_url_option_outranks_the_environment() -> None:
    env = {"ISSUER_URL": "http://issuer.env:8000", "MCP_ISSUER_URL": "http://mcp-issuer.env:8000"}
    named = UpOptions(only="mcp", issuer_url="http://issuer.cli:8000")
    assert mcp_issuer_url(named, env) == "http://issuer.cli:8000"
    assert service_urls(named, env)[0] == "http://issuer.cli:8000"
    assert mcp_issuer_url(UpOptions(only="mcp"), env) == "http://mcp-issuer.env:8000"
    assert mcp_issuer_url(UpOptions(only="mcp"), {"ISSUER_URL": "http://issuer.env:8000"}) == (
        "http://issuer.env:8000"
    )
    # Serving both, the MCP server trusts the issuer served next to it.
    assert mcp_issuer_url(UpOptions(issuer_port=9000), {}) == "http://127.0.0.1:9000"


def test_only_mcp_never_guesses_the_issuer() -> None:
    with pytest.raises(UpError, match="--only mcp needs the issuer's URL: pass --issuer-url URL"):
        mcp_issuer_url(UpOptions(only="mcp"), {})


def test_only_mcp_without_an_issuer_url_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("ISSUER_URL", "MCP_ISSUER_URL", "MCP_RESOURCE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["up", "--only", "mcp", "--state", str(tmp_path), "--mcp-port", str(free_port())]) == 1
    err = capsys.readouterr().err
    assert err == (
        "voicebank: --only mcp needs the issuer's URL: pass --issuer-url URL (or set MCP_ISSUER_URL)\n"
    )


@pytest.mark.parametrize("url", ["ftp://issuer.example", "issuer.example:8000", "http://", "http://i/?q=1"])
def test_an_issuer_url_that_is_not_an_http_url_is_a_usage_error(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["up", "--only", "mcp", "--issuer-url", url])
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"voicebank: argument --issuer-url: not an http(s) URL: {url!r}\n"


def test_up_says_where_each_part_listens_when_its_url_is_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("KEYS_STORE", "REDIS_URL", "VOICEBANK_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ISSUER_METRICS_PORT", "0")
    monkeypatch.setenv("MCP_METRICS_PORT", "0")
    dev_init(IssuerSettings(voicebank_state=tmp_path), out=lambda _: None)
    issuer, mcp = free_port(), free_port()
    env = {"ISSUER_URL": "https://issuer.example", "MCP_RESOURCE_URL": "https://mcp.example/mcp"}
    _servers(UpOptions(state=tmp_path, issuer_port=issuer, mcp_port=mcp), env)
    assert capsys.readouterr().err.splitlines() == [
        f"voicebank up: issuer listening on 127.0.0.1:{issuer}, reached as https://issuer.example",
        f"voicebank up: MCP server listening on 127.0.0.1:{mcp}, reached as https://mcp.example/mcp",
    ]
    _servers(UpOptions(state=tmp_path, host="0.0.0.0", issuer_port=issuer, mcp_port=mcp), {})  # noqa: S104
    assert capsys.readouterr().err.splitlines() == [
        f"voicebank up: issuer at http://127.0.0.1:{issuer}",
        f"voicebank up: MCP server at http://127.0.0.1:{mcp}/mcp",
    ]


def test_servers_built_per_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ISSUER_URL", "MCP_RESOURCE_URL", "KEYS_STORE", "REDIS_URL", "VOICEBANK_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ISSUER_METRICS_PORT", "0")  # no metrics listeners here: see the test below
    monkeypatch.setenv("MCP_METRICS_PORT", "0")
    dev_init(IssuerSettings(voicebank_state=tmp_path), out=lambda _: None)
    ports = [free_port(), free_port(), free_port()]
    both = _servers(UpOptions(state=tmp_path, issuer_port=ports[0], mcp_port=ports[1]), {})
    assert [s.config.port for s in both] == ports[:2]
    issuer = f"http://127.0.0.1:{ports[0]}"
    only_mcp = _servers(UpOptions(state=tmp_path, only="mcp", mcp_port=ports[2], issuer_url=issuer), {})
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
    # Once both servers listened, their startup heap left full garbage collections (issue 12: each one
    # walked it and stalled every request in flight).
    frozen = re.search(r"(\d+) startup objects left out of garbage collection", text)
    assert frozen is not None
    assert int(frozen[1]) > 10_000


def test_up_serves_on_the_loop_uvicorn_picks_uvloop() -> None:
    """`voicebank up` runs its servers on uvloop (installed with the package), as uvicorn's own run would."""
    import asyncio

    import uvicorn
    import uvloop

    from orchestrator._commands._serve import run_all

    seen: list[type[asyncio.AbstractEventLoop]] = []
    watched: list[bool] = []

    def watching() -> bool:
        return any(getattr(cb, "__qualname__", "") == "StallWatch._on_collection" for cb in gc.callbacks)

    class Probe(uvicorn.Server):
        async def serve(self, sockets: object = None) -> None:
            seen.append(type(asyncio.get_running_loop()))
            await asyncio.sleep(0)  # the stall watch's first step
            watched.append(watching())

    try:
        run_all([Probe(uvicorn.Config(app=lambda *_: None))])
    finally:
        gc.unfreeze()  # run_all froze this test process's heap once its server "listened"
    assert seen == [uvloop.Loop]
    # Its stall watch ran with the servers and stopped with them.
    assert watched == [True]
    assert not watching()
