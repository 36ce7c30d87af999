"""The replay cache: one behaviour in memory and on a real Redis; both fail closed."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from keys import MemoryReplayCache, ObservedReplayCache, RedisReplayCache, ReplayCache, ReplayUnavailable
from tests.support.clock import FakeClock
from tests.support.servers import RedisServer

T0 = 1_700_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0))
    yield client
    await client.aclose()


Make = Callable[[], ReplayCache]


@pytest.fixture(params=["memory", "redis"])
def make_cache(request: pytest.FixtureRequest, clock: FakeClock) -> Make:
    if request.param == "memory":
        return lambda: MemoryReplayCache(clock=clock)
    client: aioredis.Redis = request.getfixturevalue("redis_client")
    return lambda: RedisReplayCache(client, prefix="test:replay", clock=clock)


async def test_an_identifier_is_used_once_until_it_expires(make_cache: Make, clock: FakeClock) -> None:
    cache = make_cache()
    assert await cache.first_use("a", T0 + 60) is True
    assert await cache.first_use("a", T0 + 60) is False
    assert await cache.first_use("b", T0 + 60) is True
    clock.now = T0 + 59
    assert await cache.first_use("a", T0 + 120) is False


async def test_memory_forgets_at_expiry(clock: FakeClock) -> None:
    # Redis expires keys on its own (wall) clock, checked through the TTL below; memory follows `clock`.
    cache = MemoryReplayCache(clock=clock)
    assert await cache.first_use("a", T0 + 60) is True
    clock.now = T0 + 60
    assert await cache.first_use("a", T0 + 120) is True
    assert await cache.first_use("a", T0 + 120) is False


async def test_memory_refuses_when_full_of_live_identifiers(clock: FakeClock) -> None:
    cache = MemoryReplayCache(clock=clock, max_entries=2)
    assert await cache.first_use("a", T0 + 60)
    assert await cache.first_use("b", T0 + 90)
    with pytest.raises(ReplayUnavailable) as refused:
        await cache.first_use("c", T0 + 60)
    assert refused.value.code == "replay_store_unavailable"
    assert await cache.first_use("a", T0 + 60) is False  # a known one is still answered
    clock.now = T0 + 60  # "a" expired: its place is free, "b" is still live
    assert await cache.first_use("c", T0 + 120) is True
    with pytest.raises(ReplayUnavailable):
        await cache.first_use("d", T0 + 120)


async def test_memory_prunes_expired_identifiers_as_it_goes(clock: FakeClock) -> None:
    cache = MemoryReplayCache(clock=clock, max_entries=1000)
    for i in range(1000):
        assert await cache.first_use(f"old-{i}", T0 + 10 + i)
    clock.now = T0 + 10 + 500  # the first 501 have expired
    assert await cache.first_use("new", T0 + 2000)
    assert len(cache) == 500  # 499 live old ones and the new one
    clock.now = T0 + 5000
    assert await cache.first_use("newer", T0 + 6000)
    assert len(cache) == 1


def test_memory_needs_room() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryReplayCache(max_entries=0)


async def test_redis_keeps_an_identifier_for_its_remaining_time_under_a_hashed_key(
    redis_client: aioredis.Redis, clock: FakeClock
) -> None:
    cache = RedisReplayCache(redis_client, prefix="test:replay", clock=clock)
    chosen = "client-chosen:" + "x" * 200
    assert await cache.first_use(chosen, T0 + 90.5) is True
    stored = [key async for key in redis_client.scan_iter("test:replay:*")]
    assert len(stored) == 1
    assert chosen.encode() not in stored[0]
    assert len(stored[0]) == len("test:replay:") + 64  # a SHA-256 hex digest, whatever the identifier
    assert 90 <= await redis_client.ttl(stored[0]) <= 91
    # Already expired by the caller's clock: still kept for a second, never with a zero or negative TTL.
    assert await cache.first_use("late", T0 - 5) is True
    assert await cache.first_use("late", T0 - 5) is False


async def test_redis_down_fails_closed(clock: FakeClock) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    client = aioredis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
    try:
        cache = RedisReplayCache(client, prefix="test:replay", clock=clock)
        with pytest.raises(ReplayUnavailable, match="ConnectionError"):
            await cache.first_use("a", T0 + 60)
    finally:
        await client.aclose()


async def test_regression_a_redis_restart_costs_no_spurious_refusal(
    redis_url: str, redis_server: RedisServer, clock: FakeClock
) -> None:
    """A pooled connection is stale after Redis restarts and its first command fails (redis-py 8 does not
    retry): the MCP server answered the first payment after a restart 503, at random per connection."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        cache = RedisReplayCache(client, prefix="test:replay", clock=clock)
        assert await cache.first_use("before", T0 + 60) is True
        redis_server.restart()
        assert await cache.first_use("after", T0 + 60) is True
        assert await cache.first_use("after", T0 + 60) is False
    finally:
        await client.aclose()


async def test_an_observed_cache_reports_each_outcome_and_still_fails_closed(clock: FakeClock) -> None:
    seen: list[tuple[str, str]] = []
    cache = ObservedReplayCache(
        MemoryReplayCache(clock=clock, max_entries=1), lambda key, outcome: seen.append((key, outcome))
    )
    assert await cache.first_use("grant:a", T0 + 10)
    assert not await cache.first_use("grant:a", T0 + 10)
    with pytest.raises(ReplayUnavailable):
        await cache.first_use("grant:b", T0 + 10)  # full of live identifiers: refused, reported
    assert seen == [("grant:a", "first"), ("grant:a", "replayed"), ("grant:b", "unavailable")]
