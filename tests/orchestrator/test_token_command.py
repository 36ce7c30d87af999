"""`voicebank token`: the real session, exchange and refresh flow against the real issuer; dev mode only.

The last tests run the README's "Use your own MCP client" scripts (fastmcp's `Client`, the official `mcp` SDK)
with such a token against a real `voicebank up`.
"""

from __future__ import annotations

import ast
import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from issuer import IssuerSettings, create_app
from keys import StaticKeys, Verifier, VerifyPolicy
from orchestrator._commands import main
from orchestrator._commands._dev_init import dev_init
from tests.support.up import ROOT, UpProcess, clean_env, free_port, tool_call, voicebank

ISSUER = "http://127.0.0.1:8000"
RESOURCE = "http://127.0.0.1:8001/mcp"


class Recorder(httpx.AsyncBaseTransport):
    """The real issuer app in-process, with every request and its answer's status written down."""

    def __init__(self, app: Any) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self.calls: list[tuple[str, str, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        form = request.content.decode() if request.method == "POST" else ""
        what = next((p.split("=")[1] for p in form.split("&") if p.startswith("grant_type=")), "")
        self.calls.append((request.url.path, what, response.status_code))
        return response


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("ISSUER_URL", "VOICEBANK_MODE", "VOICEBANK_STATE", "KEYS_STORE", "REDIS_URL", "BANK_DB_URL"):
        monkeypatch.delenv(name, raising=False)
    dev_init(IssuerSettings(voicebank_state=tmp_path), out=lambda _: None)
    return tmp_path


@pytest.fixture
async def issuer(state: Path) -> AsyncIterator[Recorder]:
    app = create_app(IssuerSettings(voicebank_state=state, issuer_url=ISSUER, mcp_resource_url=RESOURCE))
    async with app.router.lifespan_context(app):
        yield Recorder(app)


async def jwks(recorder: Recorder) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=recorder, base_url=ISSUER) as http:
        body: dict[str, Any] = (await http.get("/.well-known/jwks.json")).json()
        return body


async def test_token_prints_an_access_token_from_session_exchange_and_refresh(
    state: Path, issuer: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["token", "--user", "alice", "--scope", "configure", "--state", str(state), "--issuer", ISSUER]
    assert await _main(argv, issuer) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert out == token + "\n"  # stdout is the token alone: TOKEN=$(voicebank token ...)
    assert issuer.calls == [
        ("/token", "client_credentials", 200),  # the app backend's bearer
        ("/sessions", "", 201),
        ("/token", "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange", 200),
        ("/token", "refresh_token", 200),
        ("/revoke", "", 200),  # no refresh token outlives the command
    ]
    verifier = Verifier(StaticKeys(await jwks(issuer)), VerifyPolicy(issuer=ISSUER, audience=RESOURCE))
    claims = verifier.verify(token)
    assert (claims["sub"], claims["scope"], claims["client_id"]) == ("alice", "configure", "orchestrator")
    assert claims["act"] == {"sub": "orchestrator"}
    assert err.startswith(
        f"voicebank token: configure token for alice (session {claims['sid']}), expires in "
    )
    assert token not in err


async def _main(argv: list[str], transport: httpx.AsyncBaseTransport) -> int:
    # main() runs its own event loop, as the console script does: give it a thread of its own.
    return await asyncio.to_thread(main, argv, transport=transport)


async def test_token_is_refused_in_prod_mode_with_one_line(
    state: Path, issuer: Recorder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VOICEBANK_MODE", "prod")
    assert await _main(["token", "--user", "alice", "--scope", "read", "--state", str(state)], issuer) == 1
    assert capsys.readouterr() == (
        "",
        "voicebank: token is for development only, and VOICEBANK_MODE is prod\n",
    )
    assert issuer.calls == []


def test_token_without_dev_init_says_what_to_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--user", "alice", "--scope", "read", "--state", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert (
        err
        == f"voicebank: no usable backend key at {tmp_path}/clients/backend.pem (run `voicebank dev-init`)\n"
    )


def test_token_with_no_issuer_listening_is_one_line(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["token", "--user", "alice", "--scope", "read", "--state", str(state), "--issuer", url]) == 1
    assert (
        capsys.readouterr().err
        == f"voicebank: cannot reach the issuer at {url}; is `voicebank up` running?\n"
    )


async def test_token_from_another_issuer_state_is_refused_by_the_issuer(
    state: Path,
    issuer: Recorder,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = tmp_path_factory.mktemp("other")
    # Keys this issuer never registered.
    await asyncio.to_thread(dev_init, IssuerSettings(voicebank_state=other), out=lambda _: None)
    assert await _main(["token", "--user", "alice", "--scope", "read", "--state", str(other)], issuer) == 1
    err = capsys.readouterr().err
    assert err.startswith("voicebank: the issuer refused the backend client: invalid_client")
    assert err.count("\n") == 1


@pytest.mark.parametrize("scope", ["transact", "keys:admin", "read configure"])
def test_token_scopes_are_read_or_configure(scope: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["token", "--user", "alice", "--scope", scope])
    assert exited.value.code == 2
    assert "voicebank: argument --scope: invalid choice" in capsys.readouterr().err


# -- generic MCP clients against a real `voicebank up`, with a token from a real `voicebank token` --


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    state = tmp_path_factory.mktemp("state")
    assert voicebank("dev-init", "--state", str(state)).returncode == 0
    issuer_port, mcp_port = free_port(), free_port()
    up = UpProcess(
        "--state", str(state), "--issuer-port", str(issuer_port), "--mcp-port", str(mcp_port), servers=2
    ).start()
    try:
        yield {
            "state": str(state),
            "issuer": f"http://127.0.0.1:{issuer_port}",
            "mcp": f"http://127.0.0.1:{mcp_port}/mcp",
        }
    finally:
        assert up.stop() == 0


def issue(served: dict[str, str], scope: str = "read", user: str = "alice") -> str:
    done = voicebank(
        "token", "--user", user, "--scope", scope, "--state", served["state"], "--issuer", served["issuer"]
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def balances(text: str) -> list[dict[str, Any]]:
    accounts: list[dict[str, Any]] = json.loads(text)["accounts"]
    return accounts


def readme_client(name: str) -> str:
    """The Python client of the README's "Use your own MCP client" section that is run as `python NAME`."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Use your own MCP client") :]
    intro = section.index(f"`python {name} ")
    start = section.index("```python\n", intro) + len("```python\n")
    return section[start : section.index("```", start)]


@pytest.mark.parametrize(("name", "user"), [("fastmcp_client.py", "alice"), ("sdk_client.py", "bob")])
def test_the_readme_clients_call_the_tools_with_a_token_from_voicebank_token(
    served: dict[str, str], tmp_path: Path, name: str, user: str
) -> None:
    script = tmp_path / name
    script.write_text(readme_client(name))
    token = issue(served, user=user)
    done = subprocess.run(
        [sys.executable, str(script), token],
        env=clean_env(MCP_URL=served["mcp"]),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    tools, result = done.stdout.splitlines()
    assert {"get_balance", "list_payees", "make_payment"} <= set(ast.literal_eval(tools))
    assert {"checking", "savings"} <= {account["type"] for account in balances(result)}


async def test_a_read_token_cannot_call_a_configure_tool(served: dict[str, str]) -> None:
    token = issue(served, scope="read")
    async with httpx.AsyncClient() as http:
        refused = await http.post(
            served["mcp"], **tool_call(token, "update_notification_settings", {"channel": "sms"})
        )
    assert refused.status_code == 403
    assert 'scope="configure"' in refused.headers["www-authenticate"]


def test_only_mcp_trusts_the_issuer_named_by_issuer_url(served: dict[str, str]) -> None:
    """`up --only mcp --issuer-url` in a process of its own verifies the tokens of that issuer."""
    port = free_port()
    args = [
        "--only",
        "mcp",
        "--mcp-port",
        str(port),
        "--issuer-url",
        served["issuer"],
        "--state",
        served["state"],
    ]
    mcp = UpProcess(*args, servers=1, env=clean_env(MCP_RESOURCE_URL=served["mcp"])).start()
    try:
        token = issue(served)
        metadata = httpx.get(f"http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp").json()
        assert metadata["authorization_servers"] == [served["issuer"]]
        answer = httpx.post(f"http://127.0.0.1:{port}/mcp", **tool_call(token, "list_loans", {}), timeout=30)
        assert answer.status_code == 200, answer.text
    finally:
        assert mcp.stop() == 0
    assert any(
        f"MCP server listening on 127.0.0.1:{port}, reached as {served['mcp']}" in line for line in mcp.lines
    )
