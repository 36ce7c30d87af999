"""The in-process session store, with a moved clock."""

from __future__ import annotations

from orchestrator import MemorySessionStore, SessionRecord
from orchestrator._call._session_store import grant_digest
from tests.support.clock import FakeClock


async def test_open_close_and_expiry() -> None:
    clock = FakeClock(1_000_000.0)
    store = MemorySessionStore(clock=clock, active_ttl=100, ended_ttl=10)
    record = SessionRecord("room-1", "alice", clock.now, grant_sha256=grant_digest("a.b.c"))
    await store.open(record)
    assert await store.get("room-1") == record

    clock.now += 5
    await store.close("room-1")
    ended = await store.get("room-1")
    assert ended is not None
    assert (ended.state, ended.ended_at, ended.user_id) == ("ended", clock.now, "alice")

    await store.close("room-1")  # closing twice changes nothing
    assert await store.get("room-1") == ended

    clock.now += 10
    assert await store.get("room-1") is None
    await store.close("room-1")  # closing a record that is gone is harmless
    assert await store.get("room-1") is None


async def test_an_abandoned_active_record_expires() -> None:
    clock = FakeClock(1_000_000.0)
    store = MemorySessionStore(clock=clock, active_ttl=100)
    await store.open(SessionRecord("room-2", "bob", clock.now))
    clock.now += 99
    assert await store.get("room-2") is not None
    clock.now += 1
    assert await store.get("room-2") is None


def test_grant_digest_is_sha256_hex() -> None:
    assert grant_digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
