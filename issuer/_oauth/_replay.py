"""Single-use identifiers (assertion `jti`, exchanged grants) remembered until they expire."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as aioredis


class ReplayCache(Protocol):
    """Remembers identifiers until their expiry; `first_use` is true exactly once per identifier."""

    async def first_use(self, key: str, expires_at: float) -> bool: ...


class MemoryReplayCache:
    """An in-process replay cache for one issuer process."""

    def __init__(self, *, clock: Callable[[], float] = time.time, max_entries: int = 100_000) -> None:
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._max_entries = max_entries

    async def first_use(self, key: str, expires_at: float) -> bool:
        now = self._clock()
        if len(self._seen) >= self._max_entries:
            self._seen = {k: exp for k, exp in self._seen.items() if exp > now}
        previous = self._seen.get(key)
        if previous is not None and previous > now:
            return False
        self._seen[key] = expires_at
        return True


class RedisReplayCache:
    """A replay cache shared by issuer replicas: `SET NX EX` makes the first use atomic."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "voicebank:replay",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock

    async def first_use(self, key: str, expires_at: float) -> bool:
        # Hash so attacker-chosen identifiers cannot shape Redis keys.
        digest = hashlib.sha256(key.encode()).hexdigest()
        ttl = max(1, math.ceil(expires_at - self._clock()))
        stored = await self._client.set(f"{self._prefix}:{digest}", b"1", nx=True, ex=ttl)
        return bool(stored)
