"""Regressions: the scope check and FastMCP must read the same request, and no body may crash the check.

Found in review: the middleware decides scopes from its own parse of the JSON-RPC body. A body it could not
parse counted as "calls no tool" and was forwarded, so any body that Python's `json` refuses but FastMCP's
parser accepts would have skipped the 403 and the single-use spend; and a deeply nested body raised
RecursionError in the middleware (a 500).
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine

from mcp_server import Bank
from tests.support.mcp import Mint, movements, post, rpc

HEADERS = {
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": "2026-07-28",
    "content-type": "application/json",
}


@pytest.fixture
def payment(bank: Bank) -> dict[str, Any]:
    checking = bank.get_balance("alice", "checking")["accounts"][0]["account_id"]
    payee = bank.list_payees("alice")["payees"][0]["payee_id"]
    return {"from_account_id": checking, "payee_id": payee, "amount": "10.00", "idempotency_key": "body-1"}


async def _raw(http: httpx2.AsyncClient, token: str, body: bytes, **extra: str) -> httpx2.Response:
    headers = HEADERS | {"authorization": f"Bearer {token}"} | extra
    return await http.post("/mcp", content=body, headers=headers)


async def test_regression_deeply_nested_body_is_400_not_500(
    http: httpx2.AsyncClient, mint: Mint, engine: Engine, payment: dict[str, Any]
) -> None:
    body = json.dumps(rpc("make_payment", payment)).replace('"id": 1', '"id": ' + "[" * 5000 + "]" * 5000)
    response = await _raw(http, mint(scope="read"), body.encode(), **{"mcp-method": "tools/call"})
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request"}
    assert movements(engine) == 0


async def test_regression_unreadable_body_is_refused_before_fastmcp(
    http: httpx2.AsyncClient, mint: Mint, engine: Engine, payment: dict[str, Any]
) -> None:
    good = json.dumps(rpc("make_payment", payment))
    for body in (
        good.encode()[:-1],
        b"\xff" + good.encode(),
        good.replace('"id": 1', '"id": ' + "9" * 5000).encode(),
    ):
        response = await _raw(
            http, mint(scope="read"), body, **{"mcp-method": "tools/call", "mcp-name": "make_payment"}
        )
        assert response.status_code == 400, body[:40]
    assert movements(engine) == 0


async def test_regression_a_tool_call_without_a_string_name_is_refused(
    http: httpx2.AsyncClient, mint: Mint, engine: Engine
) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": ["make_payment"]}}
    response = await _raw(http, mint(scope="read"), json.dumps(body).encode())
    assert response.status_code == 400
    assert movements(engine) == 0


async def test_regression_mcp_name_header_must_match_the_body(
    http: httpx2.AsyncClient, mint: Mint, engine: Engine
) -> None:
    response = await post(http, mint(scope="read"), rpc("get_balance", {}), **{"mcp-name": "make_payment"})
    assert response.status_code == 400
    assert movements(engine) == 0
