"""Facts the MCP server and the orchestrator must agree on, where each side keeps its own copy.

The agent's runtime may import only `keys` (docs/architecture.md "Where things live"), so it cannot read the
MCP server's tool table: the MCP server owns the tool surface and the tool -> scope table, the orchestrator
keeps a copy of each (its `Bank` protocol and `_tokens/_scopes.py`), and these tests pin the copies equal.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Any

import pytest

from mcp_server import TOOL_SCOPES, Bank, make_engine
from mcp_server._audit import AuditLog
from mcp_server._auth._scopes import SUPPORTED_SCOPES, TRANSACT
from mcp_server._metrics import Metrics
from mcp_server._tools import BankTools, build_mcp
from orchestrator._bank._mcp import McpBank
from orchestrator._bank._protocol import Bank as AgentBank
from orchestrator._tokens import _scopes as agent_scopes


@pytest.fixture(scope="module")
def served_tools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each tool the MCP server serves: its name and its input schema."""
    path: Path = tmp_path_factory.mktemp("bank") / "bank.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        mcp = build_mcp(BankTools(Bank(engine), AuditLog(), Metrics()))
        return {tool.name: tool.parameters for tool in asyncio.run(mcp.list_tools())}
    finally:
        engine.dispose()


def _protocol_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_the_tool_scope_tables_are_equal() -> None:
    assert dict(agent_scopes.TOOL_SCOPES) == TOOL_SCOPES
    assert set(TOOL_SCOPES.values()) == set(SUPPORTED_SCOPES)
    # The MCP server spends a transact token's jti on first use: the agent must never cache one.
    assert {TRANSACT} == agent_scopes.SINGLE_USE_SCOPES


def test_the_server_serves_exactly_the_tools_of_its_scope_table(
    served_tools: dict[str, dict[str, Any]],
) -> None:
    assert sorted(served_tools) == sorted(TOOL_SCOPES)


def test_the_agent_bank_protocol_is_the_tool_surface(served_tools: dict[str, dict[str, Any]]) -> None:
    methods = _protocol_methods(AgentBank)
    assert sorted(methods) == sorted(served_tools)
    for name, signature in methods.items():
        # Keyword-only parameters are not tool arguments: a movement's `confirmed` binds its token.
        params = {
            p.name: p
            for p in signature.parameters.values()
            if p.name != "self" and p.kind is not inspect.Parameter.KEYWORD_ONLY
        }
        schema = served_tools[name]
        assert set(params) == set(schema.get("properties", {})), name
        required = {p.name for p in params.values() if p.default is inspect.Parameter.empty}
        assert required == set(schema.get("required", [])), name


def test_the_mcp_client_implements_the_protocol_with_the_same_signatures() -> None:
    ours = _protocol_methods(McpBank)
    for name, signature in _protocol_methods(AgentBank).items():
        assert ours[name] == signature, name
