"""The Redis client of the services: a command is sent twice only when sending it twice is harmless.

A real Redis behind a proxy that loses one answer (the command ran, its reply never arrived) and a real
Redis restart (every pooled connection dead) are the two ways a connection drops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from keys import RedisReplayCache, exactly_once, idempotent, redis_client
from tests.support.clock import FakeClock
from tests.support.redis_proxy import AnswerLosingProxy
from tests.support.servers import RedisServer

T0 = 1_700_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def proxy(redis_proxy: AnswerLosingProxy) -> AnswerLosingProxy:
    return redis_proxy


@pytest.fixture
async def lossy(proxy: AnswerLosingProxy) -> AsyncIterator[aioredis.Redis]:
    client = redis_client(proxy.url)
    yield client
    await client.aclose()


@pytest.fixture
async def direct(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = redis_client(redis_url)
    yield client
    await client.aclose()


async def test_the_client_itself_never_sends_a_command_twice(
    proxy: AnswerLosingProxy, lossy: aioredis.Redis, direct: aioredis.Redis
) -> None:
    proxy.lose_answer_to(b"INCR")
    with pytest.raises(RedisConnectionError):
        await lossy.incr("n")
    assert proxy.lost == 1
    assert await direct.get("n") == b"1"  # it ran once, and nobody sent it again


async def test_exactly_once_sends_a_change_once_even_when_its_answer_is_lost(
    proxy: AnswerLosingProxy, lossy: aioredis.Redis, direct: aioredis.Redis
) -> None:
    proxy.lose_answer_to(b"INCR")
    with pytest.raises(RedisConnectionError):
        await exactly_once(lossy, lambda pinned: pinned.incr("n"))
    assert await direct.get("n") == b"1"
    # The caller's next change goes through on a fresh connection.
    assert await exactly_once(lossy, lambda pinned: pinned.incr("n")) == 2


async def test_exactly_once_replaces_a_connection_redis_dropped_while_idle(
    redis_url: str, redis_server: RedisServer
) -> None:
    client = redis_client(redis_url)
    try:
        await client.ping()  # leaves a connection in the pool
        redis_server.restart()
        # The PING on the dead connection fails before the change was ever written; the change runs once.
        assert await exactly_once(client, lambda pinned: pinned.incr("n")) == 1
        assert await client.get("n") == b"1"
    finally:
        await client.aclose()


async def test_idempotent_sends_once_more_after_a_lost_answer(
    proxy: AnswerLosingProxy, lossy: aioredis.Redis
) -> None:
    await lossy.set("k", "v")
    proxy.lose_answer_to(b"GET")
    assert await idempotent(lossy, lambda: lossy.get("k")) == b"v"
    assert proxy.lost == 1


async def test_idempotent_gives_up_after_the_second_drop(redis_url: str, redis_server: RedisServer) -> None:
    client = redis_client(redis_url)
    try:
        await client.ping()
        redis_server.stop()
        try:
            with pytest.raises(RedisConnectionError):
                await idempotent(client, client.ping)
        finally:
            redis_server.start()
    finally:
        await client.aclose()


async def test_regression_a_lost_answer_to_a_first_use_is_not_a_replay(
    proxy: AnswerLosingProxy, lossy: aioredis.Redis, clock: FakeClock
) -> None:
    """`SET NX` sent again after its answer was lost found its own key and refused the first use (closed,
    but a legitimate request refused); the mark of the call now tells its own first sending apart."""
    cache = RedisReplayCache(lossy, prefix="test:replay", clock=clock)
    proxy.lose_answer_to(b"SET")
    assert await cache.first_use("jti-1", T0 + 60) is True
    assert proxy.lost == 1
    assert await cache.first_use("jti-1", T0 + 60) is False
