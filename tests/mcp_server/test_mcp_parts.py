"""Smaller parts of the MCP server: settings, replay store, key-event parsing, edge responses, concurrency."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, func, select
from starlette.applications import Starlette

from keys import CLOCK_LEEWAY
from mcp_server import Bank, McpSettings
from mcp_server._auth._transport_refusals import watch_refusals
from mcp_server._bank._models import Movement
from tests.support.clock import FakeClock
from tests.support.mcp import Mint, mcp_client, post, rpc, scrape


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MCP_ISSUER_URL", "https://issuer.example")
    monkeypatch.setenv("MCP_RESOURCE_URL", "https://bank.example/mcp")
    monkeypatch.setenv("VOICEBANK_STATE", str(tmp_path))
    monkeypatch.setenv("MCP_PAYMENT_LIMIT", "250.50")
    monkeypatch.delenv("BANK_DB_URL", raising=False)
    settings = McpSettings()
    assert settings.database_url == f"sqlite:///{tmp_path / 'bank.db'}"
    assert settings.jwks_url == "https://issuer.example/.well-known/jwks.json"
    assert settings.payment_limit_cents == 25_050
    monkeypatch.setenv("BANK_DB_URL", "postgresql+psycopg://bank@db/bank")
    assert McpSettings().database_url == "postgresql+psycopg://bank@db/bank"


@pytest.mark.parametrize("limit", ["0", "-1", "abc"])
def test_a_bad_payment_limit_is_refused(limit: str) -> None:
    with pytest.raises(ValueError, match="payment"):
        McpSettings(mcp_payment_limit=limit)


async def test_a_spent_jti_is_remembered_while_the_leeway_still_accepts_its_token(
    http: httpx2.AsyncClient, mint: Mint, clock: FakeClock, bank: Bank
) -> None:
    def balance() -> str:
        return str(bank.get_balance("alice", "checking")["accounts"][0]["balance"])

    checking = bank.get_balance("alice", "checking")["accounts"][0]["account_id"]
    payee = bank.list_payees("alice")["payees"][0]["payee_id"]
    payment = {"from_account_id": checking, "payee_id": payee, "amount": "1.00", "idempotency_key": "p-1"}
    token = mint(scope="transact", bound=("make_payment", payment))  # exp = now + 60
    assert (await post(http, token, rpc("make_payment", payment))).status_code == 200
    paid_once = balance()
    clock.advance(60 + CLOCK_LEEWAY - 1)  # past exp, but the verifier's leeway still accepts the token
    again = await post(http, token, rpc("make_payment", payment))
    assert again.status_code == 401
    assert balance() == paid_once


async def test_healthz_and_metrics_need_no_token(app: Starlette, http: httpx2.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await scrape(app)).status_code == 200


async def test_regression_metrics_are_not_on_the_public_port(
    app: Starlette, http: httpx2.AsyncClient
) -> None:
    # They list internal refusal reasons (an oracle for an attacker): only the loopback listener has them.
    for method in ("GET", "POST"):
        response = await http.request(method, "/metrics")
        assert response.status_code == 404
        assert b"voicebank_mcp" not in response.content
    scraped = await scrape(app)
    assert scraped.headers["content-type"].startswith("text/plain")
    assert "voicebank_mcp_token_verifications" in scraped.text


async def test_an_oversized_body_is_413(app: Starlette, http: httpx2.AsyncClient, mint: Mint) -> None:
    body = rpc("list_payees", {}) | {"padding": "x" * 1_100_000}
    response = await post(http, mint(), body)
    assert response.status_code == 413


async def test_a_repeated_authorization_header_is_refused(http: httpx2.AsyncClient, mint: Mint) -> None:
    response = await http.post(
        "/mcp",
        json=rpc("list_payees", {}),
        headers=[("authorization", f"Bearer {mint()}"), ("authorization", f"Bearer {mint('bob')}")],
    )
    # RFC 6750 §3.1: a repeated credential is a malformed request (was 401 without an error code).
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request"}


async def test_malformed_json_with_a_good_token_is_not_a_500(http: httpx2.AsyncClient, mint: Mint) -> None:
    response = await http.post(
        "/mcp",
        content=b"{not json",
        headers={"authorization": f"Bearer {mint()}", "content-type": "application/json"},
    )
    assert 400 <= response.status_code < 500


async def test_twenty_concurrent_mcp_calls_with_one_key_pay_once(
    app: Starlette, mint: Mint, bank: Bank, engine: Engine
) -> None:
    checking = bank.get_balance("alice", "checking")["accounts"][0]["account_id"]
    payee = bank.list_payees("alice")["payees"][0]["payee_id"]
    arguments = {"from_account_id": checking, "payee_id": payee, "amount": "30.00", "idempotency_key": "dup"}

    async def pay() -> dict[str, Any]:
        async with mcp_client(app, mint(scope="transact", bound=("make_payment", arguments))) as client:
            result = await client.call_tool("make_payment", arguments)
        assert result.structured_content is not None
        return result.structured_content

    results = await asyncio.gather(*(pay() for _ in range(20)))
    assert len({r["payment_id"] for r in results}) == 1
    assert bank.get_balance("alice", "checking")["accounts"][0]["balance"] == "2420.13"
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Movement)).scalar_one() == 1


async def test_fifty_concurrent_mcp_payments_never_overdraw(app: Starlette, mint: Mint, bank: Bank) -> None:
    checking = bank.get_balance("alice", "checking")["accounts"][0]["account_id"]
    payee = bank.list_payees("alice")["payees"][0]["payee_id"]

    async def pay(i: int) -> bool:
        arguments = {
            "from_account_id": checking,
            "payee_id": payee,
            "amount": "100.00",
            "idempotency_key": f"k{i}",
        }
        token = mint(scope="transact", bound=("make_payment", arguments))
        async with mcp_client(app, token) as client:
            result = await client.call_tool("make_payment", arguments, raise_on_error=False)
        return not result.is_error

    outcomes = await asyncio.gather(*(pay(i) for i in range(50)))
    assert outcomes.count(True) == 24
    assert bank.get_balance("alice", "checking")["accounts"][0]["balance"] == "50.13"


async def test_watch_refusals_reports_http_errors_and_jsonrpc_errors_once() -> None:
    async def answer(status: int, *bodies: bytes, content_type: bytes = b"application/json") -> list[str]:
        reasons: list[str] = []
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        watching = watch_refusals(send, reasons.append)
        await watching(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]}
        )
        for index, chunk in enumerate(bodies):
            await watching(
                {"type": "http.response.body", "body": chunk, "more_body": index < len(bodies) - 1}
            )
        assert len(sent) == 1 + len(bodies)  # everything is passed on
        return reasons

    error = b'{"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "bad"}}'
    assert await answer(200, error[:20], error[20:]) == ["jsonrpc_-32602"]
    assert await answer(400, error) == ["http_400"]
    assert await answer(200, b'{"jsonrpc": "2.0", "id": 1, "result": {"text": "an error"}}') == []
    assert await answer(200, b'{"error": not json') == []
    assert await answer(200, error, content_type=b"text/event-stream") == []
    assert await answer(200, b" " * 70_000, error) == []  # a large answer is a result, never inspected
