"""The benchmarks' auth-off MCP server: the production app, its bearer auth swapped by bench/_no_auth.py."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette

from keys import StaticKeys, Verifier, generate_key
from mcp_server import McpSettings, access_token_policy, create_app, create_schema, make_engine, seed
from tests.support.lifespan import running
from tests.support.mcp import http_client

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from _no_auth import without_auth  # noqa: E402 - bench/ is not a package

RESOURCE = "http://127.0.0.1:8001/mcp"
CLAIMS = {"sub": "alice", "client_id": "orchestrator", "scope": "read", "jti": "bench", "exp": 4_000_000_000}
HEADERS = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28"}
META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


@asynccontextmanager
async def served(tmp_path: Path, claims: dict[str, Any] | None = None) -> AsyncIterator[httpx2.AsyncClient]:
    engine = make_engine(f"sqlite:///{tmp_path / 'bank.db'}")
    create_schema(engine)
    seed(engine)
    settings = McpSettings(mcp_resource_url=RESOURCE, voicebank_state=tmp_path, redis_url=None)
    verifier = Verifier(StaticKeys({"keys": [generate_key().public_jwk()]}), access_token_policy(settings))
    app: Starlette = create_app(settings, verifier=verifier, engine=engine)
    if claims is not None:
        app = without_auth(app, RESOURCE, claims)
    try:
        async with running(app), http_client(app) as http:
            yield http
    finally:
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


async def test_the_production_app_refuses_a_call_without_a_token(tmp_path: Path) -> None:
    async with served(tmp_path) as http:
        response = await call(http, "get_balance", {})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")


async def test_with_auth_off_every_call_runs_as_the_fixed_caller(tmp_path: Path) -> None:
    async with served(tmp_path, CLAIMS) as http:
        response = await call(http, "get_balance", {})
    assert response.status_code == 200
    result = response.json()["result"]
    assert not result.get("isError")
    numbers = {a["account_number"][-4:] for a in result["structuredContent"]["accounts"]}
    assert "1234" in numbers  # alice's checking account
    assert "4321" not in numbers  # never bob's


async def test_auth_off_never_lets_money_move(tmp_path: Path) -> None:
    """No transact jti was spent, so the tools' second lock refuses payments even with the scope."""
    claims = CLAIMS | {"scope": "read transact"}
    async with served(tmp_path, claims) as http:
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


def test_only_an_app_with_its_bearer_auth_can_be_swapped(tmp_path: Path) -> None:
    settings = McpSettings(mcp_resource_url=RESOURCE, voicebank_state=tmp_path, redis_url=None)
    verifier = Verifier(StaticKeys({"keys": [generate_key().public_jwk()]}), access_token_policy(settings))
    engine = make_engine(f"sqlite:///{tmp_path / 'bank.db'}")
    try:
        app = without_auth(create_app(settings, verifier=verifier, engine=engine), RESOURCE, CLAIMS)
        with pytest.raises(RuntimeError, match="bearer-auth"):
            without_auth(app, RESOURCE, CLAIMS)  # already swapped: nothing to replace
    finally:
        engine.dispose()
