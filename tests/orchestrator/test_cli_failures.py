"""Operational failures end the real command with one `voicebank: ...` line and a non-zero exit.

Each case is the real `voicebank` process (or `main`) against the real condition: a taken port, a key
directory the process may not read or write (file permissions bind even root: see `voicebank(...,
unprivileged=True)`), Redis not listening.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from issuer import IssuerSettings
from keys import assertion_form, load_client_key
from orchestrator._commands import main
from orchestrator._commands._dev_init import dev_init
from orchestrator._commands._serve import ServeError, SharedLoopServer, serve_all
from tests.support.ports import free_port
from tests.support.process import Serving, child_env, run, voicebank


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("voicebank: "), stderr
    return lines[0]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    dev_init(IssuerSettings(voicebank_state=state), out=lambda _: None)
    return state


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port another program is listening on."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock.getsockname()[1]


LISTENERS = {
    "issuer": "issuer",
    "mcp": "MCP server",
    "issuer-metrics": "issuer metrics",
    "mcp-metrics": "MCP server metrics",
}


@pytest.mark.parametrize("which", LISTENERS)
def test_regression_a_port_in_use_is_one_line(state: Path, taken: int, which: str) -> None:
    ports = {name: free_port() for name in LISTENERS} | {which: taken}
    env = child_env(
        ISSUER_METRICS_PORT=str(ports["issuer-metrics"]), MCP_METRICS_PORT=str(ports["mcp-metrics"])
    )
    args = ["--state", str(state), "--issuer-port", str(ports["issuer"]), "--mcp-port", str(ports["mcp"])]
    done = run(voicebank("up", *args), env)
    assert done.returncode == 1
    assert one_line(done.stderr) == (
        f"voicebank: cannot listen on 127.0.0.1:{taken} for the {LISTENERS[which]}: Address already in use"
    )


def test_one_port_asked_for_twice_is_one_line(state: Path) -> None:
    port = free_port()
    env = child_env(ISSUER_METRICS_PORT=str(port), MCP_METRICS_PORT="0")
    done = run(
        voicebank("up", "--state", str(state), "--issuer-port", str(free_port()), "--mcp-port", str(port)),
        env,
    )
    assert done.returncode == 1
    assert one_line(done.stderr) == (
        f"voicebank: port {port} is asked for twice: for the MCP server and for the issuer metrics"
    )


async def test_a_server_that_still_cannot_bind_stops_the_others_cleanly(taken: int) -> None:
    # The race after the check: another program takes the port between the check and uvicorn's bind.
    def server(port: int) -> SharedLoopServer:
        return SharedLoopServer(uvicorn.Config(Starlette(), port=port, log_config=None, lifespan="off"))

    healthy, blocked = server(free_port()), server(taken)
    started: list[None] = []
    with pytest.raises(ServeError, match="could not start"):
        await asyncio.wait_for(
            serve_all([healthy, blocked], started=lambda: started.append(None)), timeout=60
        )
    assert healthy.should_exit
    assert started == []  # the process never served: nothing to freeze


def test_regression_an_unreadable_keys_directory_is_one_line(state: Path) -> None:
    keys = state / "keys"
    keys.chmod(0o000)
    try:
        env = child_env(ISSUER_METRICS_PORT="0")
        up = run(voicebank("up", "--only", "issuer", "--state", str(state), unprivileged=True), env)
        init = run(voicebank("dev-init", "--state", str(state), unprivileged=True), env)
    finally:
        keys.chmod(0o700)
    assert up.returncode == 1
    assert one_line(up.stderr) == f"voicebank: cannot load the issuer key ring: {keys}: Permission denied"
    assert init.returncode == 1
    assert one_line(init.stderr) == f"voicebank: cannot open the issuer key ring: {keys}: Permission denied"


def test_regression_redis_down_with_the_redis_key_store_is_one_line(state: Path) -> None:
    env = child_env(
        KEYS_STORE="redis", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", KEYS_PASSPHRASE="a-passphrase"
    )
    done = run(voicebank("up", "--only", "issuer", "--state", str(state)), env)
    assert done.returncode == 1
    assert one_line(done.stderr) == (
        "voicebank: cannot reach Redis at REDIS_URL (ConnectionError): KEYS_STORE=redis keeps the keys there"
    )


async def test_regression_rotation_with_a_read_only_key_store_is_503_and_one_line(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = child_env(ISSUER_METRICS_PORT="0", ISSUER_URL=issuer)
    args = ["up", "--only", "issuer", "--state", str(state), "--issuer-port", str(port)]
    serving = await asyncio.to_thread(Serving, voicebank(*args, unprivileged=True), env, 1)
    keys = state / "keys"
    try:
        keys.chmod(0o500)  # readable, not writable
        status = await asyncio.to_thread(
            main, ["keys", "rotate", "--force", "--issuer", issuer, "--state", str(state)]
        )
        assert status == 1
        assert one_line(capsys.readouterr().err) == (
            "voicebank: the issuer refused: temporarily_unavailable: the key store cannot be written: "
            "no rotation happened and the key ring is unchanged"
        )
        async with httpx.AsyncClient(base_url=issuer) as http:
            admin = load_client_key(state, "admin")
            form = {
                "grant_type": "client_credentials",
                **assertion_form("admin", admin, f"{issuer}/token", time.time()),
            }
            bearer = {
                "Authorization": f"Bearer {(await http.post('/token', data=form)).json()['access_token']}"
            }
            refused = await http.post("/admin/keys/rotate", json={"force": True}, headers=bearer)
            assert refused.status_code == 503
            assert refused.json()["error"] == "temporarily_unavailable"
            assert (await http.get("/readyz")).status_code == 200  # serving tokens goes on
            keys.chmod(0o700)
            assert (
                await http.post("/admin/keys/rotate", json={"force": True}, headers=bearer)
            ).status_code == 200
    finally:
        keys.chmod(0o700)
        await asyncio.to_thread(serving.stop)
    log = serving.output.text()
    assert b"the key store cannot be written" in log
    assert b"Traceback" not in log
