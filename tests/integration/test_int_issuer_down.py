"""Issuer down: tokens signed by a known key keep working from the MCP server's cached JWKS."""

from __future__ import annotations

from decimal import Decimal

from tests.support.stack import INVALID_TOKEN, Stack, bound, segment, with_header

JWKS_MAX_AGE = 300


async def test_calls_keep_working_from_the_cached_jwks_while_the_issuer_is_down(stack: Stack) -> None:
    tokens = await stack.tokens()
    read = await tokens.get_token("read")
    payment = stack.payment("5.00", "down-1")
    transact = await tokens.transact_token(bound("make_payment", payment))
    configure = await tokens.get_token("configure")
    before = Decimal(stack.balance())
    fetches = stack.link.jwks_fetches

    stack.link.down = True
    assert (await stack.call(read, "get_balance"))["accounts"]
    assert (await stack.call(transact, "make_payment", **payment))["status"] == "completed"
    assert (await stack.call(configure, "update_notification_settings", channel="sms"))["settings"]
    assert stack.link.refused == 0  # a fresh cache never needed the issuer

    # Past the max-age the cache tries to refetch, fails, and keeps serving the keys it knows.
    stack.clock.now = segment(read, 1)["iat"] + JWKS_MAX_AGE + 1
    for _ in range(3):
        assert (await stack.call(read, "list_payees"))["payees"]
    assert stack.link.refused == 1  # failed refetches are rate-limited too
    assert stack.link.jwks_fetches == fetches
    assert Decimal(stack.balance()) == before - Decimal("5.00")

    # An unknown kid cannot be looked up while the issuer is down: a clean 401, never a 500.
    unknown = with_header(read, kid="k" * 43)
    response = await stack.post(unknown, "list_payees", {})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == INVALID_TOKEN

    # The issuer is back: the next refetch succeeds and calls carry on.
    stack.link.down = False
    stack.clock.advance(5)
    assert (await stack.call(read, "list_loans"))["loans"]
    assert stack.link.jwks_fetches == fetches + 1
