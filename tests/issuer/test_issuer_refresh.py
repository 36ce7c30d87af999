"""Rotating refresh tokens on memory and on real Redis: reuse, expiry, binding, one winner under races."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis

from issuer import IssuerSettings
from issuer._oauth._errors import InvalidGrant
from issuer._oauth._refresh import MemoryRefreshStore, RefreshLifetimes, RefreshStore
from issuer._oauth._refresh_redis import RedisRefreshStore
from keys import KeyPair
from tests.support.clock import FakeClock
from tests.support.issuer import Harness, running


async def test_reuse_of_a_spent_token_revokes_the_family(h: Harness) -> None:
    first = await h.login()
    second = (await h.refresh(first["refresh_token"])).json()
    reused = await h.refresh(first["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    # The legitimate holder's newer token dies with the family.
    assert (await h.refresh(second["refresh_token"])).json()["error"] == "invalid_grant"


async def test_idle_expiry(h: Harness) -> None:
    first = await h.login()
    h.clock.advance(1800)
    second = await h.refresh(first["refresh_token"])
    assert second.status_code == 200
    h.clock.advance(1801)
    assert (await h.refresh(second.json()["refresh_token"])).json()["error"] == "invalid_grant"


async def test_absolute_expiry_despite_steady_use(h: Harness) -> None:
    token = (await h.login())["refresh_token"]
    for _ in range(24):  # 24 x 30 min = 12 h, each within the idle window
        h.clock.advance(1799)
        response = await h.refresh(token)
        assert response.status_code == 200, response.text
        token = response.json()["refresh_token"]
    h.clock.advance(1799)
    assert (await h.refresh(token)).json()["error"] == "invalid_grant"


async def test_scope_may_only_narrow_and_a_refused_widening_keeps_the_token(h: Harness) -> None:
    session = await h.session("alice", "read")
    first = (await h.exchange(session["session_grant"])).json()
    wider = await h.refresh(first["refresh_token"], scope="read transact")
    assert wider.json()["error"] == "invalid_scope"
    assert (await h.refresh(first["refresh_token"], scope="read")).status_code == 200


async def test_another_client_presenting_the_token_revokes_the_family(h: Harness) -> None:
    first = await h.login()
    assert (await h.refresh(first["refresh_token"], client_id="other")).json()["error"] == "invalid_grant"
    assert (await h.refresh(first["refresh_token"])).json()["error"] == "invalid_grant"


async def test_concurrent_refreshes_have_exactly_one_winner(h: Harness) -> None:
    token = (await h.login())["refresh_token"]
    responses = await asyncio.gather(*(h.refresh(token) for _ in range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, statuses
    assert statuses.count(400) == 19


async def stores(redis_url: str) -> AsyncIterator[tuple[str, RefreshStore]]:
    lifetimes = RefreshLifetimes(idle=1800, absolute=43200)
    yield "memory", MemoryRefreshStore(lifetimes)
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield "redis", RedisRefreshStore(client, lifetimes)
    finally:
        await client.aclose()


async def test_store_level_race_and_hash_only_storage(redis_url: str) -> None:
    async for name, store in stores(redis_url):
        token = await store.create(client_id="c", sub="alice", sid="s", scope="read", now=0.0)
        results = await asyncio.gather(
            *(store.spend(token, client_id="c", now=1.0) for _ in range(20)), return_exceptions=True
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        assert len(winners) == 1, name
        assert all(isinstance(r, InvalidGrant) for r in results if isinstance(r, BaseException)), name
        family, next_token = winners[0]
        assert family.revoked is False
        # Reuse revoked the family; the winner's new token is dead too.
        with pytest.raises(InvalidGrant):
            await store.spend(next_token, client_id="c", now=2.0)
    client = aioredis.Redis.from_url(redis_url)
    keys = [k.decode() if isinstance(k, bytes) else k for k in await client.keys("*")]
    await client.aclose()
    assert hashlib.sha256(token.encode()).hexdigest() in " ".join(keys)
    assert not any(token in k for k in keys)


async def test_a_new_family_names_its_id_as_peek_does_on_every_store(redis_url: str) -> None:
    async for name, store in stores(redis_url):
        token, family_id = await store.create_family(
            client_id="c", sub="alice", sid="s", scope="read", now=0.0
        )
        family = await store.peek(token)
        assert family is not None, name
        assert (family.family_id, family.sid, family.scope) == (family_id, "s", "read"), name
        other = await store.create(client_id="c", sub="alice", sid="s", scope="read", now=0.0)
        assert (await store.peek(other)) not in (None, family), name


async def test_a_spend_answers_the_family_as_it_left_it_on_every_store(redis_url: str) -> None:
    # The Redis spend script hands back the family's fields itself (no second read after it): they must be
    # the fields as the spend left them, as the memory store's are.
    async for name, store in stores(redis_url):
        token = await store.create(client_id="c", sub="alice", sid="s-left", scope="read pay", now=10.0)
        before = await store.peek(token)
        family, next_token = await store.spend(token, client_id="c", now=15.5)
        assert before is not None, name
        assert family == replace(before, last_used=15.5), name
        assert await store.peek(next_token) == family, name
        assert await store.peek(token) == family, name  # spent, not revoked: still names its family


async def test_redis_create_writes_the_layout_every_replica_reads(redis_url: str) -> None:
    # Replicas of other versions read these keys during a rolling upgrade: the family hash, the token hash and
    # the three expiry-scored indexes, each expiring with the family.
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    prefix = "test-layout"
    lifetimes = RefreshLifetimes(idle=1800, absolute=43200)
    store = RedisRefreshStore(client, lifetimes, prefix=prefix)
    ttl = 43200 + 1800
    try:
        token = await store.create(client_id="c", sub="erin", sid="s-lay", scope="read", now=100.5, jkt="k1")
        family = await store.peek(token)
        assert family is not None
        family_key = f"{prefix}:fam:{family.family_id}"
        token_key = f"{prefix}:rt:{hashlib.sha256(token.encode()).hexdigest()}"
        assert await client.hgetall(family_key) == {
            "client_id": "c",
            "sub": "erin",
            "sid": "s-lay",
            "scope": "read",
            "created_at": "100.5",
            "last_used": "100.5",
            "revoked": "0",
            "jkt": "k1",
        }
        assert await client.hgetall(token_key) == {"family": family.family_id, "spent": "0"}
        for kind, value in (("sid", "s-lay"), ("sub", "erin"), ("client_id", "c")):
            index = f"{prefix}:{kind}-families:{hashlib.sha256(value.encode()).hexdigest()}"
            assert await client.zrange(index, 0, -1, withscores=True) == [(family.family_id, 100.5 + ttl)]
            assert ttl - 5 <= await client.ttl(index) <= ttl
        for key in (family_key, token_key):
            assert ttl - 5 <= await client.ttl(key) <= ttl
    finally:
        await client.aclose()


async def test_redis_token_whose_family_key_is_gone_is_unknown_to_every_operation(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    prefix = "test-family-gone"
    store = RedisRefreshStore(client, RefreshLifetimes(idle=1800, absolute=43200), prefix=prefix)
    try:
        token = await store.create(client_id="c", sub="dan", sid="s-gone", scope="read", now=0.0)
        family = await store.peek(token)
        assert family is not None
        await client.delete(f"{prefix}:fam:{family.family_id}")
        assert await store.peek(token) is None
        assert await store.revoke(token) is None
        with pytest.raises(InvalidGrant):
            await store.spend(token, client_id="c", now=1.0)
        assert await store.peek(f"{token}x") is None
        assert await store.revoke(f"{token}x") is None
    finally:
        await client.aclose()


async def test_revoke_ends_the_family_on_every_store(h: Harness) -> None:
    first = await h.login()
    second = (await h.refresh(first["refresh_token"])).json()
    response = await h.http.post("/revoke", data={"token": second["refresh_token"], **h.auth("orchestrator")})
    assert response.status_code == 200
    assert (await h.refresh(second["refresh_token"])).json()["error"] == "invalid_grant"


async def test_memory_store_forgets_families_past_their_absolute_lifetime_and_keeps_live_ones() -> None:
    store = MemoryRefreshStore(RefreshLifetimes(idle=1800, absolute=100))
    old = await store.create(client_id="c", sub="alice", sid="s1", scope="read", now=0.0)
    _, old_next = await store.spend(old, client_id="c", now=50.0)
    live = await store.create(client_id="c", sub="bob", sid="s2", scope="read", now=60.0)
    # Creating a family at t=150 prunes the first (created at 0, older than 100 s), every token it handed out.
    await store.create(client_id="c", sub="carol", sid="s3", scope="read", now=150.0)
    assert await store.peek(old) is None
    assert await store.peek(old_next) is None
    with pytest.raises(InvalidGrant):
        await store.spend(old_next, client_id="c", now=150.0)
    kept = await store.peek(live)
    assert kept is not None
    assert kept.sub == "bob"
    family, _ = await store.spend(live, client_id="c", now=151.0)
    assert family.sid == "s2"


async def test_regression_a_redis_restart_between_two_requests_is_not_a_503(
    make_settings: Callable[..., IssuerSettings],
    clock: FakeClock,
    client_keys: dict[str, KeyPair],
    redis_server: Any,
) -> None:
    # A request leaves an idle connection in the pool; Redis restarts; that connection is dead. It used to
    # answer the next /token with 503; a dropped connection is now replaced once (an outage still fails
    # closed). The test server keeps no data over a restart, so the second request needs none: a client
    # assertion, whose jti goes to the replay cache in Redis.
    settings = make_settings(redis_url=redis_server.url)
    async with running(settings, clock, client_keys) as h:
        await h.bearer("backend", "sessions:create")
        redis_server.restart()
        response = await h.token("backend", grant_type="client_credentials", scope="sessions:create")
    assert response.status_code == 200, response.text


async def test_redis_indexes_of_a_busy_client_and_user_hold_only_unexpired_families(redis_url: str) -> None:
    # The client's and the user's index are renewed by every new family, so they never expire as a whole:
    # each creation must drop what expired, or they grow with every family ever made.
    client = aioredis.Redis.from_url(redis_url)
    prefix = "test-bounded-index"
    store = RedisRefreshStore(client, RefreshLifetimes(idle=10, absolute=100), prefix=prefix)
    try:
        for i in range(50):
            await store.create(client_id="c", sub="alice", sid=f"old-{i}", scope="read", now=float(i))
        token = await store.create(client_id="c", sub="alice", sid="new", scope="read", now=200.0)
        family = await store.peek(token)
        assert family is not None

        async def members(kind: str, value: str) -> list[str]:
            key = f"{prefix}:{kind}-families:{hashlib.sha256(value.encode()).hexdigest()}"
            assert await client.type(key) == b"zset"
            return [m.decode() for m in await client.zrange(key, 0, -1)]

        # The 50 old families expired at 110..159 (absolute + idle after creation): only the new one is left.
        assert await members("client_id", "c") == [family.family_id]
        assert await members("sub", "alice") == [family.family_id]
        assert await members("sid", "new") == [family.family_id]
        # The revocations still find the live family, and count only it.
        assert await store.session_family("new", "c", 201.0) == family
        assert await store.revoke_all(now=201.0, client_id="c") == 1
        assert await store.peek(token) is None
    finally:
        await client.aclose()


async def test_redis_session_family_and_revocation_skip_expired_families(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    store = RedisRefreshStore(client, RefreshLifetimes(idle=10, absolute=100), prefix="test-expired-index")
    try:
        old = await store.create(client_id="c", sub="bob", sid="s", scope="read", now=0.0)
        # Past its key's expiry (110 s): neither the session's family nor counted by a revocation.
        assert await store.session_family("s", "c", 111.0) is None
        assert await store.revoke_all(now=111.0, sub="bob") == 0
        live = await store.create(client_id="c", sub="bob", sid="s", scope="read", now=111.0)
        found = await store.session_family("s", "c", 112.0)
        assert found is not None
        assert found == await store.peek(live)
        assert await store.revoke_all(now=112.0, sid="s") == 1
        assert await store.peek(live) is None
        assert old != live
    finally:
        await client.aclose()


async def test_regression_revocation_after_an_upgrade_finds_families_an_earlier_version_indexed(
    redis_url: str,
) -> None:
    # Earlier versions indexed families in plain sets under `<kind>:<hash>`; a family such a replica made
    # during a rolling upgrade must still end with an operator's revocation and be found for its session.
    client = aioredis.Redis.from_url(redis_url)
    prefix = "test-legacy-index"
    store = RedisRefreshStore(client, RefreshLifetimes(idle=1800, absolute=43200), prefix=prefix)
    try:
        token = await store.create(client_id="c", sub="carol", sid="s-old", scope="read", now=0.0)
        family = await store.peek(token)
        assert family is not None
        for kind, value in (("sid", "s-old"), ("sub", "carol"), ("client_id", "c")):
            digest = hashlib.sha256(value.encode()).hexdigest()
            await client.delete(f"{prefix}:{kind}-families:{digest}")
            await client.sadd(f"{prefix}:{kind}:{digest}", family.family_id)
        assert await store.session_family("s-old", "c", 1.0) == family
        assert await store.revoke_all(now=1.0, sub="carol") == 1
        assert await store.peek(token) is None
        with pytest.raises(InvalidGrant):
            await store.spend(token, client_id="c", now=2.0)
    finally:
        await client.aclose()
