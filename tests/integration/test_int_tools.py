"""Every tool with real issuer tokens through the real MCP clients; transact tokens are single-use."""

from __future__ import annotations

from decimal import Decimal

import pytest
from mcp.shared.exceptions import MCPError

from orchestrator import Movement
from tests.support.issuer import ISSUER, RESOURCE
from tests.support.stack import INVALID_TOKEN, Stack, bound, segment


async def test_every_tool_through_the_orchestrators_client(stack: Stack) -> None:
    bank = await stack.mcp_bank()
    checking, savings, payee = stack.account(), stack.account(kind="savings"), stack.payee()
    before = Decimal(stack.balance())

    accounts = (await bank.get_balance())["accounts"]
    assert {a["type"] for a in accounts} >= {"checking", "savings"}
    assert [a["balance"] for a in (await bank.get_balance("checking"))["accounts"]] == [str(before)]
    history = (await bank.list_transactions(account_id=checking, limit=2))["transactions"]
    assert len(history) == 2
    assert history[0]["posted_at"] >= history[1]["posted_at"]  # newest first
    assert (await bank.list_loans())["loans"][0]["type"] == "auto"
    assert payee in {p["payee_id"] for p in (await bank.list_payees())["payees"]}
    confirmed = Movement("payment", checking, payee, "12.50", "USD", "int-pay-1")
    paid = await bank.make_payment(checking, payee, "12.50", "int-pay-1", memo="rent", confirmed=confirmed)
    assert (paid["status"], paid["amount"]) == ("completed", "12.50")
    confirmed = Movement("transfer", checking, savings, "7.50", "USD", "int-move-1")
    moved = await bank.transfer_between_accounts(checking, savings, "7.50", "int-move-1", confirmed=confirmed)
    assert (moved["status"], moved["balance_after"]) == ("completed", str(before - Decimal("20.00")))
    settings = await bank.update_notification_settings(low_balance_alert=False, channel="email")
    assert settings["settings"]["channel"] == "email"
    assert stack.balance() == str(before - Decimal("20.00"))


async def test_every_tool_through_the_fastmcp_client_with_issuer_tokens(stack: Stack) -> None:
    tokens = await stack.tokens()
    read = await tokens.get_token("read")
    claims = segment(read, 1)
    assert (claims["iss"], claims["aud"], claims["sub"]) == (ISSUER, RESOURCE, "alice")
    assert claims["act"] == {"sub": "orchestrator"}
    assert segment(read, 0)["typ"] == "at+jwt"

    assert (await stack.call(read, "get_balance", account_type="savings"))["accounts"][0]["type"] == "savings"
    assert (await stack.call(read, "list_transactions", limit=1))["transactions"]
    assert "loans" in await stack.call(read, "list_loans")
    assert (await stack.call(read, "list_payees"))["payees"]
    payment = stack.payment("1.00", "int-pay-2")
    assert (
        await stack.call(
            await tokens.transact_token(bound("make_payment", payment)), "make_payment", **payment
        )
    )["status"] == "completed"
    transfer = {
        "from_account_id": stack.account(kind="savings"),
        "to_account_id": stack.account(),
        "amount": "2.00",
        "idempotency_key": "int-move-2",
    }
    transact = await tokens.transact_token(bound("transfer_between_accounts", transfer))
    assert (await stack.call(transact, "transfer_between_accounts", **transfer))["status"] == "completed"
    configure = await tokens.get_token("configure")
    changed = await stack.call(configure, "update_notification_settings", low_balance_threshold="50.00")
    assert changed["settings"]["low_balance_threshold"] == "50.00"


async def test_a_transact_token_used_twice_is_refused_and_money_moves_once(stack: Stack) -> None:
    tokens = await stack.tokens()
    payment = stack.payment("25.00", "int-once-1")
    transact = await tokens.transact_token(bound("make_payment", payment))
    before = Decimal(stack.balance())

    paid = await stack.call(transact, "make_payment", **payment)
    assert paid["status"] == "completed"
    # The same token for the very payment it was bound to: 401 (spent), nothing runs.
    again = await stack.post(transact, "make_payment", payment)
    assert again.status_code == 401
    assert again.headers["www-authenticate"] == INVALID_TOKEN
    transfer = {
        "from_account_id": stack.account(),
        "to_account_id": stack.account(kind="savings"),
        "amount": "1.00",
        "idempotency_key": "int-once-3",
    }
    with pytest.raises(MCPError):
        await stack.call(transact, "transfer_between_accounts", **transfer)
    assert Decimal(stack.balance()) == before - Decimal("25.00")
    # A fresh transact token from the issuer works again.
    another = stack.payment("25.00", "int-once-4")
    fresh = await tokens.transact_token(bound("make_payment", another))
    assert fresh != transact
    await stack.call(fresh, "make_payment", **another)
    assert Decimal(stack.balance()) == before - Decimal("50.00")
