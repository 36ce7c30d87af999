"""Redis restarted mid-call: refresh and payments fail closed with clear errors and recover when it returns.

The e2e Redis keeps an append-only file fsynced on every write, as a production Redis holding the issuer key
ring must: after the restart the key ring, the refresh-token families and the spent `jti`s are all back.
"""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import pytest
import redis.asyncio as aioredis

from keys import KEY_EVENTS_CHANNEL, assertion_form, load_client_key
from orchestrator import CallBank, ConnectionSettings, Movement, ServiceUnavailable, open_bank
from tests.support.e2e import (
    Stack,
    active_kids,
    admin_keys,
    eventually,
    issuer_client,
    mcp_post,
    new_call,
)

pytestmark = pytest.mark.e2e


async def _ready(stack: Stack) -> bool:
    # Every replica says it can serve: the issuers and the MCP servers (whose replay store is Redis).
    bases = stack.issuer_urls + [url.removesuffix("/mcp") for url in stack.mcp_urls]
    async with httpx.AsyncClient(timeout=5.0) as http:
        answers = [await http.get(f"{url}/readyz") for url in bases]
    return all(a.status_code == 200 for a in answers)


async def _subscribed(stack: Stack) -> bool:
    redis = aioredis.Redis.from_url(stack.redis_url)
    try:
        counts = dict(await redis.pubsub_numsub(KEY_EVENTS_CHANNEL))
    finally:
        await redis.aclose()
    return int(counts.get(KEY_EVENTS_CHANNEL.encode(), 0)) >= len(stack.mcps)


async def test_redis_restarted_mid_call_fails_closed_and_recovers(stack: Stack) -> None:
    http, _ = issuer_client(stack, target=1)
    async with http:
        identity = await new_call(http, stack)
    settings = ConnectionSettings(
        issuer_url=stack.issuer,
        mcp_url=stack.mcp_urls[0],
        orchestrator_client_id="orchestrator",
        orchestrator_client_key=None,
        voicebank_state=stack.state,
    )
    bank = await open_bank(settings, identity)
    assert isinstance(bank, CallBank)
    checking, payee = stack.account(), stack.payee()
    ring_before = await admin_keys(stack, 0)
    try:
        assert (await bank.get_balance())["accounts"]  # caches the read token
        args = {"from_account_id": checking, "payee_id": payee, "amount": "5.00", "idempotency_key": "e2e-r"}
        # Fetched while Redis is up, used while it is down.
        spare = await bank.tokens.transact_token(Movement("payment", checking, payee, "5.00", "USD", "e2e-r"))
        pay = Movement("payment", checking, payee, "5.00", "USD", "e2e-redis-pay")
        before = Decimal(stack.balance())

        stack.redis.kill()  # SIGKILL: no shutdown save; the fsynced append-only file is all that survives

        with pytest.raises(ServiceUnavailable) as caught:
            await bank.make_payment(checking, payee, "5.00", "e2e-redis-pay", confirmed=pay)
        assert caught.value.code == "issuer_unavailable"
        assert "try again" in str(caught.value)
        assert bank.tokens.lost is None  # a store outage is not a lost authorization
        # The issuer says why, on either replica: its stores are down, retry later.
        for replica in (0, 1):
            http, _ = issuer_client(stack, target=replica)
            async with http:
                key = load_client_key(stack.state, "orchestrator")
                form = assertion_form("orchestrator", key, f"{stack.issuer}/token", time.time())
                answer = await http.post(
                    "/token", data={"grant_type": "refresh_token", "refresh_token": "x" * 43, **form}
                )
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"] == "temporarily_unavailable"
        # The MCP server cannot spend a single-use token without Redis: it refuses, nothing moves.
        for url in stack.mcp_urls:
            refused = await mcp_post(
                url, spare, "make_payment", args, dpop=bank.dpop, resource=stack.resource
            )
            assert refused.status_code == 503, refused.text
            assert refused.json() == {"error": "temporarily_unavailable"}
        assert Decimal(stack.balance()) == before
        # Reads too: every DPoP proof's jti must be spent where all replicas see it, so without Redis a
        # replica cannot tell a replayed proof from a fresh one. It fails closed, as an outage (503).
        read = await mcp_post(
            stack.mcp_urls[0],
            await bank.tokens.get_token("read"),
            "get_balance",
            {},
            dpop=bank.dpop,
            resource=stack.resource,
        )
        assert read.status_code == 503, read.text
        with pytest.raises(ServiceUnavailable):
            await bank.get_balance("checking")
        assert bank.tokens.lost is None

        stack.redis.start()  # same port, same append-only file

        assert await eventually(lambda: _ready(stack))
        paid = await bank.make_payment(checking, payee, "5.00", "e2e-redis-pay", confirmed=pay)
        assert paid["status"] == "completed"
        assert Decimal(stack.balance()) == before - Decimal("5.00")
        # The spare token was never spent, so it still pays once - and the replay cache holds after restart.
        assert (
            await mcp_post(
                stack.mcp_urls[1], spare, "make_payment", args, dpop=bank.dpop, resource=stack.resource
            )
        ).status_code == 200
        assert (
            await mcp_post(
                stack.mcp_urls[0], spare, "make_payment", args, dpop=bank.dpop, resource=stack.resource
            )
        ).status_code == 401
        assert Decimal(stack.balance()) == before - Decimal("10.00")
        # The ring came back from the append-only file: same keys, one active, on both replicas.
        assert await admin_keys(stack, 0) == ring_before
        assert await admin_keys(stack, 1) == ring_before
        assert len(active_kids(ring_before)) == 1
        # Both MCP replicas resubscribe to key events (they retry every second).
        assert await eventually(lambda: _subscribed(stack), attempts=100)
    finally:
        ended = await bank.end()
    assert ended
