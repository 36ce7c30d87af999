"""Helpers shared by the MCP server tests (a module of its own so test modules never import conftest)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport
from starlette.applications import Starlette

from mcp_server import metrics_app

ISSUER = "http://127.0.0.1:8000"
RESOURCE = "http://127.0.0.1:8001/mcp"
BASE = "http://127.0.0.1:8001"
METADATA = "http://127.0.0.1:8001/.well-known/oauth-protected-resource/mcp"
_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}

Mint = Callable[..., str]


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_790_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[Starlette]:
    """Run the app's lifespan in a task of its own (anyio scopes must exit in the task they entered)."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with app.router.lifespan_context(app):
            started.set()
            await stop.wait()

    task = asyncio.create_task(run())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if not started.is_set():
        waiter.cancel()
        await task  # raises the startup error
    try:
        yield app
    finally:
        stop.set()
        await task


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
