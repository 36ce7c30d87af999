"""Every tool through a real MCP client over streamable HTTP, with real signed tokens."""

from __future__ import annotations

from typing import Any

import pytest
from fastmcp.exceptions import ToolError
from starlette.applications import Starlette

from tests.support.mcp import Mint, mcp_client


async def call(app: Starlette, token: str, tool: str, **arguments: Any) -> dict[str, Any]:
    async with mcp_client(app, token) as client:
        result = await client.call_tool(tool, arguments)
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def refused(app: Starlette, token: str, tool: str, **arguments: Any) -> str:
    async with mcp_client(app, token) as client:
        result = await client.call_tool(tool, arguments, raise_on_error=False)
    assert result.is_error
    text: str = result.content[0].text  # type: ignore[union-attr]
    return text


async def accounts(app: Starlette, mint: Mint, user: str = "alice") -> dict[str, str]:
    """Open accounts by type, plus "closed"."""
    rows = (await call(app, mint(user), "get_balance"))["accounts"]
    ids = {a["type"]: a["account_id"] for a in rows if a["status"] == "open"}
    ids["closed"] = next(a["account_id"] for a in rows if a["status"] == "closed")
    return ids


async def test_tools_are_listed_with_the_contract_names(app: Starlette, mint: Mint) -> None:
    async with mcp_client(app, mint()) as client:
        tools = {t.name: t for t in await client.list_tools()}
    assert set(tools) == {
        "get_balance",
        "list_transactions",
        "list_loans",
        "list_payees",
        "make_payment",
        "transfer_between_accounts",
        "update_notification_settings",
    }
    assert set(tools["make_payment"].input_schema["required"]) == {
        "from_account_id",
        "payee_id",
        "amount",
        "idempotency_key",
    }
    # No tool takes a user id or a token.
    for tool in tools.values():
        assert not {"user_id", "sub", "token", "access_token"} & set(tool.input_schema["properties"])


async def test_read_tools(app: Starlette, mint: Mint) -> None:
    token = mint("alice", "read")
    balances = await call(app, token, "get_balance", account_type="checking")
    assert [a["balance"] for a in balances["accounts"]] == ["2450.13"]
    checking = balances["accounts"][0]["account_id"]
    history = await call(app, token, "list_transactions", account_id=checking, limit=2)
    assert [t["amount"] for t in history["transactions"]] == ["-42.50", "-120.00"]
    loans = await call(app, token, "list_loans")
    assert loans["loans"][0]["next_payment_amount"] == "389.00"
    payees = await call(app, token, "list_payees")
    assert len(payees["payees"]) == 3


async def test_make_payment_and_transfer(app: Starlette, mint: Mint) -> None:
    ids = await accounts(app, mint)
    payee = (await call(app, mint(), "list_payees"))["payees"][0]["payee_id"]
    payment = {
        "from_account_id": ids["checking"],
        "payee_id": payee,
        "amount": "20.00",
        "idempotency_key": "p-1",
    }
    paid = await call(
        app, mint(scope="transact", bound=("make_payment", payment)), "make_payment", **payment, memo="Thanks"
    )
    assert (paid["status"], paid["amount"], paid["balance_after"]) == ("completed", "20.00", "2430.13")
    transfer = {
        "from_account_id": ids["savings"],
        "to_account_id": ids["checking"],
        "amount": "69.87",
        "idempotency_key": "t-1",
    }
    token = mint(scope="transact", bound=("transfer_between_accounts", transfer))
    moved = await call(app, token, "transfer_between_accounts", **transfer)
    assert moved["balance_after"] == "11930.13"
    balances = await call(app, mint(), "get_balance", account_type="checking")
    assert balances["accounts"][0]["balance"] == "2500.00"


async def test_update_notification_settings(app: Starlette, mint: Mint) -> None:
    result = await call(
        app,
        mint(scope="configure"),
        "update_notification_settings",
        channel="email",
        low_balance_threshold="75",
    )
    assert result["settings"] == {
        "low_balance_alert": True,
        "low_balance_threshold": "75.00",
        "large_payment_alert": True,
        "channel": "email",
    }


async def test_refusals_are_one_speakable_sentence(app: Starlette, mint: Mint) -> None:
    ids = await accounts(app, mint)
    payee = (await call(app, mint(), "list_payees"))["payees"][0]["payee_id"]

    async def pay(**args: Any) -> str:
        base = {
            "from_account_id": ids["checking"],
            "payee_id": payee,
            "amount": "1.00",
            "idempotency_key": "x",
        }
        arguments = base | args
        return await refused(
            app, mint(scope="transact", bound=("make_payment", arguments)), "make_payment", **arguments
        )

    assert await pay(amount="9999.99") == "The amount is above the per-payment limit of 5000.00."
    assert await pay(amount="4999.99") == "Insufficient funds in account ending 1234."
    assert await pay(payee_id="pye_unknown") == "Payee not found."
    assert await pay(from_account_id=ids["closed"]) == "Account ending 9999 is closed."
    assert await pay(from_account_id="acc_unknown") == "Account not found."
    transfer = {
        "from_account_id": ids["checking"],
        "to_account_id": ids["checking"],
        "amount": "1.00",
        "idempotency_key": "y",
    }
    token = mint(scope="transact", bound=("transfer_between_accounts", transfer))
    same = await refused(app, token, "transfer_between_accounts", **transfer)
    assert same == "You cannot transfer money to the same account."
    assert await refused(app, mint(), "list_transactions", limit=0) == "The limit must be between 1 and 100."


async def test_a_token_in_a_tool_argument_is_refused(app: Starlette, mint: Mint) -> None:
    ids = await accounts(app, mint)
    payee = (await call(app, mint(), "list_payees"))["payees"][0]["payee_id"]
    payment = {
        "from_account_id": ids["checking"],
        "payee_id": payee,
        "amount": "1.00",
        "idempotency_key": "z",
    }
    header, payload, signature = mint().split(".")
    # A whole token is longer than any argument's cap (refused by the schema first); its pieces still fit.
    for memo, expected in (
        (mint(), "The memo must be at most 140 characters."),
        (f"see {header[:60]}.{payload[:40]}.{signature[:20]}", "Tokens are not accepted in tool arguments."),
    ):
        token = mint(scope="transact", bound=("make_payment", payment))
        text = await refused(app, token, "make_payment", **payment, memo=memo)
        assert text == expected
    balances = await call(app, mint(), "get_balance", account_type="checking")
    assert balances["accounts"][0]["balance"] == "2450.13"


async def test_unknown_tool_is_answered_by_fastmcp(app: Starlette, mint: Mint) -> None:
    async with mcp_client(app, mint()) as client:
        with pytest.raises(ToolError):
            await client.call_tool("drop_tables", {})


async def test_extra_arguments_are_rejected(app: Starlette, mint: Mint) -> None:
    text = await refused(app, mint(), "get_balance", user_id="bob")
    assert "user_id" in text or "Unexpected" in text or "additional" in text.lower()
