"""What a generic MCP client learns before it calls anything, read through a real MCP client: the server's
own name and version in `initialize`, and in `tools/list` each tool's annotations and the scope it needs."""

from __future__ import annotations

from importlib import metadata

import fastmcp
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette

from mcp_server import TOOL_SCOPES
from tests.support.issuer import RESOURCE
from tests.support.mcp import BASE, Mint, mcp_client

# tool -> (readOnlyHint, destructiveHint, idempotentHint)
HINTS = {
    "get_balance": (True, False, True),
    "list_transactions": (True, False, True),
    "list_loans": (True, False, True),
    "list_payees": (True, False, True),
    "make_payment": (False, True, True),
    "transfer_between_accounts": (False, True, True),
    "update_notification_settings": (False, True, True),
}


async def test_server_discover_names_voicebank_with_its_own_version(app: Starlette, mint: Mint) -> None:
    async with mcp_client(app, mint()) as client:  # fastmcp's Client: the 2026-07-28 `server/discover`
        info = client.server_info
    assert info is not None
    assert (info.name, info.version) == ("voicebank", metadata.version("voicebank"))
    assert info.version != fastmcp.__version__


async def test_initialize_names_voicebank_with_its_own_version(app: Starlette, mint: Mint) -> None:
    headers = {"Authorization": f"Bearer {mint()}"}
    async with (
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE, headers=headers) as http,
        streamable_http_client(RESOURCE, http_client=http) as (read, write, *_),
        ClientSession(read, write) as session,
    ):
        initialized = await session.initialize()  # the official SDK's handshake
        listed = await session.list_tools()
    assert (initialized.server_info.name, initialized.server_info.version) == (
        "voicebank",
        metadata.version("voicebank"),
    )
    read_only = {tool.name for tool in listed.tools if tool.annotations and tool.annotations.read_only_hint}
    assert read_only == {name for name, scope in TOOL_SCOPES.items() if scope == "read"}


async def test_every_tool_advertises_what_it_does_and_the_scope_it_needs(app: Starlette, mint: Mint) -> None:
    async with mcp_client(app, mint()) as client:
        tools = {tool.name: tool for tool in await client.list_tools()}
    assert set(tools) == set(TOOL_SCOPES) == set(HINTS)
    advertised = {}
    for name, tool in tools.items():
        hints = tool.annotations
        assert hints is not None
        assert tool.meta is not None
        assert tool.meta["voicebank/scope"] == TOOL_SCOPES[name]
        advertised[name] = (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint)
        assert hints.open_world_hint is False
    assert advertised == HINTS


async def test_a_read_token_sees_the_whole_list_with_what_each_tool_needs(app: Starlette, mint: Mint) -> None:
    # tools/list spends nothing and needs no particular scope: a client learns what to ask for first.
    async with mcp_client(app, mint(scope="configure")) as client:
        needs = {tool.name: (tool.meta or {}).get("voicebank/scope") for tool in await client.list_tools()}
    assert needs == TOOL_SCOPES
