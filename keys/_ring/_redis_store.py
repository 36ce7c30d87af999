"""The Redis key store for several issuer replicas: one JSON ring, a hash of encrypted PEMs, a version.

Every change is a MULTI/EXEC guarded by WATCH on the version, so concurrent writers cannot
interleave; the loser re-applies its change to the new ring. Scheduled rotation also takes a
lock (SET NX PX, released by compare-and-delete) so exactly one replica generates keys per period.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from keys._algorithms._base import Algorithm
from keys._algorithms._keypair import KeyPair
from keys._ring._document import build_ring, decode_records, encode_ring
from keys._ring._errors import StoreConflict
from keys._ring._events import KEY_EVENTS_CHANNEL, key_events
from keys._ring._keyring import KeyRing
from keys._ring._rotation_policy import RotationPolicy

# Delete the lock only if it still holds our token: an expired lock may belong to another replica now.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

Change = Callable[[KeyRing], KeyRing]


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisKeyStore:
    """The key ring in Redis under `prefix`, shared by every issuer replica."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        passphrase: bytes | None,
        policy: RotationPolicy,
        algs: Sequence[Algorithm] = ("ES256",),
        prefix: str = "voicebank:keys",
        clock: Callable[[], float] = time.time,
        events_channel: str = KEY_EVENTS_CHANNEL,
        lock_ttl: float = 30.0,
        max_attempts: int = 5,
    ) -> None:
        self.policy = policy
        self._client = client
        self._passphrase = passphrase
        self._algs = tuple(algs)
        self._clock = clock
        self._channel = events_channel
        self._lock_ttl_ms = max(1, int(lock_ttl * 1000))
        self._max_attempts = max_attempts
        self._ring_key = f"{prefix}:ring"
        self._pems_key = f"{prefix}:pems"
        self._version_key = f"{prefix}:version"
        self._lock_key = f"{prefix}:rotation-lock"
        self._release = client.register_script(_RELEASE)
        self._cached: KeyRing | None = None
        self._version = -1

    def __repr__(self) -> str:
        return f"RedisKeyStore({self._ring_key!r})"

    @property
    def version(self) -> int:
        """The version of the cached ring (-1 before the first load)."""
        return self._version

    async def load(self, now: float) -> KeyRing:
        return (await self._commit(lambda ring: ring, now))[0]

    async def peek(self) -> KeyRing | None:
        """The stored ring as it is, or None when there is none; nothing is written or cached."""
        return (await self._snapshot())[1]

    async def current(self) -> KeyRing:
        """The cached ring; one GET of the version, and a reload only when it changed."""
        if self._cached is None:
            return await self.load(self._clock())
        try:
            version = int(await self._client.get(self._version_key) or 0)
        except (RedisConnectionError, RedisTimeoutError):
            # Keep signing with the last ring seen while Redis is unreachable; the next call retries.
            return self._cached
        if version == self._version:
            return self._cached
        return await self.load(self._clock())

    async def rotate(self, now: float, *, alg: Algorithm | None = None, force: bool = False) -> KeyRing:
        return (await self._commit(lambda ring: ring.rotate(now, self.policy, alg=alg, force=force), now))[0]

    async def revoke(self, kid: str, now: float) -> KeyRing:
        return (await self._commit(lambda ring: ring.revoke(kid, now), now))[0]

    async def retire_alg(self, alg: Algorithm, now: float) -> KeyRing:
        return (await self._commit(lambda ring: ring.retire_alg(alg, now), now))[0]

    async def rotate_if_due(self, now: float) -> KeyRing | None:
        if not (await self.current()).due(now, self.policy):
            return None
        token = secrets.token_hex(16)
        if not await self._client.set(self._lock_key, token, nx=True, px=self._lock_ttl_ms):
            return None  # another replica is rotating; its version bump reaches our current()
        try:
            # `advance` re-checks `due` on the ring as stored now, so a late replica changes nothing.
            ring, changed = await self._commit(lambda ring: ring.advance(now, self.policy), now)
        finally:
            await self._release(keys=[self._lock_key], args=[token])
        return ring if changed else None

    async def _snapshot(self) -> tuple[int, KeyRing | None, set[str]]:
        """Version, ring and PEM field names, read atomically."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.get(self._version_key)
            pipe.get(self._ring_key)
            pipe.hgetall(self._pems_key)
            raw_version, raw_ring, raw_pems = await pipe.execute()
        version = int(raw_version or 0)
        pems = {_text(kid): _bytes(pem) for kid, pem in raw_pems.items()}
        if raw_ring is None:
            return version, None, set(pems)
        records = decode_records(_bytes(raw_ring), "the key ring in Redis")
        known = self._cached.pairs if self._cached is not None else None
        ring = await asyncio.to_thread(build_ring, records, pems, self._passphrase, known)
        return version, ring, set(pems)

    def _apply(self, stored: KeyRing | None, change: Change, now: float) -> tuple[KeyRing, KeyRing]:
        if stored is None:
            ring = KeyRing.bootstrap(self._algs, now)
        else:
            ring = stored.ensure_algs(self._algs, now, self.policy.publish_ahead)
        return ring, change(ring)

    def _encrypt(self, pairs: list[KeyPair]) -> dict[str, bytes]:
        return {pair.kid: pair.private_pem(self._passphrase) for pair in pairs}

    async def _commit(self, change: Change, now: float) -> tuple[KeyRing, bool]:
        """Apply `change` to the stored ring and write it unless another writer got there first."""
        for _ in range(self._max_attempts):
            version, stored, fields = await self._snapshot()
            # Key generation and PEM encryption are CPU work: keep them off the event loop.
            ring, new = await asyncio.to_thread(self._apply, stored, change, now)
            if new is stored:
                self._cached, self._version = new, version
                return new, False
            added = [pair for kid, pair in new.pairs.items() if kid not in fields]
            pems = await asyncio.to_thread(self._encrypt, added)
            events = key_events(stored, new) if stored is not None else []
            try:
                async with self._client.pipeline(transaction=True) as pipe:
                    await pipe.watch(self._version_key)
                    if int(await pipe.get(self._version_key) or 0) != version:
                        continue
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(self._ring_key, encode_ring(new))
                    if pems:
                        pipe.hset(self._pems_key, mapping=pems)  # type: ignore[arg-type]
                    if dead := sorted(fields - set(new.pairs)):
                        pipe.hdel(self._pems_key, *dead)
                    pipe.incr(self._version_key)
                    for event in events:
                        pipe.publish(self._channel, event.encode())
                    results = await pipe.execute()
            except WatchError:
                continue
            self._cached, self._version = new, int(results[-1 - len(events)])
            return new, new is not ring
        raise StoreConflict("the key ring in Redis kept changing during this update; try again")
