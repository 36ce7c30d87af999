"""The MCP server as tests call it: in-process HTTP and MCP clients, JSON-RPC bodies, minted tokens."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from sqlalchemy import Engine, func, select
from starlette.applications import Starlette

from mcp_server import metrics_app
from mcp_server._bank._models import Movement
from tests.support.issuer import RESOURCE

BASE = "http://127.0.0.1:8001"
METADATA = BASE + "/.well-known/oauth-protected-resource/mcp"
_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}

Mint = Callable[..., str]


def movement(tool: str, arguments: dict[str, Any], currency: str = "USD") -> list[dict[str, str]]:
    """The `authorization_details` claim binding a transact token to exactly this call."""
    kind, target = ("payment", "payee_id") if tool == "make_payment" else ("transfer", "to_account_id")
    return [
        {
            "type": kind,
            "from_account_id": arguments["from_account_id"],
            target: arguments[target],
            "amount": arguments["amount"],
            "currency": currency,
            "idempotency_key": arguments["idempotency_key"],
        }
    ]


# Where the MCP tests' clock starts (the seeded bank's history is dated from it).
MCP_START = 1_790_000_000.0


def asgi_factory(app: Starlette) -> Callable[..., httpx2.AsyncClient]:
    """An httpx client factory for FastMCP's transport that talks to the app in-process."""

    def factory(**kwargs: Any) -> httpx2.AsyncClient:
        kwargs.pop("follow_redirects", None)
        return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE, **kwargs)

    return factory


def mcp_client(app: Starlette, token: str) -> Client[StreamableHttpTransport]:
    """A real MCP client over streamable HTTP with a bearer token."""
    transport = StreamableHttpTransport(RESOURCE, httpx_client_factory=asgi_factory(app), auth=token)
    return Client(transport)


def http_client(app: Starlette) -> httpx2.AsyncClient:
    """A raw HTTP client to the app, for status codes and headers."""
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE)


async def scrape(app: Starlette) -> httpx2.Response:
    """`GET /metrics` from the app's own metrics listener app (not the public one)."""
    async with http_client(metrics_app(app)) as metrics:
        return await metrics.get("/metrics")


def rpc(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A JSON-RPC `tools/call` as the 2026-07-28 protocol sends it."""
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": _META},
    }


async def post(http: httpx2.AsyncClient, token: str | None, body: Any, **headers: str) -> httpx2.Response:
    """POST a raw JSON-RPC body to /mcp with a bearer token."""
    sent = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28"}
    if isinstance(body, dict):
        # The 2026-07-28 routing headers must match the body.
        sent |= {"mcp-method": body["method"], "mcp-name": body["params"]["name"]}
    if token is not None:
        sent["authorization"] = f"Bearer {token}"
    return await http.post("/mcp", json=body, headers=sent | headers)


# The two ways a tools/call reaches FastMCP: the 2026-07-28 single-exchange path, and the earlier streamable
# HTTP revision (served stateless, without an initialize handshake).
PROTOCOLS = ("2026-07-28", "2025-06-18")


async def call_raw(
    http: httpx2.AsyncClient,
    token: str,
    tool: str,
    arguments: dict[str, Any],
    *,
    protocol: str = "2026-07-28",
) -> httpx2.Response:
    """POST one tools/call in a protocol revision; the body is ASCII JSON, so any string can be sent."""
    body = rpc(tool, arguments)
    if protocol != PROTOCOLS[0]:
        del body["params"]["_meta"]
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": protocol,
        "mcp-method": "tools/call",
        "mcp-name": tool,
        "authorization": f"Bearer {token}",
    }
    return await http.post("/mcp", content=json.dumps(body).encode(), headers=headers)


def tool_error(response: httpx2.Response) -> str:
    """The sentence of a tool call answered with an error result."""
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["isError"] is True, result
    text: str = result["content"][0]["text"]
    return text


def movements(engine: Engine) -> int:
    """How many money movements the bank has recorded: a refused call must not add one."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Movement)).scalar_one())


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The audit log's JSON lines captured so far."""
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "voicebank.audit"]
