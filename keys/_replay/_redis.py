"""The replay cache of several replicas on Redis: `SET NX EX` makes the first use atomic."""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from keys._clock import wall_clock
from keys._errors import ReplayUnavailable
from keys._redis import idempotent


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
        # A mark of this call only: `SET NX GET` answers the value already there, so a second sending after
        # a dropped connection recognises its own first one (first use) and anyone else's (a replay).
        mark = secrets.token_hex(8).encode()
        try:
            held = await idempotent(
                self._client, lambda: self._client.set(name, mark, nx=True, ex=ttl, get=True)
            )
        except RedisError as exc:
            raise ReplayUnavailable(f"Redis cannot answer ({type(exc).__name__})") from None
        return held is None or held == mark
