"""A whole call through the orchestrator code on real processes; key changes seen by every replica."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from keys import KEY_EVENTS_CHANNEL, assertion_form, load_client_key
from orchestrator import AuthorizationLost, CallBank, ConnectionSettings, McpBank, Movement, open_bank
from tests.support.e2e import (
    McpReplica,
    Stack,
    active_kids,
    admin_keys,
    eventually,
    fresh_token,
    issuer_client,
    kid_of,
    mcp_post,
    new_call,
    session_tokens,
    tool_result,
    voicebank_cli,
)

pytestmark = pytest.mark.e2e


async def test_a_full_call_through_the_orchestrator_code_across_replicas(stack: Stack) -> None:
    # The app backend opens the session on issuer replica 1; the agent exchanges the grant on replica 0.
    backend_http, _ = issuer_client(stack, target=1)
    async with backend_http:
        identity = await new_call(backend_http, stack)
    settings = ConnectionSettings(
        issuer_url=stack.issuer,
        mcp_url=stack.mcp_urls[0],
        orchestrator_client_id="orchestrator",
        orchestrator_client_key=None,
        voicebank_state=stack.state,
    )
    bank = await open_bank(settings, identity)
    assert isinstance(bank, CallBank)
    # The same call's tools on the other MCP replica: one token manager, two servers (a load balancer's view).
    # As behind a load balancer: the shared URL, routed to replica 1, with the call's DPoP key.
    other = McpBank(bank.tokens, stack.resource, transport=McpReplica(stack, 1), dpop=bank.dpop)
    checking, savings = stack.account(), stack.account(kind="savings")
    payee = stack.payee()
    before = {kind: Decimal(stack.balance(kind=kind)) for kind in ("checking", "savings")}
    try:
        accounts = (await bank.get_balance())["accounts"]
        assert {a["account_id"] for a in accounts} >= {checking, savings}
        history = (await other.list_transactions(account_id=checking, limit=3))["transactions"]
        assert 0 < len(history) <= 3
        assert payee in {p["payee_id"] for p in (await bank.list_payees())["payees"]}

        bill = Movement("payment", checking, payee, "12.50", "USD", "e2e-pay-1")
        paid = await other.make_payment(
            checking, payee, "12.50", "e2e-pay-1", memo="power bill", confirmed=bill
        )
        assert paid["status"] == "completed"
        # The same idempotency key on the other replica returns the first payment and moves nothing.
        again = await bank.make_payment(
            checking, payee, "12.50", "e2e-pay-1", memo="power bill", confirmed=bill
        )
        assert again["payment_id"] == paid["payment_id"]
        assert Decimal(stack.balance()) == before["checking"] - Decimal("12.50")

        move = Movement("transfer", checking, savings, "20.00", "USD", "e2e-move-1")
        moved = await bank.transfer_between_accounts(checking, savings, "20.00", "e2e-move-1", confirmed=move)
        assert moved["status"] == "completed"
        assert Decimal(stack.balance()) == before["checking"] - Decimal("32.50")
        assert Decimal(stack.balance(kind="savings")) == before["savings"] + Decimal("20.00")

        settings_result = await other.update_notification_settings(low_balance_alert=True, channel="sms")
        assert settings_result["settings"]["channel"] == "sms"
        assert (await other.get_balance("checking"))["accounts"][0]["balance"] == stack.balance()

        # A transact token is single-use across replicas: spent on one, refused by the other.
        args = {"from_account_id": checking, "payee_id": payee, "amount": "1.00", "idempotency_key": "e2e-1"}
        single = await bank.tokens.transact_token(
            Movement("payment", checking, payee, "1.00", "USD", "e2e-1")
        )
        assert tool_result(
            await mcp_post(
                stack.mcp_urls[0], single, "make_payment", args, dpop=bank.dpop, resource=stack.resource
            )
        )["status"]
        # The very payment it was bound to, on the other replica: only the spent jti stands in the way.
        replayed = await mcp_post(
            stack.mcp_urls[1],
            single,
            "make_payment",
            args,
            dpop=bank.dpop,
            resource=stack.resource,
        )
        assert replayed.status_code == 401
        assert Decimal(stack.balance()) == before["checking"] - Decimal("33.50")

        # The refresh token the call holds now; after end() the issuer must refuse it on every replica.
        last_refresh = bank.tokens._refresh_token  # white-box: the family's live token, to prove revocation
        assert last_refresh is not None
    finally:
        await other.aclose()
        assert await bank.end()
    with pytest.raises(AuthorizationLost):
        await bank.get_balance()
    for replica in (0, 1):
        http, _ = issuer_client(stack, target=replica)
        async with http:
            key = load_client_key(stack.state, "orchestrator")
            form = assertion_form("orchestrator", key, f"{stack.issuer}/token", time.time())
            # With a proof by the call's own key: the family is revoked, not merely bound to another key.
            assert bank.dpop is not None
            refused = await http.post(
                "/token",
                data={"grant_type": "refresh_token", "refresh_token": last_refresh, "scope": "read", **form},
                headers={"DPoP": bank.dpop.proof("POST", f"{stack.issuer}/token")},
            )
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "invalid_grant"


async def test_a_rotation_on_one_issuer_replica_is_seen_by_both_mcp_replicas(stack: Stack) -> None:
    async with session_tokens(stack, target=1) as (tokens, _, key):
        old = await fresh_token(tokens)
        old_kid = kid_of(old)

        rotated = await voicebank_cli(stack, "keys", "rotate", "--force", "--issuer", stack.issuer_urls[0])
        assert rotated.code == 0, rotated.out
        assert old_kid in rotated.out

        # Replica 1 signs with the key replica 0 promoted: they share the ring in Redis.
        new = await fresh_token(tokens)
        new_kid = kid_of(new)
        assert new_kid != old_kid
        assert active_kids(await admin_keys(stack, 1)) == [new_kid]
        states = {k["kid"]: k["state"] for k in await admin_keys(stack, 1)}
        assert states[old_kid] == "retiring"
        for url in stack.mcp_urls:
            for token in (new, old):  # the new key verifies, and tokens signed before still do
                assert tool_result(
                    await mcp_post(url, token, "list_payees", {}, dpop=key, resource=stack.resource)
                )["payees"]


async def test_a_revoked_key_is_refused_at_once_by_both_mcp_replicas(stack: Stack) -> None:
    async with session_tokens(stack, target=1) as (tokens, _, key):
        doomed = await fresh_token(tokens)
        kid = kid_of(doomed)
        for url in stack.mcp_urls:
            assert tool_result(
                await mcp_post(url, doomed, "list_payees", {}, dpop=key, resource=stack.resource)
            )["payees"]

        # Both MCP replicas listen on the key-events channel before the revocation is published.
        redis = aioredis.Redis.from_url(stack.redis_url)
        try:

            async def both_listening() -> bool:
                counts = dict(await redis.pubsub_numsub(KEY_EVENTS_CHANNEL))
                return int(counts.get(KEY_EVENTS_CHANNEL.encode(), 0)) >= len(stack.mcps)

            assert await eventually(both_listening)
        finally:
            await redis.aclose()

        revoked = await voicebank_cli(stack, "keys", "revoke", kid, "--issuer", stack.issuer_urls[0])
        assert revoked.code == 0, revoked.out

        async def refused_everywhere() -> bool:
            answers = [
                await mcp_post(url, doomed, "list_payees", {}, dpop=key, resource=stack.resource)
                for url in stack.mcp_urls
            ]
            return all(a.status_code == 401 for a in answers)

        # The cached JWKS still lists the key for minutes: only the key event can make this quick.
        assert await eventually(refused_everywhere, attempts=50)
        for url in stack.mcp_urls:
            answer = await mcp_post(url, doomed, "list_payees", {}, dpop=key, resource=stack.resource)
            assert 'error="invalid_token"' in answer.headers["www-authenticate"]

        # The next key took over; replica 1 signs with it and both MCP replicas accept it.
        replacement = await fresh_token(tokens)
        assert kid_of(replacement) != kid
        assert active_kids(await admin_keys(stack, 1)) == [kid_of(replacement)]
        for url in stack.mcp_urls:
            assert tool_result(
                await mcp_post(url, replacement, "list_payees", {}, dpop=key, resource=stack.resource)
            )["payees"]
