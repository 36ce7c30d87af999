"""An admin-revoked key stops verifying: at once with Redis key events, within the JWKS max-age without."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.stack import INVALID_TOKEN, Stack, kid_of, running_stack

JWKS_MAX_AGE = 300  # the issuer's Cache-Control max-age


async def revoked_and_fresh_tokens(stack: Stack) -> tuple[str, str, str]:
    """A read token signed by the active key, which is then revoked, and a token signed after."""
    tokens = await stack.tokens()
    old = await tokens.get_token("read")
    assert (await stack.call(old, "get_balance"))["accounts"]
    revoked = await stack.active_kid()
    assert kid_of(old) == revoked
    await stack.revoke(revoked)
    tokens.invalidate("read")
    fresh = await tokens.get_token("read")
    assert kid_of(fresh) == await stack.active_kid() != revoked  # the next key took over
    return old, fresh, revoked


async def test_a_revoked_key_is_dropped_at_once_with_redis_key_events(tmp_path: Path, redis_url: str) -> None:
    async with running_stack(tmp_path, redis_url=redis_url, keys_store="redis") as stack:
        subscriber = stack.mcp_app.state.key_events
        await asyncio.wait_for(subscriber.subscribed.wait(), 10)
        fetches = stack.link.jwks_fetches

        old, fresh, revoked = await revoked_and_fresh_tokens(stack)
        # The Redis key store published the revocation; the MCP server drops the kid (bounded wait for the
        # event to cross Redis, no time passes on any clock).
        await asyncio.wait_for(subscriber.wait_dropped(revoked), 10)

        response = await stack.post(old, "list_payees", {})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == INVALID_TOKEN
        # Dropped by the event, not by a JWKS refetch; the promoted key was published ahead.
        assert stack.link.jwks_fetches == fetches
        assert (await stack.call(fresh, "list_payees"))["payees"]


async def test_without_redis_a_revoked_key_stops_verifying_within_the_jwks_max_age(stack: Stack) -> None:
    started = stack.clock()
    old, fresh, _ = await revoked_and_fresh_tokens(stack)
    # No key events: the MCP server's cached JWKS still lists the key until its max-age passes.
    assert (await stack.call(old, "list_payees"))["payees"]

    stack.clock.now = started + JWKS_MAX_AGE + 1  # the old token itself is still valid (60 s leeway)
    response = await stack.post(old, "list_payees", {})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == INVALID_TOKEN
    assert (await stack.call(fresh, "list_payees"))["payees"]


async def test_regression_stale_jwks_served_a_revoked_key_past_max_age(stack: Stack) -> None:
    """The JWKS cache used to answer from its stale copy while its refetch ran in the background.

    So the first requests after the max-age (all of them, concurrently, until the refetch finished)
    still verified with a key the issuer had revoked, however long the cache had sat idle. Now a cache
    past its max-age waits for the refetch unless fetches are failing (issuer down).
    """
    started = stack.clock()
    old, fresh, _ = await revoked_and_fresh_tokens(stack)
    fetches = stack.link.jwks_fetches
    stack.clock.now = started + JWKS_MAX_AGE + 1  # the cache sat idle past its max-age
    answers = await asyncio.gather(*(stack.post(old, "list_payees", {}) for _ in range(20)))
    assert [a.status_code for a in answers] == [401] * 20
    assert stack.link.jwks_fetches == fetches + 1  # the burst shared one refetch
    assert (await stack.post(fresh, "list_payees", {})).status_code == 200
