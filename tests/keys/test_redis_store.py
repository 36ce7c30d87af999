"""The Redis key store on a real Redis: replicas agree on one ring, rotate exactly once, hear key events."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

import keys
from keys import CorruptKeyRing, KeyState, RedisKeyStore, RotationPolicy, WrongPassphrase

POLICY = RotationPolicy(period=3600, jwks_max_age=300, leeway=60, max_token_lifetime=600)
T0 = 1_700_000_000.0
PASS = b"redis passphrase"

Clients = Callable[[], aioredis.Redis]


@pytest.fixture
async def new_client(redis_url: str) -> AsyncIterator[Clients]:
    """A factory of separate Redis clients: each one stands for one issuer replica's connection."""
    made: list[aioredis.Redis] = []

    def make() -> aioredis.Redis:
        client = aioredis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0))
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


def replica(client: aioredis.Redis, passphrase: bytes | None = PASS, **kwargs: object) -> RedisKeyStore:
    return RedisKeyStore(client, passphrase=passphrase, policy=POLICY, clock=lambda: T0, **kwargs)  # type: ignore[arg-type]


def verifies(jwks: dict[str, object], key: keys.KeyPair) -> bool:
    token = keys.sign({"sub": "alice"}, key, typ="at+jwt")
    header, payload, signature = token.split(".")
    entries = jwks["keys"]
    assert isinstance(entries, list)
    jwk = next((j for j in entries if j["kid"] == key.kid), None)
    if jwk is None:
        return False
    keys.VerifyKey.from_jwk(jwk).check_signature(
        f"{header}.{payload}".encode(), base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    )
    return True


async def test_bootstrap_stores_one_document_encrypted_pems_and_a_version(new_client: Clients) -> None:
    client = new_client()
    ring = await replica(client, algs=("ES256", "EdDSA")).load(T0)
    doc = json.loads(await client.get("voicebank:keys:ring"))
    assert doc["format_version"] == 1
    assert len(doc["keys"]) == 4
    pems = await client.hgetall("voicebank:keys:pems")
    assert {kid.decode() for kid in pems} == {jwk["kid"] for jwk in ring.jwks()["keys"]}
    assert all(pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") for pem in pems.values())
    assert int(await client.get("voicebank:keys:version")) == 1
    other = await replica(new_client(), algs=("ES256", "EdDSA")).load(T0 + 5)
    assert other.describe() == ring.describe()


@pytest.mark.parametrize("replicas", [2, 4])
async def test_replicas_rotating_at_the_same_moment_rotate_exactly_once(
    new_client: Clients, replicas: int
) -> None:
    observer = new_client()
    stores = [replica(new_client()) for _ in range(replicas)]
    start = await stores[0].load(T0)
    for store in stores[1:]:
        await store.load(T0)
    results = await asyncio.gather(*(store.rotate_if_due(T0 + POLICY.period) for store in stores))
    assert sum(result is not None for result in results) == 1
    rings = [await store.current() for store in stores]
    active = {ring.signing_key().kid for ring in rings}
    assert len(active) == 1
    assert active != {start.signing_key().kid}
    final = rings[0]
    assert [r.state for r in final.records].count(KeyState.RETIRING) == 1
    assert [r.state for r in final.records].count(KeyState.NEXT) == 1
    # Every replica signs with the new active key, and each one's JWKS verifies the others' tokens.
    for ring in rings:
        for other in rings:
            assert verifies(other.jwks(), ring.signing_key())
    assert int(await observer.get("voicebank:keys:version")) == 2  # bootstrap + one rotation
    assert not await observer.exists("voicebank:keys:rotation-lock")


async def test_a_version_bump_is_seen_by_the_other_replica(new_client: Clients) -> None:
    replica_a, replica_b = replica(new_client()), replica(new_client())
    await replica_a.load(T0)
    ring_b = await replica_b.load(T0)
    assert await replica_b.current() is ring_b  # same version: the cached snapshot
    version = replica_b.version
    rotated = await replica_a.rotate(T0 + 700)
    seen = await replica_b.current()
    assert replica_b.version == version + 1
    assert seen is not ring_b
    assert seen.signing_key().kid == rotated.signing_key().kid
    assert await replica_b.current() is seen


async def test_concurrent_admin_writes_do_not_interleave(new_client: Clients) -> None:
    observer = new_client()
    replica_a, replica_b = replica(new_client()), replica(new_client())
    start = await replica_a.load(T0)
    await replica_b.load(T0)
    await asyncio.gather(
        replica_a.rotate(T0 + 700, force=True),
        replica_b.rotate(T0 + 700, force=True),
    )
    final = await replica(new_client()).load(T0 + 701)
    # Both rotations landed, one after the other: neither overwrote the other's document.
    assert {replica_a.version, replica_b.version} <= {2, 3}
    assert [r.state for r in final.records].count(KeyState.RETIRING) == 2
    assert [r.state for r in final.records].count(KeyState.ACTIVE) == 1
    assert start.signing_key().kid in {r.kid for r in final.records if r.state is KeyState.RETIRING}
    pems = await observer.hgetall("voicebank:keys:pems")
    assert {kid.decode() for kid in pems} == {jwk["kid"] for jwk in final.jwks()["keys"]}


async def test_rotate_and_revoke_publish_key_events(new_client: Clients) -> None:
    observer = new_client()
    store = replica(new_client())
    ring = await store.load(T0)
    listener = new_client().pubsub()
    await listener.subscribe(keys.KEY_EVENTS_CHANNEL)
    await listener.get_message(timeout=5)  # the subscribe confirmation

    async def event() -> dict[str, str]:
        message = await listener.get_message(ignore_subscribe_messages=True, timeout=5)
        assert message is not None
        loaded: dict[str, str] = json.loads(message["data"])
        return loaded

    rotated = await store.rotate(T0 + 600)
    assert await event() == {"type": "rotated", "kid": rotated.signing_key().kid}
    old = ring.signing_key().kid
    await store.revoke(old, T0 + 601)
    assert await event() == {"type": "revoked", "kid": old}
    assert old not in await observer.hkeys("voicebank:keys:pems")
    await listener.aclose()


async def test_a_held_lock_defers_the_scheduled_rotation(new_client: Clients) -> None:
    client = new_client()
    store = replica(client)
    ring = await store.load(T0)
    await client.set("voicebank:keys:rotation-lock", "another-replica")
    assert await store.rotate_if_due(T0 + POLICY.period) is None
    assert (await store.current()).signing_key().kid == ring.signing_key().kid
    assert await client.get("voicebank:keys:rotation-lock") == b"another-replica"  # not ours to delete
    await client.delete("voicebank:keys:rotation-lock")
    assert await store.rotate_if_due(T0 + POLICY.period) is not None
    assert await store.rotate_if_due(T0 + POLICY.period) is None  # no longer due


async def test_refused_and_unknown_operations_are_typed(new_client: Clients) -> None:
    store = replica(new_client())
    await store.load(T0)
    with pytest.raises(keys.RotationRefused):
        await store.rotate(T0 + 1)
    with pytest.raises(keys.UnknownKeyId):
        await store.revoke("nope", T0 + 1)
    assert store.version == 1


async def test_wrong_passphrase_and_corruption_are_clear_errors(new_client: Clients) -> None:
    client = new_client()
    ring = await replica(client).load(T0)
    with pytest.raises(WrongPassphrase, match="wrong passphrase"):
        await replica(new_client(), passphrase=b"nope").load(T0)
    await client.hdel("voicebank:keys:pems", ring.signing_key().kid)
    with pytest.raises(CorruptKeyRing, match="missing"):
        await replica(new_client()).load(T0)
    await client.set("voicebank:keys:ring", b"{oops")
    with pytest.raises(CorruptKeyRing, match="not valid JSON"):
        await replica(new_client()).load(T0)


async def test_prefixes_keep_rings_apart(new_client: Clients) -> None:
    one = await replica(new_client(), prefix="a").load(T0)
    two = await replica(new_client(), prefix="b").load(T0)
    assert one.signing_key().kid != two.signing_key().kid


async def test_current_serves_the_cached_ring_while_redis_is_down(
    new_client: Clients, redis_server: Any
) -> None:
    store = replica(new_client())
    ring = await store.load(T0)
    redis_server.stop()
    try:
        assert await store.current() is ring
    finally:
        redis_server.start()


async def test_peek_reads_the_stored_ring_and_writes_nothing(new_client: Clients) -> None:
    client = new_client()
    assert await replica(client).peek() is None
    assert await client.keys("*") == []  # no bootstrap
    ring = await replica(client).load(T0)
    version = await client.get("voicebank:keys:version")
    peeked = await replica(new_client()).peek()
    assert peeked is not None
    assert set(peeked.pairs) == set(ring.pairs)
    assert await client.get("voicebank:keys:version") == version
    with pytest.raises(WrongPassphrase):
        await replica(new_client(), passphrase=b"not it").peek()
