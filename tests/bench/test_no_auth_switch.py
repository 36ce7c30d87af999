"""`mcp_server.create_app(no_auth_claims=...)`: the benchmarks' auth-off switch, off by default."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
from starlette.applications import Starlette

from keys import StaticKeys, Verifier, generate_key
from mcp_server import McpSettings, access_token_policy, create_app, create_schema, make_engine, seed

RESOURCE = "http://127.0.0.1:8001/mcp"
CLAIMS = {"sub": "alice", "client_id": "orchestrator", "scope": "read", "jti": "bench", "exp": 4_000_000_000}
HEADERS = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28"}
META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


@asynccontextmanager
async def served(tmp_path: Path, **kwargs: Any) -> AsyncIterator[httpx2.AsyncClient]:
    engine = make_engine(f"sqlite:///{tmp_path / 'bank.db'}")
    create_schema(engine)
    seed(engine)
    settings = McpSettings(mcp_resource_url=RESOURCE, voicebank_state=tmp_path, redis_url=None)
    verifier = Verifier(StaticKeys({"keys": [generate_key().public_jwk()]}), access_token_policy(settings))
    app: Starlette = create_app(settings, verifier=verifier, engine=engine, **kwargs)
    started, stop = asyncio.Event(), asyncio.Event()

    async def lifespan() -> None:  # anyio scopes must exit in the task that entered them
        async with app.router.lifespan_context(app):
            started.set()
            await stop.wait()

    task = asyncio.create_task(lifespan())
    await started.wait()
    try:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8001") as http:
            yield http
    finally:
        stop.set()
        await task
        engine.dispose()


async def call(http: httpx2.AsyncClient, tool: str, arguments: dict[str, Any]) -> httpx2.Response:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": META},
    }
    return await http.post(
        "/mcp", json=body, headers=HEADERS | {"mcp-method": "tools/call", "mcp-name": tool}
    )


async def test_without_the_switch_a_call_without_a_token_is_refused(tmp_path: Path) -> None:
    async with served(tmp_path) as http:
        response = await call(http, "get_balance", {})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")


async def test_with_the_switch_every_call_runs_as_the_fixed_caller(tmp_path: Path) -> None:
    async with served(tmp_path, no_auth_claims=CLAIMS) as http:
        response = await call(http, "get_balance", {})
    assert response.status_code == 200
    result = response.json()["result"]
    assert not result.get("isError")
    numbers = {a["account_number"][-4:] for a in result["structuredContent"]["accounts"]}
    assert "1234" in numbers  # alice's checking account
    assert "4321" not in numbers  # never bob's


async def test_the_switch_never_lets_money_move(tmp_path: Path) -> None:
    """No transact jti was spent, so the tools' second lock refuses payments even with the scope."""
    claims = CLAIMS | {"scope": "read transact"}
    async with served(tmp_path, no_auth_claims=claims) as http:
        accounts = (await call(http, "get_balance", {})).json()["result"]["structuredContent"]["accounts"]
        payees = (await call(http, "list_payees", {})).json()["result"]["structuredContent"]["payees"]
        arguments = {
            "from_account_id": accounts[0]["account_id"],
            "payee_id": payees[0]["payee_id"],
            "amount": "1.00",
            "idempotency_key": "k1",
        }
        response = await call(http, "make_payment", arguments)
    result = response.json()["result"]
    assert result["isError"] is True
    assert "not allowed" in json.dumps(result["content"])
