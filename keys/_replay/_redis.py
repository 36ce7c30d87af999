"""The replay cache of several replicas on Redis: `SET NX EX` makes the first use atomic."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
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
        name = f"{self._prefix}:{hashlib.sha256(key.encode()).hexdigest()}"
        ttl = max(1, math.ceil(expires_at - self._clock()))
        try:
            try:
                stored = await self._client.set(name, b"1", nx=True, ex=ttl)
            except RedisConnectionError:
                # After a Redis restart a pooled connection is stale and its first command fails (redis-py
                # does not retry by default). One retry on a fresh connection is safe here: had the first
                # SET reached Redis, the retry finds the key and refuses - closed, never open.
                stored = await self._client.set(name, b"1", nx=True, ex=ttl)
        except RedisError as exc:
            raise ReplayUnavailable(f"Redis cannot answer ({type(exc).__name__})") from None
        return bool(stored)
