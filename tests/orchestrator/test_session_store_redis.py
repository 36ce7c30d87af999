"""The Redis session store against the real redis-server fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from orchestrator import RedisSessionStore, SessionRecord
from orchestrator._call._session_store import grant_digest

GRANT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_record_lifecycle_with_ttls(client: Redis) -> None:
    now = [1_700_000_000.5]
    store = RedisSessionStore(client, clock=lambda: now[0], active_ttl=3600, ended_ttl=60)
    record = SessionRecord("room-1", "alice", 1_700_000_000.25, grant_sha256=grant_digest(GRANT))
    await store.open(record)

    assert await store.get("room-1") == record
    assert 3590 < await client.ttl(store.key("room-1")) <= 3600

    now[0] += 30
    await store.close("room-1")
    ended = await store.get("room-1")
    assert ended is not None
    assert (ended.state, ended.ended_at) == ("ended", 1_700_000_030.5)
    assert 0 < await client.ttl(store.key("room-1")) <= 60


async def test_no_token_is_stored_in_plain_text(client: Redis) -> None:
    store = RedisSessionStore(client)
    await store.open(SessionRecord("room-1", "alice", 1.0, grant_sha256=grant_digest(GRANT)))
    await store.close("room-1")
    dumped = b""
    async for key in client.scan_iter():
        dumped += key + b"".join(k + v for k, v in (await client.hgetall(key)).items())
    assert GRANT.encode() not in dumped
    assert GRANT.split(".")[2].encode() not in dumped
    assert grant_digest(GRANT).encode() in dumped


async def test_closing_an_unknown_session_creates_nothing(client: Redis) -> None:
    store = RedisSessionStore(client)
    await store.close("never-opened")
    assert await client.keys("*") == []
    assert await store.get("never-opened") is None


async def test_reopening_replaces_the_old_record(client: Redis) -> None:
    store = RedisSessionStore(client)
    await store.open(SessionRecord("room-1", "alice", 1.0, grant_sha256="x"))
    await store.close("room-1")
    await store.open(SessionRecord("room-1", "alice", 2.0))
    assert await store.get("room-1") == SessionRecord("room-1", "alice", 2.0)
