"""The replay cache of several replicas on Redis: `SET NX EX` makes the first use atomic."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from keys._clock import wall_clock
from keys._errors import ReplayUnavailable


class RedisReplayCache:
    """A `keys.ReplayCache` shared by replicas; Redis expires the entries; an error fails closed."""

    def __init__(
        self, client: aioredis.Redis, *, prefix: str, clock: Callable[[], float] = wall_clock
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock

    async def first_use(self, key: str, expires_at: float) -> bool:
        # Hashed, so that identifiers a client chose cannot shape Redis keys or their length.
        digest = hashlib.sha256(key.encode()).hexdigest()
        ttl = max(1, math.ceil(expires_at - self._clock()))
        try:
            stored = await self._client.set(f"{self._prefix}:{digest}", b"1", nx=True, ex=ttl)
        except RedisError as exc:
            raise ReplayUnavailable(f"Redis cannot answer ({type(exc).__name__})") from None
        return bool(stored)
