"""Key rotation at the issuer while a client keeps calling the MCP server."""

from __future__ import annotations

import asyncio
import json
import logging
from decimal import Decimal
from typing import Any

import pytest

from tests.support.stack import INVALID_TOKEN, Stack, bound, kid_of, segment

CALLS = 50
ROTATE_EVERY = 10  # 5 rotations interleaved with 50 calls


def audit_reasons(caplog: pytest.LogCaptureFixture) -> list[str | None]:
    return [json.loads(r.getMessage())["reason"] for r in caplog.records if r.name == "voicebank.audit"]


async def test_forced_rotations_while_calling_fail_no_call(stack: Stack) -> None:
    tokens = await stack.tokens()
    early = await tokens.get_token("read")  # signed by the first active key, used again at the end
    before = Decimal(stack.balance())
    kids: list[str] = []
    paid = 0

    async def one_call(step: int) -> dict[str, Any]:
        nonlocal paid
        scope = ("read", "transact", "configure")[step % 3]
        payment = stack.payment("1.00", f"rot-{step}")
        if scope == "transact":
            token = await tokens.transact_token(bound("make_payment", payment))
        else:
            token = await tokens.get_token(scope)
        kids.append(kid_of(token))
        if scope == "read":
            return await stack.call(token, "get_balance")
        if scope == "transact":
            paid += 1
            return await stack.call(token, "make_payment", **payment)
        return await stack.call(token, "update_notification_settings", large_payment_alert=step % 2 == 0)

    rotations = 0
    for step in range(CALLS):
        stack.clock.advance(1)
        if step % ROTATE_EVERY == ROTATE_EVERY // 2:
            # The call and the rotation run concurrently: the call races the key change.
            answer, _ = await asyncio.gather(one_call(step), stack.rotate())
            rotations += 1
        else:
            answer = await one_call(step)
        assert answer  # every call answered with its result; a 401 would have raised

    assert rotations == 5
    assert (
        len(set(kids)) == 6
    )  # tokens signed by the first key and by each of the 5 promoted keys all verified
    assert Decimal(stack.balance()) == before - paid * Decimal("1.00")
    # A forced rotation promotes a key published since the rotation before; the unknown-kid refetch
    # covers the one case the cache had not seen yet, and publishing ahead covers the rest.
    assert stack.link.jwks_fetches <= 1 + rotations

    # The first key is retiring now, still published: its tokens verify until they expire.
    assert kid_of(early) != await stack.active_kid()
    assert (await stack.call(early, "list_loans"))["loans"]
    expires = segment(early, 1)["exp"]
    stack.clock.now = expires + 59  # within the verifier's 60 s leeway
    assert (await stack.call(early, "list_payees"))["payees"]


async def test_an_old_key_token_is_refused_once_expired(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = await stack.tokens()
    early = await tokens.get_token("read")
    for _ in range(3):
        stack.clock.advance(10)
        await stack.rotate()
    assert (await stack.call(early, "get_balance"))["accounts"]
    stack.clock.now = segment(early, 1)["exp"] + 60  # past the leeway
    with caplog.at_level(logging.INFO, logger="voicebank.audit"):
        response = await stack.post(early, "get_balance", {})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == INVALID_TOKEN
    assert audit_reasons(caplog) == ["expired"]
    # The session itself carries on with a token signed by the newest key.
    fresh = await tokens.get_token("read")
    assert kid_of(fresh) == await stack.active_kid() != kid_of(early)
    assert (await stack.call(fresh, "get_balance"))["accounts"]
