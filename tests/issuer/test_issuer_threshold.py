"""APPROVAL_THRESHOLD counts every movement of a session, atomically and across replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import pytest
import redis.asyncio as aioredis

from issuer import IssuerSettings
from issuer._oauth._spending import MemorySpendingLedger, RedisSpendingLedger, SpendingLedger
from keys import KeyPair
from tests.support.clock import FakeClock
from tests.support.issuer import Harness, payment, running, transfer


@pytest.fixture(params=["memory", "redis"])
async def pair(
    request: pytest.FixtureRequest,
    make_settings: Callable[..., IssuerSettings],
    clock: FakeClock,
    client_keys: dict[str, KeyPair],
) -> AsyncIterator[tuple[Harness, Harness]]:
    """Two issuer replicas on one Redis, or one in-memory issuer twice."""
    async with AsyncExitStack() as stack:
        if request.param == "memory":
            one = await stack.enter_async_context(running(make_settings(), clock, client_keys))
            yield one, one
            return
        settings = make_settings(redis_url=request.getfixturevalue("redis_url"), keys_store="redis")
        a = await stack.enter_async_context(running(settings, clock, client_keys))
        b = await stack.enter_async_context(running(settings, clock, client_keys))
        yield a, b


async def test_eleven_payments_of_49_in_one_session_the_eleventh_needs_approval(
    pair: tuple[Harness, Harness],
) -> None:
    a, b = pair
    token = (await a.login())["refresh_token"]
    for n in range(10):  # 490.00 in all, alternating replicas
        h = (a, b)[n % 2]
        response = await h.transact(token, payment(amount="49.00", idempotency_key=f"k{n}"))
        assert response.status_code == 200, response.text
        token = response.json()["refresh_token"]
    eleventh = await b.transact(token, payment(amount="49.00", idempotency_key="k10"))
    assert eleventh.status_code == 400
    assert eleventh.json()["error"] == "interaction_required"
    # The refresh token was not spent: the call goes on, and small payments still fit under the threshold.
    fits = await a.transact(token, payment(amount="10.00", idempotency_key="k11"))
    assert fits.status_code == 200, fits.text


async def test_the_threshold_itself_is_allowed_one_cent_more_is_not(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    token = (await a.login())["refresh_token"]
    response = await a.transact(token, payment(amount="500.00"))
    assert response.status_code == 200, response.text
    over = await b.transact(response.json()["refresh_token"], payment(amount="0.01", idempotency_key="k2"))
    assert over.json()["error"] == "interaction_required"


async def test_one_payment_above_the_threshold_needs_approval(pair: tuple[Harness, Harness]) -> None:
    a, _ = pair
    token = (await a.login())["refresh_token"]
    assert (await a.transact(token, payment(amount="750.00"))).json()["error"] == "interaction_required"


async def test_transfers_count_toward_the_same_total(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    token = (await a.login())["refresh_token"]
    response = await a.transact(token, transfer(amount="300.00"))
    assert response.status_code == 200, response.text
    over = await b.transact(response.json()["refresh_token"], payment(amount="200.01", idempotency_key="k2"))
    assert over.json()["error"] == "interaction_required"


async def test_sessions_are_counted_apart(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    first = (await a.login())["refresh_token"]
    second = (await b.login())["refresh_token"]
    assert (await a.transact(first, payment(amount="400.00"))).status_code == 200
    assert (await b.transact(second, payment(amount="400.00"))).status_code == 200


async def test_a_refused_request_does_not_count(pair: tuple[Harness, Harness]) -> None:
    a, b = pair
    token = (await a.login())["refresh_token"]
    rotated = (await a.refresh(token, scope="read")).json()["refresh_token"]
    # Presenting the spent token is reuse: refused, the family revoked, and nothing counted.
    assert (await b.transact(token, payment(amount="400.00"))).json()["error"] == "invalid_grant"
    assert (await a.refresh(rotated, scope="read")).json()["error"] == "invalid_grant"
    fresh = (await a.login())["refresh_token"]
    assert (await b.transact(fresh, payment(amount="500.00"))).status_code == 200


async def test_a_reservation_is_released_when_the_refresh_token_turns_out_spent(
    make_settings: Callable[..., IssuerSettings], clock: FakeClock, client_keys: dict[str, KeyPair]
) -> None:
    async with running(make_settings(), clock, client_keys) as h:
        token = (await h.login())["refresh_token"]
        ledger = h.app.state.issuer.spending
        sid = (await h.app.state.issuer.refresh.peek(token)).sid
        # Two requests with one refresh token: one wins, the loser's reservation is taken back.
        answers = await asyncio.gather(
            h.transact(token, payment(amount="200.00")), h.transact(token, payment(amount="200.00"))
        )
        assert sorted(r.status_code for r in answers) == [200, 400]
        assert await ledger.reserve(sid, 30_000, limit=50_000, expires_at=clock() + 60)


async def test_the_threshold_is_a_setting(
    make_settings: Callable[..., IssuerSettings], clock: FakeClock, client_keys: dict[str, KeyPair]
) -> None:
    async with running(make_settings(approval_threshold="100"), clock, client_keys) as h:
        token = (await h.login())["refresh_token"]
        assert (await h.transact(token, payment(amount="100.01"))).json()["error"] == "interaction_required"
        assert (await h.transact(token, payment(amount="100"))).status_code == 200


@pytest.mark.parametrize("value", ["500,00", "-1", "1e3", "500.001", ""])
def test_a_malformed_threshold_is_refused_at_startup(
    make_settings: Callable[..., IssuerSettings], value: str
) -> None:
    with pytest.raises(ValueError, match="APPROVAL_THRESHOLD"):
        make_settings(approval_threshold=value)


@pytest.fixture(params=["memory", "redis"])
async def ledger(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[SpendingLedger]:
    if request.param == "memory":
        yield MemorySpendingLedger(clock=clock)
        return
    client = aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
    try:
        yield RedisSpendingLedger(client, clock=clock)
    finally:
        await client.aclose()


async def test_concurrent_reservations_never_exceed_the_limit(
    ledger: SpendingLedger, clock: FakeClock
) -> None:
    results = await asyncio.gather(
        *(ledger.reserve("s1", 4_900, limit=50_000, expires_at=clock() + 60) for _ in range(50))
    )
    assert results.count(True) == 10


async def test_release_and_add(ledger: SpendingLedger, clock: FakeClock) -> None:
    later = clock() + 60
    assert await ledger.reserve("s1", 50_000, limit=50_000, expires_at=later)
    await ledger.release("s1", 20_000)
    assert await ledger.reserve("s1", 20_000, limit=50_000, expires_at=later)
    await ledger.add("s1", 75_000, expires_at=later)  # approved: counted over the limit
    assert not await ledger.reserve("s1", 1, limit=50_000, expires_at=later)
    await ledger.release("unknown", 1)  # nothing to release: no error, nothing created
    assert await ledger.reserve("unknown", 50_000, limit=50_000, expires_at=later)


async def test_memory_totals_expire_with_the_session(clock: FakeClock) -> None:
    ledger = MemorySpendingLedger(clock=clock)
    assert await ledger.reserve("s1", 50_000, limit=50_000, expires_at=clock() + 10)
    clock.advance(11)
    assert await ledger.reserve("s1", 50_000, limit=50_000, expires_at=clock() + 10)


async def test_redis_totals_expire_with_the_session_under_a_hashed_key(
    redis_url: str, clock: FakeClock
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        ledger = RedisSpendingLedger(client, clock=clock)
        assert await ledger.reserve("s1", 50_000, limit=50_000, expires_at=clock() + 10)
        (key,) = await client.keys("voicebank:spent:*")
        assert b"s1" not in key.split(b":")[-1]
        assert 0 < await client.ttl(key) <= 10
    finally:
        await client.aclose()
